/**
 * A run folder: config.json, checkpoints/, log.jsonl, samples/.
 * Loading one gives a denoiser with the EMA weights baked into the ONNX model.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readSettingsJson } from '../data/safe-file.js';
import * as path from 'node:path';
import { HostTensor, ParamScope, ParamStore, Program, RuntimeOptions, Tensor, input, loadSafetensors } from '../engine/index.js';
import { unet } from '../nn/unet.js';
import { RunConfig, validateRunConfig } from './config.js';
import { TextConditioner, readTokenizer } from './text.js';
import { isExportFolder, readExportFolder } from './export-folder.js';

export const runPaths = (dir: string) => ({
  config: path.join(dir, 'config.json'),
  checkpoint: path.join(dir, 'checkpoints', 'latest.safetensors'),
  checkpoints: path.join(dir, 'checkpoints'),
  log: path.join(dir, 'log.jsonl'),
  samples: path.join(dir, 'samples'),
  /** Latent runs: the run's copy of its autoencoder, and the training images encoded by it. */
  autoencoder: path.join(dir, 'autoencoder'),
  latents: path.join(dir, 'latents.safetensors'),
});

/** A run folder's config.json, or an export's run config (with the schedule its scheduler_config.json gives). */
export function readRunConfig(dir: string): RunConfig {
  const file = runPaths(dir).config;
  if (!existsSync(file) && isExportFolder(dir)) return readExportFolder(dir).run;
  if (!existsSync(file)) throw new Error(`${dir}: not a run folder (no config.json); train one with 'diffuse train --run ${dir}'`);
  const c = readSettingsJson(file) as RunConfig;
  if (c.format !== 'diffuse-run-1') throw new Error(`${file}: unknown format '${c.format}' (expected diffuse-run-1)`);
  validateRunConfig(c);
  return c;
}

/**
 * A run's whole network inside a graph: the text encoder (if the run has one) and
 * the U-Net. Inputs: x, t, and by condition label, ids or text_*, dropout_seed.
 */
export function runModel(scope: ParamScope, config: RunConfig, inputs: Readonly<Record<string, Tensor>>, text?: TextConditioner): Tensor {
  if (config.text && !text) throw new Error('runModel: this run is text-conditional; open its TextConditioner');
  return unet(scope, config.model, inputs.x, inputs.t, {
    label: inputs.label,
    dropoutSeed: inputs.dropout_seed,
    text: text?.states(scope, inputs),
  });
}

/** Symbolic inputs of a run's network for a batch of n. */
export function modelInputs(config: RunConfig, n: number, text?: TextConditioner): Record<string, Tensor> {
  const { model } = config;
  const out: Record<string, Tensor> = { x: input('x', [n, model.inChannels, model.imageSize, model.imageSize]), t: input('t', [n]) };
  if (model.numClasses !== undefined) out.label = input('label', [n], 'int64');
  for (const [name, spec] of Object.entries(text?.inputs(n) ?? {})) out[name] = input(name, spec.shape, spec.dtype ?? 'float32');
  return out;
}

/** Opens the text conditioning of a text-conditional run (tokenizer.json, and the ONNX encoder if frozen). */
export async function openTextConditioner(dir: string, config: RunConfig, runtime: RuntimeOptions = {}): Promise<TextConditioner | undefined> {
  if (!config.text) return undefined;
  return TextConditioner.open(config.text, readTokenizer(dir, config.text), runtime);
}

/** The weights to sample with: the EMA copy if the checkpoint has one. */
export async function loadSamplingWeights(dir: string, config: RunConfig, text?: TextConditioner): Promise<Map<string, Float32Array>> {
  const file = runPaths(dir).checkpoint;
  if (!existsSync(file)) throw new Error(`${dir}: no checkpoint yet (${file}); train first or wait for the first checkpoint`);
  const { tensors } = await loadSafetensors(file);
  // Check names and shapes against the model the config describes.
  const store = new ParamStore(0);
  runModel(new ParamScope(store), config, modelInputs(config, 1, text), text);
  const weights = new Map<string, Float32Array>();
  for (const [name, p] of store.params) {
    const t = tensors.get(`ema/${name}`) ?? tensors.get(name);
    if (!t) throw new Error(`${file}: missing weight '${name}'; the checkpoint was written by a different model config`);
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]) || !(t.data instanceof Float32Array)) {
      throw new Error(`${file}: weight '${name}' is [${t.shape.join(', ')}] but config.json's model needs [${p.shape.join(', ')}]`);
    }
    weights.set(name, t.data);
  }
  return weights;
}

/**
 * SHA-256 of sampling weights (names sorted; each name, shape and float32 bytes): names the exact
 * model in a detector calibration or an image's content credentials.
 */
export function weightsHash(weights: ReadonlyMap<string, Float32Array>): string {
  const h = createHash('sha256');
  for (const name of [...weights.keys()].sort()) {
    const w = weights.get(name) as Float32Array;
    h.update(`${name}:${w.length};`);
    h.update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
  }
  return h.digest('hex');
}

/**
 * A run's modelHash: weightsHash of its U-Net's sampling weights, and for a latent run also of its
 * autoencoder's (under autoencoder/), whose decoder makes the images.
 */
export function runModelHash(weights: ReadonlyMap<string, Float32Array>, autoencoder?: ReadonlyMap<string, Float32Array>): string {
  if (!autoencoder) return weightsHash(weights);
  return weightsHash(new Map([...weights, ...[...autoencoder].map(([k, w]) => [`autoencoder/${k}`, w] as const)]));
}

/** Graph feeds by input name. */
export type Feeds = Record<string, HostTensor>;

/**
 * A run's network with its weights baked in (ONNX Runtime pre-packs them), compiled once per
 * batch shape: x_t, t and the condition feeds (label, or the text inputs) -> the model output.
 */
export class RunNetwork {
  private readonly program: Program;
  /** [channels, height, width] of one image. */
  readonly shape: [number, number, number];

  constructor(
    readonly config: RunConfig,
    weights: ReadonlyMap<string, Float32Array>,
    runtime: RuntimeOptions = {},
    readonly text?: TextConditioner,
  ) {
    this.program = new Program((inputs) => ({ out: runModel(new ParamScope(new ParamStore(0)), config, inputs, text) }), { ...runtime, weights, name: 'denoiser' });
    const m = config.model;
    this.shape = [m.inChannels, m.imageSize, m.imageSize];
  }

  /** The model output for n images at one timestep t, with their condition feeds. */
  async run(x: Float32Array, t: number, n: number, conditions: Feeds): Promise<Float32Array> {
    const feeds: Feeds = { x: { data: x, shape: [n, ...this.shape] }, t: { data: new Float32Array(n).fill(t), shape: [n] }, ...conditions };
    return (await this.program.run(feeds)).out.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.program.release();
  }
}
