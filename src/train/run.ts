/**
 * A run folder: config.json, checkpoints/, log.jsonl, samples/.
 * Loading one gives a denoiser with the EMA weights baked into the ONNX model.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { HostTensor, ParamScope, ParamStore, Program, RuntimeOptions, input, loadSafetensors } from '../engine/index.js';
import { unet } from '../nn/unet.js';
import type { Denoiser } from '../samplers/pipeline.js';
import { RunConfig, validateRunConfig } from './config.js';

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

/** The weights to sample with: the EMA copy if the checkpoint has one. */
export async function loadSamplingWeights(dir: string, config: RunConfig): Promise<Map<string, Float32Array>> {
  const file = runPaths(dir).checkpoint;
  if (!existsSync(file)) throw new Error(`${dir}: no checkpoint yet (${file}); train first or wait for the first checkpoint`);
  const { tensors } = await loadSafetensors(file);
  // Check names and shapes against the model the config describes.
  const store = new ParamStore(0);
  const { model } = config;
  unet(new ParamScope(store), model, input('x', [1, model.inChannels, model.imageSize, model.imageSize]), input('t', [1]), model.numClasses !== undefined ? { label: input('label', [1], 'int64') } : {});
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
  /** Classifier-free guidance weight w: eps = eps(x, empty) + w (eps(x, c) - eps(x, empty)); 1 = plain conditional. */
  scale?: number;
  /** Guidance rescale phi (Lin et al. 2023, eq. 15-16): match the guided prediction's std to the conditional one's. */
  rescale?: number;
}

/**
 * A denoiser (the U-Net with weights baked in), compiled once per batch size. For a
 * class-conditional model with guidance, the conditional and unconditional predictions
 * are computed in one batched evaluation of 2N images.
 */
export function makeDenoiser(config: RunConfig, weights: ReadonlyMap<string, Float32Array>, runtime: RuntimeOptions = {}, guidance: Guidance = {}): Denoiser & { release(): Promise<void> } {
  const { model } = config;
  const conditional = model.numClasses !== undefined;
  if (!conditional && (guidance.labels || (guidance.scale ?? 1) !== 1)) {
    throw new Error('this run is not class-conditional: it takes no class labels or guidance (train with --class-cond)');
  }
  const program = new Program(
    ({ x, t, label }) => ({ out: unet(new ParamScope(new ParamStore(0)), model, x, t, conditional ? { label } : {}) }),
    { ...runtime, weights, name: 'denoiser' },
  );
  const shape = [model.inChannels, model.imageSize, model.imageSize];
  const per = shape.reduce((a, b) => a * b, 1);
  const w = guidance.scale ?? 1;
  const nullClass = BigInt(model.numClasses ?? 0);
  const run = async (x: Float32Array, t: number, n: number, labels?: BigInt64Array) => {
    const feeds: Record<string, HostTensor> = {
      x: { data: x, shape: [n, ...shape] },
      t: { data: new Float32Array(n).fill(t), shape: [n] },
    };
    if (conditional) feeds.label = { data: labels ?? new BigInt64Array(n).fill(nullClass), shape: [n] };
    return (await program.run(feeds)).out.data as Float32Array;
  };
  const labelsFor = (n: number): BigInt64Array => {
    if (!guidance.labels) return new BigInt64Array(n).fill(nullClass);
    if (guidance.labels.length !== n) throw new Error(`guidance: ${guidance.labels.length} labels for ${n} images`);
    for (const l of guidance.labels) {
      if (!(l >= 0 && l < (model.numClasses as number))) throw new Error(`class ${l} is out of range: the model has classes 0..${(model.numClasses as number) - 1}`);
    }
    return BigInt64Array.from(guidance.labels, BigInt);
  };
  const denoise = async (x: Float32Array, t: number, batch: number) => {
    if (!conditional) return run(x, t, batch);
    const labels = labelsFor(batch);
    if (w === 1) return run(x, t, batch, labels);
    const both = new Float32Array(2 * batch * per);
    both.set(x);
    both.set(x, batch * per);
    const out = await run(both, t, 2 * batch, BigInt64Array.from([...labels, ...new BigInt64Array(batch).fill(nullClass)]));
    const cond = out.subarray(0, batch * per);
    const uncond = out.subarray(batch * per);
    const guided = cond.map((c, i) => uncond[i] + w * (c - uncond[i]));
    if (guidance.rescale) rescaleGuidance(guided, cond, batch, per, guidance.rescale);
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
