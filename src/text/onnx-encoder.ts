/**
 * A frozen, pretrained text encoder from a local ONNX file (for example a CLIP
 * text tower exported from PyTorch): the plug-in point for encoders that Diffuse
 * does not train. It meets the same contract as the jointly trained transformer
 * (states [N, L, D], mask [N, L], pooled [N, D]), but runs in its own session,
 * before the U-Net, whose graph takes its outputs as inputs.
 */
import { existsSync, readFileSync } from 'node:fs';
import type * as Ort from 'onnxruntime-common';
import { ParamScope, ParamStore, RuntimeOptions, compileModel, defaultOrt, input, writeFileAtomic } from '../engine/index.js';
import { TransformerEncoderConfig, transformerTextEncoder } from './encoder.js';
import { PAD } from './tokenizer.js';

/** How to find an ONNX text encoder's input and outputs (the defaults are Hugging Face's CLIP export names). */
export interface OnnxEncoderConfig {
  kind: 'onnx';
  /** Path of the .onnx file. */
  file: string;
  /** Tokens per prompt the model takes. */
  maxLength: number;
  /** int64 [N, L] token ids. */
  inputName?: string;
  /** float32 [N, L, D]. */
  statesOutput?: string;
  /** float32 [N, D]; without it the pooled vector is the mean of the states over the tokens. */
  pooledOutput?: string;
}

/** Encoded prompts on the host. */
export interface HostTextStates {
  count: number;
  maxLength: number;
  width: number;
  states: Float32Array;
  mask: Float32Array;
  pooled: Float32Array;
}

export class OnnxTextEncoder {
  private constructor(
    private readonly ort: { Tensor: typeof Ort.Tensor },
    private readonly session: Ort.InferenceSession,
    readonly config: OnnxEncoderConfig,
    /** Width D of the states, found by a trial run. */
    readonly width: number,
  ) {}

  static async load(config: OnnxEncoderConfig, runtime: RuntimeOptions = {}): Promise<OnnxTextEncoder> {
    const { file } = config;
    if (!existsSync(file)) throw new Error(`${file}: no such ONNX text encoder file`);
    const ort = runtime.ort ?? (await defaultOrt());
    let session: Ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(readFileSync(file), { executionProviders: runtime.device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'], logSeverityLevel: 3 });
    } catch (e) {
      throw new Error(`${file}: ONNX Runtime cannot load it as a model (${(e as Error).message})`);
    }
    const inputName = config.inputName ?? 'input_ids';
    const statesOutput = config.statesOutput ?? 'last_hidden_state';
    if (!session.inputNames.includes(inputName)) throw new Error(`${file}: has no input '${inputName}' (inputs: ${session.inputNames.join(', ')}); set inputName`);
    if (!session.outputNames.includes(statesOutput)) throw new Error(`${file}: has no output '${statesOutput}' (outputs: ${session.outputNames.join(', ')}); set statesOutput`);
    if (config.pooledOutput && !session.outputNames.includes(config.pooledOutput)) {
      throw new Error(`${file}: has no output '${config.pooledOutput}' (outputs: ${session.outputNames.join(', ')}); set pooledOutput or leave it out`);
    }
    const probe = new OnnxTextEncoder(ort, session, { ...config, inputName, statesOutput }, 0);
    const ids = new BigInt64Array(config.maxLength).fill(BigInt(PAD));
    const { states } = await probe.run(ids, 1);
    const width = states.length / config.maxLength;
    if (!Number.isInteger(width) || width < 1) throw new Error(`${file}: output '${statesOutput}' has ${states.length} values for ${config.maxLength} tokens; expected [1, ${config.maxLength}, D]`);
    return new OnnxTextEncoder(ort, session, { ...config, inputName, statesOutput }, width);
  }

  private async run(ids: BigInt64Array, n: number): Promise<{ states: Float32Array; pooled?: Float32Array }> {
    const L = this.config.maxLength;
    const feeds = { [this.config.inputName as string]: new this.ort.Tensor('int64', ids, [n, L]) };
    const out = await this.session.run(feeds);
    const states = out[this.config.statesOutput as string].data as Float32Array;
    const pooled = this.config.pooledOutput ? (out[this.config.pooledOutput].data as Float32Array) : undefined;
    return { states, pooled };
  }

  /** Encodes token ids int64 [n, maxLength], one prompt per run (exported models may have a fixed batch of 1). */
  async encode(ids: BigInt64Array, n: number): Promise<HostTextStates> {
    const L = this.config.maxLength;
    const D = this.width;
    if (ids.length !== n * L) throw new Error(`text encoder: ${ids.length} ids for ${n} prompts of ${L} tokens`);
    const states = new Float32Array(n * L * D);
    let pooled: Float32Array | undefined;
    for (let k = 0; k < n; k++) {
      const one = await this.run(ids.subarray(k * L, (k + 1) * L), 1);
      if (one.states.length !== L * D) throw new Error(`${this.config.file}: '${this.config.statesOutput}' is not [1, ${L}, ${D}]`);
      states.set(one.states, k * L * D);
      if (one.pooled) {
        if (one.pooled.length !== D) throw new Error(`${this.config.file}: '${this.config.pooledOutput}' is not [1, ${D}]`);
        (pooled ??= new Float32Array(n * D)).set(one.pooled, k * D);
      }
    }
    const mask = Float32Array.from(ids, (id) => (id === BigInt(PAD) ? 0 : 1));
    let p = pooled;
    if (!p) {
      p = new Float32Array(n * D);
      for (let k = 0; k < n; k++) {
        let m = 0;
        for (let i = 0; i < L; i++) {
          if (!mask[k * L + i]) continue;
          m++;
          for (let j = 0; j < D; j++) p[k * D + j] += states[(k * L + i) * D + j];
        }
        for (let j = 0; j < D; j++) p[k * D + j] /= Math.max(m, 1);
      }
    }
    return { count: n, maxLength: L, width: D, states, mask, pooled: p };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * Writes a Diffuse transformer text encoder with its weights as a standalone ONNX
 * model (input `input_ids`, outputs `last_hidden_state` and `pooler_output`), which
 * `OnnxTextEncoder` can load: a jointly trained encoder can be frozen and reused.
 */
export async function exportTextEncoder(config: TransformerEncoderConfig, weights: ReadonlyMap<string, Float32Array>, file: string, batch = 1): Promise<void> {
  const ids = input('input_ids', [batch, config.maxLength], 'int64');
  const store = new ParamStore(0);
  const out = transformerTextEncoder(new ParamScope(store), config, ids);
  for (const name of store.params.keys()) if (!weights.has(name)) throw new Error(`exportTextEncoder: missing weight '${name}'`);
  const model = compileModel({ inputs: [ids], outputs: { last_hidden_state: out.states, pooler_output: out.pooled }, initializers: weights, name: 'text_encoder' });
  await writeFileAtomic(file, model.bytes);
}
