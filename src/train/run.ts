/**
 * A run folder: config.json, checkpoints/, log.jsonl, samples/.
 * Loading one gives a denoiser with the EMA weights baked into the ONNX model.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ParamScope, ParamStore, Program, RuntimeOptions, input, loadSafetensors } from '../engine/index.js';
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

/** A denoiser (the U-Net with weights baked in), compiled once per batch size. */
export function makeDenoiser(config: RunConfig, weights: ReadonlyMap<string, Float32Array>, runtime: RuntimeOptions = {}): Denoiser & { release(): Promise<void> } {
  const { model } = config;
  const program = new Program(({ x, t }) => ({ out: unet(new ParamScope(new ParamStore(0)), model, x, t) }), { ...runtime, weights, name: 'denoiser' });
  const shape = [model.inChannels, model.imageSize, model.imageSize];
  const denoise = async (x: Float32Array, t: number, batch: number) => {
    const out = await program.run({ x: { data: x, shape: [batch, ...shape] }, t: { data: new Float32Array(batch).fill(t), shape: [batch] } });
    return out.out.data as Float32Array;
  };
  return Object.assign(denoise, { release: () => program.release() });
}
