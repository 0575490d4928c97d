/**
 * Watermark detection on images: DDIM inversion with the model that made them (a Diffuse run's,
 * or a Stable Diffusion folder's through its encoder) recovers an estimate of x_T, whose signs
 * are tested for the key (see gaussian-shading.ts).
 */
import { DiffusionPipeline, ImageBatch } from '../pipelines/index.js';
import { StableDiffusionPipeline } from '../latent/index.js';
import { NoiseGrid, detectInNoise } from './gaussian-shading.js';
import type { WatermarkKey } from './key.js';
import { GeometrySearchOptions, IDENTITY_MAP, NoiseMap, minAreaOf } from './geometry-search.js';
import { RotatedNoiseDetection, detectInRotatedNoise } from './rotation-search.js';
import { SearchThreads, checkThreadCount, detectInMovedNoises } from './geometry-threads.js';
import { detectTurned } from './turn-search.js';
import { MAX_SCREENED_CROPS, cropMap, screenedCropCount } from './crop-search.js';
import { OptionError } from '../engine/errors.js';

export interface WatermarkDetection extends RotatedNoiseDetection {
  /** The map from x_T to the image's inverted noise at which the key was found (turn, scale, shift); the identity without a search. */
  map: NoiseMap;
  /** pValue < fpr: the image carries this key's watermark, at false-positive rate `fpr`. */
  detected: boolean;
  fpr: number;
}

export interface DetectOptions {
  /** Inversion steps (default 50; fewer is faster and less accurate). */
  steps?: number;
  /** Fixed-point refinements per inversion step (default 0; see invertDDIM). */
  refine?: number;
  /** The false-positive rate of the decision (default 0.01). */
  fpr?: number;
  /**
   * Also look for the mark in the image turned back by up to this many whole degrees either way
   * (default 0: no search). Finds images turned by a few degrees; costs 2 x maxRotation more
   * tests (not inversions), and the p-value pays for the search (see rotation-search.ts).
   */
  maxRotation?: number;
  /**
   * Also look for the mark after a turn by any angle (with a shift of up to 1.5 px) or a crop
   * enlarged back to size (default off; see geometry-search.ts). Costs most of a second of one core
   * per unmarked 32 x 32 colour image on top of the inversion (a mark found unmoved skips it); a
   * batch's searches share the cores (`threads`). The p-value pays for the search. Not with maxRotation.
   * On a latent model (a latent run, a Stable Diffusion folder): the image itself is moved back
   * and inverted again for each candidate: turns by every 3 degrees (turn-search.ts, 119
   * inversions) and whole-pixel crops keeping at least `minArea` of the area, put back where they
   * came from (crop-search.ts: about 280 inversions of 5 steps for a 64 px image at minArea 0.6;
   * images over about 100 px a side are searched for turns only), for each image not found unmoved.
   */
  geometric?: boolean | GeometrySearchOptions;
  /**
   * Threads the geometric search shares a batch among (default: one per core; each image gets the
   * same result on any number), or a SearchThreads pool the caller keeps across calls.
   */
  threads?: number | SearchThreads;
  /** Text-conditional runs: the prompt to invert with (default the empty prompt). */
  prompt?: string;
  onStep?: (index: number, total: number) => void;
}

/** A model whose images can be checked: a Diffuse run's pipeline, or a Stable Diffusion folder's. */
export type WatermarkModel = DiffusionPipeline | StableDiffusionPipeline;

/**
 * Tests each image of the batch for the key's watermark. The images are not modified. With a
 * Stable Diffusion folder the images may have any size the folder takes (sides multiples of 8), the
 * size they were generated at: the mark lives on that size's latent grid.
 */
export async function detectWatermark(images: ImageBatch, pipe: WatermarkModel, key: WatermarkKey, o: DetectOptions = {}): Promise<WatermarkDetection[]> {
  const fpr = o.fpr ?? 0.01;
  if (!(fpr > 0 && fpr < 1)) throw new Error(`the false-positive rate must be in (0, 1), got ${o.fpr}`);
  const maxRotation = o.maxRotation ?? 0;
  if (!(Number.isInteger(maxRotation) && maxRotation >= 0 && maxRotation <= 45)) throw new Error(`the rotation search takes whole degrees in 0..45, got ${o.maxRotation}`);
  if (typeof o.threads === 'number') checkThreadCount(o.threads);
  if (o.geometric && maxRotation > 0) throw new Error('choose one search: the geometric search already covers every turn (leave maxRotation at 0)');
  // The mark's grid on a latent model: a Stable Diffusion folder's is the image's size over its
  // autoencoder's factor. A latent estimate's edge positions count for less (EDGE_FACTORS,
  // measured on latent models); a pixel-space estimate (no latentShape) is ranked as a whole.
  const [, H, W] = images.shape;
  const latentShape: NoiseGrid | undefined = pipe instanceof StableDiffusionPipeline ? [pipe.latentChannels, H / pipe.vaeScale, W / pipe.vaeScale] : pipe.codec ? pipe.latentShape : undefined;
  // The pixel-space searches move the inverted noise as the image was moved, pixel for pixel; a
  // latent grid is not the image's, so a latent model's search turns the image itself (turn-search.ts).
  if (latentShape && maxRotation > 0) throw new OptionError('a latent model is searched for turns by `geometric` (any angle), not `maxRotation`');
  const invert = { steps: o.steps ?? 50, refine: o.refine, ...(o.prompt !== undefined ? { prompt: o.prompt } : {}), onStep: (s: { index: number; total: number }) => o.onStep?.(s.index, s.total) };
  const inverted = async (batch: ImageBatch, steps = invert.steps): Promise<Float32Array[]> => {
    // A Stable Diffusion folder inverts its batch at once: a few images at a time keep memory in bounds.
    const chunk = pipe instanceof StableDiffusionPipeline ? 4 : batch.count;
    const per = batch.data.length / batch.count;
    const out: Float32Array[] = [];
    for (let at = 0; at < batch.count; at += chunk) {
      const n = Math.min(chunk, batch.count - at);
      const image = { data: batch.data.subarray(at * per, (at + n) * per), count: n, shape: batch.shape };
      const noise = pipe instanceof StableDiffusionPipeline ? (await pipe.invert({ ...invert, steps, image })).latents : (await pipe.invert({ ...invert, steps, image })).data;
      for (let k = 0; k < n; k++) out.push(noise.subarray((k * noise.length) / n, ((k + 1) * noise.length) / n));
    }
    return out;
  };
  if (latentShape && o.geometric) {
    const minArea = minAreaOf(o.geometric === true ? {} : o.geometric);
    const screened = screenedCropCount(W, H, minArea);
    const crops = screened > 0 && screened <= MAX_SCREENED_CROPS ? { minArea, latentShape } : undefined;
    const found = await detectTurned(images, key, inverted, { crops, grid: latentShape });
    return found.map((d) => ({ ...d, map: d.crop ? cropMap(d.crop, images.shape) : { ...IDENTITY_MAP, degrees: d.rotation }, detected: d.pValue < fpr, fpr }));
  }
  const noises = await inverted(images);
  if (o.geometric) {
    const found = await detectInMovedNoises(key, noises, images.shape, o.geometric === true ? {} : o.geometric, o.threads);
    return found.map((g) => ({ ...g, rotation: g.map.degrees, detected: g.pValue < fpr, fpr }));
  }
  return noises.map((x) => {
    const d = maxRotation > 0 ? detectInRotatedNoise(key, x, images.shape, maxRotation) : { ...detectInNoise(key, x, undefined, latentShape), rotation: 0 };
    return { ...d, map: { ...IDENTITY_MAP, degrees: d.rotation }, detected: d.pValue < fpr, fpr };
  });
}
