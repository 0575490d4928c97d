/**
 * A run folder: config.json, checkpoints/, log.jsonl, samples/.
 * Loading one gives a denoiser with the EMA weights baked into the ONNX model.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { HostTensor, ParamScope, ParamStore, Program, RuntimeOptions, Tensor, input, loadSafetensors } from '../engine/index.js';
import { unet } from '../nn/unet.js';
import type { Denoiser } from '../samplers/pipeline.js';
import { RunConfig, validateRunConfig } from './config.js';
import { TextConditioner, readTokenizer } from './text.js';

export const runPaths = (dir: string) => ({
  config: path.join(dir, 'config.json'),
  checkpoint: path.join(dir, 'checkpoints', 'latest.safetensors'),
  checkpoints: path.join(dir, 'checkpoints'),
  log: path.join(dir, 'log.jsonl'),
  samples: path.join(dir, 'samples'),
});

export function readRunConfig(dir: string): RunConfig {
  const file = runPaths(dir).config;
  if (!existsSync(file)) throw new Error(`${dir}: not a run folder (no config.json); train one with 'diffuse train --run ${dir}'`);
  let c: RunConfig;
  try {
    c = JSON.parse(readFileSync(file, 'utf8')) as RunConfig;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
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
  return TextConditioner.open(config.text, readTokenizer(dir), runtime);
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

export interface Guidance {
  /** Class of each generated image (class-conditional models); omitted: the unconditional (null) class. */
  labels?: Int32Array;
  /** Prompt of each generated image (text-conditional models); omitted: the empty prompt. */
  prompts?: readonly string[];
  /** Prompts to steer away from: they replace the empty prompt of the unconditional branch. */
  negativePrompts?: readonly string[];
  /** Classifier-free guidance weight w: eps = eps(x, empty) + w (eps(x, c) - eps(x, empty)); 1 = plain conditional. */
  scale?: number;
  /** Guidance rescale phi (Lin et al. 2023, eq. 15-16): match the guided prediction's std to the conditional one's. */
  rescale?: number;
}

type Feeds = Record<string, HostTensor>;

/** Joins two batches of feeds along the batch axis. */
function concatFeeds(a: Feeds, b: Feeds): Feeds {
  const out: Feeds = {};
  for (const k of Object.keys(a)) {
    const [x, y] = [a[k], b[k]];
    const data = x.data instanceof BigInt64Array ? new BigInt64Array(x.data.length + y.data.length) : new Float32Array(x.data.length + y.data.length);
    data.set(x.data as never);
    data.set(y.data as never, x.data.length);
    out[k] = { data, shape: [x.shape[0] + y.shape[0], ...x.shape.slice(1)] };
  }
  return out;
}

/**
 * A denoiser (the network with weights baked in), compiled once per batch size. For a
 * conditional model with guidance, the conditional and unconditional (or negative-prompt)
 * predictions are computed in one batched evaluation of 2N images.
 */
export function makeDenoiser(
  config: RunConfig,
  weights: ReadonlyMap<string, Float32Array>,
  runtime: RuntimeOptions = {},
  guidance: Guidance = {},
  text?: TextConditioner,
): Denoiser & { release(): Promise<void> } {
  const { model } = config;
  const classes = model.numClasses !== undefined;
  const conditional = classes || config.text !== undefined;
  const w = guidance.scale ?? 1;
  if (!conditional && (guidance.labels || guidance.prompts || w !== 1)) {
    throw new Error('this run is unconditional: it takes no class labels, prompts or guidance (train with --class-cond or --text)');
  }
  if (!classes && guidance.labels) throw new Error('this run is text-conditional: give prompts, not class labels');
  if (!config.text && (guidance.prompts || guidance.negativePrompts)) throw new Error('this run is not text-conditional: it takes no prompts (train with --text)');
  const program = new Program((inputs) => ({ out: runModel(new ParamScope(new ParamStore(0)), config, inputs, text) }), { ...runtime, weights, name: 'denoiser' });
  const shape = [model.inChannels, model.imageSize, model.imageSize];
  const per = shape.reduce((a, b) => a * b, 1);

  const labelFeeds = (labels: BigInt64Array): Feeds => ({ label: { data: labels, shape: [labels.length] } });
  const nullClass = BigInt(model.numClasses ?? 0);
  const checkCount = (what: string, m: number, n: number) => {
    if (m !== n) throw new Error(`guidance: ${m} ${what} for ${n} images`);
  };
  /** Condition feeds for n images: the conditional branch and the unconditional (or negative) branch. */
  const conditionFeeds = async (n: number): Promise<{ cond: Feeds; uncond: Feeds }> => {
    if (classes) {
      let labels = new BigInt64Array(n).fill(nullClass);
      if (guidance.labels) {
        checkCount('labels', guidance.labels.length, n);
        for (const l of guidance.labels) {
          if (!(l >= 0 && l < (model.numClasses as number))) throw new Error(`class ${l} is out of range: the model has classes 0..${(model.numClasses as number) - 1}`);
        }
        labels = BigInt64Array.from(guidance.labels, BigInt);
      }
      return { cond: labelFeeds(labels), uncond: labelFeeds(new BigInt64Array(n).fill(nullClass)) };
    }
    if (text) {
      const prompts = guidance.prompts ?? new Array<string>(n).fill('');
      const negatives = guidance.negativePrompts ?? new Array<string>(n).fill('');
      checkCount('prompts', prompts.length, n);
      checkCount('negative prompts', negatives.length, n);
      return { cond: await text.feeds(prompts), uncond: await text.feeds(negatives) };
    }
    return { cond: {}, uncond: {} };
  };
  let conditions: { n: number; value: Promise<{ cond: Feeds; uncond: Feeds }> } | undefined;
  const run = async (x: Float32Array, t: number, n: number, extra: Feeds) => {
    const feeds: Feeds = { x: { data: x, shape: [n, ...shape] }, t: { data: new Float32Array(n).fill(t), shape: [n] }, ...extra };
    return (await program.run(feeds)).out.data as Float32Array;
  };
  const denoise = async (x: Float32Array, t: number, batch: number) => {
    if (conditions?.n !== batch) conditions = { n: batch, value: conditionFeeds(batch) };
    const { cond, uncond } = await conditions.value;
    if (!conditional || w === 1) return run(x, t, batch, cond);
    const both = new Float32Array(2 * batch * per);
    both.set(x);
    both.set(x, batch * per);
    const out = await run(both, t, 2 * batch, concatFeeds(cond, uncond));
    const c = out.subarray(0, batch * per);
    const u = out.subarray(batch * per);
    const guided = c.map((ci, i) => u[i] + w * (ci - u[i]));
    if (guidance.rescale) rescaleGuidance(guided, c, batch, per, guidance.rescale);
    return guided;
  };
  return Object.assign(denoise, { release: () => program.release() });
}
/** Lin et al. 2023 eq. 15-16, per image: x = phi * x * std(cond) / std(x) + (1 - phi) * x. */
function rescaleGuidance(guided: Float32Array, cond: Float32Array, batch: number, per: number, phi: number): void {
  const std = (a: Float32Array, k: number) => {
    let m = 0;
    for (let i = k * per; i < (k + 1) * per; i++) m += a[i];
    m /= per;
    let v = 0;
    for (let i = k * per; i < (k + 1) * per; i++) v += (a[i] - m) ** 2;
    return Math.sqrt(v / (per - 1));
  };
  for (let k = 0; k < batch; k++) {
    const factor = phi * (std(cond, k) / std(guided, k)) + (1 - phi);
    for (let i = k * per; i < (k + 1) * per; i++) guided[i] *= factor;
  }
}
