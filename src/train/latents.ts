/**
 * The latents a latent U-Net trains on: every training image encoded once by the autoencoder
 * (and its mirror image, when the run flips), kept as the posterior's mean and standard deviation
 * so that each step can draw a fresh z = mean + std * n, as LDM and diffusers' training scripts
 * draw `latent_dist.sample()`. Saved beside the run (latents.safetensors) so that a resumed run
 * does not encode again.
 */
import { existsSync } from 'node:fs';
import { NamedTensor, loadSafetensors, saveSafetensors } from '../engine/index.js';
import { FastGenerator } from '../diffusion/index.js';
import type { ImageDataset } from '../data/index.js';
import type { AutoencoderNetwork } from '../run/autoencoder.js';
import { OptionError } from '../engine/errors.js';

export interface LatentCache {
  readonly count: number;
  /** [channels, height, width] of one latent (unscaled). */
  readonly shape: [number, number, number];
  readonly mean: Float32Array;
  readonly std: Float32Array;
  /** The mirrored images' posteriors, for runs with random flips (a latent's mirror is not the mirror's latent). */
  readonly flipped?: { mean: Float32Array; std: Float32Array };
}

/** Mirrors each row of n images [n, C, H, W]. */
export function mirrorImages(images: Float32Array, n: number, shape: readonly [number, number, number]): Float32Array {
  const [c, h, w] = shape;
  const out = new Float32Array(images.length);
  for (let r = 0; r < n * c * h; r++) for (let x = 0; x < w; x++) out[r * w + x] = images[r * w + (w - 1 - x)];
  return out;
}

/** Encodes a data set (and its mirror images with `flip`), reporting images done. */
export async function encodeDataset(
  autoencoder: AutoencoderNetwork,
  data: ImageDataset,
  o: { flip: boolean; onProgress?: (done: number, total: number) => void },
): Promise<LatentCache> {
  const [c, h, w] = autoencoder.imageShape;
  if (data.channels !== c || data.height !== h || data.width !== w) {
    throw new OptionError(`the data are ${data.channels}x${data.height}x${data.width} images but the autoencoder was trained on ${c}x${h}x${w}; set \`data.size\` to ${h}${c !== data.channels ? ` and \`data.channels\` to ${c}` : ''}`);
  }
  const chunk = 256;
  const total = data.count * (o.flip ? 2 : 1);
  const per = c * h * w;
  const run = async (images: Float32Array, offset: number) => {
    const lper = autoencoder.latentShape.reduce((a, b) => a * b, 1);
    const mean = new Float32Array(data.count * lper);
    const std = new Float32Array(data.count * lper);
    for (let at = 0; at < data.count; at += chunk) {
      const n = Math.min(chunk, data.count - at);
      const r = await autoencoder.encode(images.subarray(at * per, (at + n) * per), n);
      mean.set(r.mean, at * lper);
      std.set(r.std, at * lper);
      o.onProgress?.(offset + at + n, total);
    }
    return { mean, std };
  };
  const plain = await run(data.images, 0);
  const flipped = o.flip ? await run(mirrorImages(data.images, data.count, [c, h, w]), data.count) : undefined;
  return { count: data.count, shape: autoencoder.latentShape, ...plain, ...(flipped ? { flipped } : {}) };
}

/**
 * The scaling factor 1 / std(z) over draws z = mean + std * n of every cached latent (LDM's
 * scale_by_std, diffusers' `scaling_factor`): the U-Net then sees unit-variance latents, which is
 * what the noise schedule assumes. The draws use a fixed seed, so the factor is reproducible.
 */
export function scalingFactorOf(cache: LatentCache, seed = 0): number {
  const n = new FastGenerator(seed).randn(cache.mean.length);
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < n.length; i++) {
    const z = cache.mean[i] + cache.std[i] * n[i];
    s += z;
    s2 += z * z;
  }
  const N = n.length;
  const variance = (s2 - (s * s) / N) / (N - 1);
  if (!(variance > 0)) throw new Error('the autoencoder maps every training image to the same latent: train it longer, or check the data');
  return 1 / Math.sqrt(variance);
}

export async function saveLatentCache(file: string, cache: LatentCache, metadata: Record<string, string>): Promise<void> {
  const shape = [cache.count, ...cache.shape];
  const tensors = new Map<string, NamedTensor>([
    ['mean', { shape, data: cache.mean }],
    ['std', { shape, data: cache.std }],
  ]);
  if (cache.flipped) {
    tensors.set('flipped_mean', { shape, data: cache.flipped.mean });
    tensors.set('flipped_std', { shape, data: cache.flipped.std });
  }
  await saveSafetensors(file, tensors, metadata);
}

/** Reads a cache that saveLatentCache wrote, checking it against what the run needs. */
export async function loadLatentCache(file: string, expect: { count: number; shape: readonly number[]; flip: boolean }): Promise<LatentCache> {
  if (!existsSync(file)) throw new OptionError(`${file}: missing; the latent run's cache of encoded images is gone (start a new run from the autoencoder, \`vae\`)`);
  const { tensors } = await loadSafetensors(file);
  const get = (name: string): Float32Array => {
    const t = tensors.get(name);
    const want = [expect.count, ...expect.shape];
    if (!t || !(t.data instanceof Float32Array) || t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new OptionError(`${file}: '${name}' is missing or not float32 [${want.join(', ')}]; the data changed since the run started (resume with the same \`data.source\`, \`data.size\` and \`data.limit\` as the run's config.json)`);
    }
    return t.data;
  };
  const [c, h, w] = expect.shape;
  return { count: expect.count, shape: [c, h, w], mean: get('mean'), std: get('std'), ...(expect.flip ? { flipped: { mean: get('flipped_mean'), std: get('flipped_std') } } : {}) };
}
