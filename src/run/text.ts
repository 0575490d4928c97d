/**
 * Text conditioning of a run: the tokenizer (saved as tokenizer.json in the run
 * folder), the encoder (a transformer trained with the U-Net, or a frozen ONNX
 * file), and the graph inputs that carry a batch of prompts.
 */
import { existsSync } from 'node:fs';
import { readSettingsJson } from '../data/safe-file.js';
import * as path from 'node:path';
import { BatchSpec, HostTensor, ParamScope, RuntimeOptions, Tensor, writeFileAtomic } from '../engine/index.js';
import type { TextStates } from '../nn/attention.js';
import { BpeTokenizer, TextTokenizer } from '../text/tokenizer.js';
import { HuggingFaceTokenizer } from '../text/hf-tokenizer.js';
import { TransformerEncoderConfig, transformerTextEncoder, validateEncoderConfig } from '../text/encoder.js';
import { isExportFolder } from './export-folder.js';
import { HostTextStates, OnnxEncoderConfig, OnnxTextEncoder } from '../text/onnx-encoder.js';

export interface TextConditioning {
  encoder: TransformerEncoderConfig | OnnxEncoderConfig;
  /** Probability that a training caption is replaced by the empty prompt (for classifier-free guidance). */
  pUncond: number;
}

/** Where a run keeps its tokenizer files: the run folder itself, or an export's tokenizer/. */
const tokenizerDir = (runDir: string) => (isExportFolder(runDir) ? path.join(runDir, 'tokenizer') : runDir);
export const tokenizerPath = (runDir: string) => path.join(tokenizerDir(runDir), 'tokenizer.json');
export const tokenizerConfigPath = (runDir: string) => path.join(tokenizerDir(runDir), 'tokenizer_config.json');

/**
 * A run's tokenizer: Hugging Face's tokenizer.json with tokenizer_config.json (written since
 * 2026-11-30), or the diffuse-bpe-1 tokenizer.json of older runs.
 */
export function readTokenizer(runDir: string, text?: TextConditioning): TextTokenizer {
  const file = tokenizerPath(runDir);
  if (!existsSync(file)) throw new Error(`${runDir}: text-conditional run without ${path.basename(file)}; it was not written by 'diffuse train --text'`);
  const json = readSettingsJson(file) as { format?: string; model?: { end_of_word_suffix?: string } };
  if (json?.format === 'diffuse-bpe-1') return BpeTokenizer.fromJSON(json, file);
  const configFile = tokenizerConfigPath(runDir);
  const config = existsSync(configFile) ? (readSettingsJson(configFile) as Record<string, unknown>) : {};
  // A frozen encoder's own tokenizer (any Hugging Face tokenizer), unless it is one that Diffuse trained.
  if (text?.encoder.kind === 'onnx' && !Array.isArray(config.diffuse_training_words)) return new HuggingFaceTokenizer(json, config, text.encoder.maxLength, file);
  return BpeTokenizer.fromHuggingFace(json, config, file);
}

/** Writes the tokenizer into a run folder as Hugging Face's tokenizer.json and tokenizer_config.json. */
export async function writeTokenizer(runDir: string, tokenizer: TextTokenizer): Promise<void> {
  const { tokenizer: json, config } = tokenizer.files();
  await writeFileAtomic(tokenizerPath(runDir), JSON.stringify(json) + '\n');
  await writeFileAtomic(tokenizerConfigPath(runDir), JSON.stringify(config) + '\n');
}

export function validateTextConditioning(t: TextConditioning): void {
  if (!(t.pUncond >= 0 && t.pUncond < 1)) throw new Error(`config: text.pUncond must be in [0, 1), got ${t.pUncond}`);
  if (t.encoder.kind === 'transformer') validateEncoderConfig(t.encoder);
  else if (t.encoder.kind !== 'onnx') throw new Error(`config: text.encoder.kind must be transformer or onnx, got '${(t.encoder as { kind: string }).kind}'`);
}

/** Prompts -> graph feeds, and graph inputs -> TextStates, for either kind of encoder. */
export class TextConditioner {
  private readonly cache = new Map<string, HostTextStates>();

  private constructor(
    readonly text: TextConditioning,
    readonly tokenizer: TextTokenizer,
    private readonly frozen?: OnnxTextEncoder,
  ) {}

  static async open(text: TextConditioning, tokenizer: TextTokenizer, runtime: RuntimeOptions = {}): Promise<TextConditioner> {
    validateTextConditioning(text);
    if (text.encoder.maxLength !== tokenizer.maxLength) {
      throw new Error(`the text encoder takes ${text.encoder.maxLength} tokens but the tokenizer makes ${tokenizer.maxLength}`);
    }
    if (text.encoder.kind === 'transformer') {
      if (text.encoder.vocabSize !== tokenizer.vocabSize) throw new Error(`the text encoder has ${text.encoder.vocabSize} token embeddings but the tokenizer ${tokenizer.vocabSize} tokens`);
      return new TextConditioner(text, tokenizer);
    }
    return new TextConditioner(text, tokenizer, await OnnxTextEncoder.load(text.encoder, runtime));
  }

  /** Width D of the states the U-Net's cross-attention reads. */
  get width(): number {
    return this.frozen ? this.frozen.width : (this.text.encoder as TransformerEncoderConfig).width;
  }

  /** Graph inputs for a batch of n prompts. */
  inputs(n: number): Record<string, BatchSpec> {
    const L = this.tokenizer.maxLength;
    if (!this.frozen) return { ids: { shape: [n, L], dtype: 'int64' } };
    return { text_states: { shape: [n, L, this.width] }, text_mask: { shape: [n, L] }, text_pooled: { shape: [n, this.width] } };
  }

  /** Feeds for a batch of prompts (a frozen encoder runs here, once per distinct prompt). */
  async feeds(prompts: readonly string[]): Promise<Record<string, HostTensor>> {
    const n = prompts.length;
    const L = this.tokenizer.maxLength;
    if (!this.frozen) return { ids: { data: this.tokenizer.encodeBatch(prompts), shape: [n, L] } };
    const D = this.width;
    const states = new Float32Array(n * L * D);
    const mask = new Float32Array(n * L);
    const pooled = new Float32Array(n * D);
    for (let k = 0; k < n; k++) {
      let s = this.cache.get(prompts[k]);
      if (!s) {
        s = await this.frozen.encode(this.tokenizer.encodeBatch([prompts[k]]), 1);
        this.cache.set(prompts[k], s);
      }
      states.set(s.states, k * L * D);
      mask.set(s.mask, k * L);
      pooled.set(s.pooled, k * D);
    }
    return { text_states: { data: states, shape: [n, L, D] }, text_mask: { data: mask, shape: [n, L] }, text_pooled: { data: pooled, shape: [n, D] } };
  }

  /** The encoder's output inside a graph: the trained transformer under `text.`, or the fed states. */
  states(scope: ParamScope, inputs: Readonly<Record<string, Tensor>>): TextStates {
    if (!this.frozen) return transformerTextEncoder(scope.child('text'), this.text.encoder as TransformerEncoderConfig, inputs.ids);
    return { states: inputs.text_states, mask: inputs.text_mask, pooled: inputs.text_pooled };
  }

  async release(): Promise<void> {
    await this.frozen?.release();
  }
}
