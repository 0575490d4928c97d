/**
 * Crops on latent models: an image cropped and enlarged back to its size, put back where the crop
 * came from. As with turns (turn-search.ts), moving the inverted latent does not bring the mark
 * back; the image is shrunk to the crop's size, pasted at the crop's offset on a canvas of its
 * border colour, encoded and inverted, and only the latent cells that lie wholly inside the pasted
 * part are tested (the rest of x_T was cut away). The offset must be right to a pixel or two
 * (docs/LATENT-TRAINING.md), so the candidates are whole-pixel crops:
 *
 * - the lattice the p-value pays for: every crop width from ceil(sqrt(minArea) W) to W - 1 (the
 *   height in the image's proportion), at every whole-pixel offset;
 * - a screen: every CROP_STEP-th width and offset of it, inverted with few steps;
 * - a refinement: the lattice's neighbours (width and offsets +-1) of the best screened crops.
 *
 * Each candidate's test is exact under "not made with this key" (the mask depends on the crop,
 * never on the key), so the weighted Bonferroni bound of turn-search.ts holds with G the lattice's
 * size, whichever candidates were tried.
 */
import sharp from 'sharp';
import type { ImageBatch } from '../pipelines/index.js';
import type { NoiseMap } from './geometry-search.js';
import { NoiseDetection, detectInNoise } from './gaussian-shading.js';
import type { WatermarkKey } from './key.js';
import { edgeColour, imageBytes, imageFromBytes } from './processing.js';

/** A crop of the image: its size and offset in pixels. */
export interface Crop {
  width: number;
  height: number;
  left: number;
  top: number;
}

/** The crops searched: the smallest share of the area a crop keeps, and the latent grid the mark lives on. */
export interface CropSearch {
  minArea: number;
  latentShape: readonly [number, number, number];
}

/** Pixels between the widths and offsets of the screen; the mark survives a put-back 1 px off. */
export const CROP_STEP = 2;
/** Inversion steps of the crop candidates: enough to rank them and to find the mark (5 gives 100 candidates in about 2 s for a 64 px latent image). */
export const CROP_INVERSION_STEPS = 5;
/** The largest screen searched: about 100 px a side at minArea 0.6. Larger images are searched for turns only (the screen would grow as the side squared). */
export const MAX_SCREENED_CROPS = 1000;
/** Screened crops whose neighbours are tried. */
const REFINED = 3;

/** The crop's height for a width: the image's proportion, rounded. */
const heightFor = (width: number, W: number, H: number) => Math.round((width * H) / W);

/** The widths of the lattice, widest last: crops keeping at least minArea of the image, smaller than it. */
function cropWidths(W: number, H: number, minArea: number): number[] {
  const out: number[] = [];
  for (let w = Math.ceil(Math.sqrt(minArea) * W); w < W; w++) if (heightFor(w, W, H) >= 1 && heightFor(w, W, H) <= H) out.push(w);
  return out;
}

/** G: how many crops the lattice holds (every width at every offset). */
export function cropLatticeSize(W: number, H: number, minArea: number): number {
  return cropWidths(W, H, minArea).reduce((a, w) => a + (W - w + 1) * (H - heightFor(w, W, H) + 1), 0);
}

/** 0, step, 2 step, ... up to `last`, with `last` itself always included. */
function stepped(last: number, step: number): number[] {
  const out: number[] = [];
  for (let v = 0; v < last; v += step) out.push(v);
  out.push(last);
  return out;
}

/** The screen's widths: every CROP_STEP-th width of the lattice, the widest always. */
function screenWidths(W: number, H: number, minArea: number): number[] {
  const widths = cropWidths(W, H, minArea);
  return widths.filter((_, i) => (widths.length - 1 - i) % CROP_STEP === 0);
}

/** The screen: every CROP_STEP-th width of the lattice (the widest always), every CROP_STEP-th offset. */
export function screenedCrops(W: number, H: number, minArea: number): Crop[] {
  return screenWidths(W, H, minArea).flatMap((width) => {
    const height = heightFor(width, W, H);
    return stepped(H - height, CROP_STEP).flatMap((top) => stepped(W - width, CROP_STEP).map((left) => ({ width, height, left, top })));
  });
}

/** How many crops the screen holds, without making them (a 512 px image's screen would be tens of thousands). */
export function screenedCropCount(W: number, H: number, minArea: number): number {
  return screenWidths(W, H, minArea).reduce((a, width) => a + stepped(H - heightFor(width, W, H), CROP_STEP).length * stepped(W - width, CROP_STEP).length, 0);
}

/** The lattice's crops next to `c` (width +-1, offsets +-1), `c` left out. */
export function neighbouringCrops(c: Crop, W: number, H: number, minArea: number): Crop[] {
  const widths = new Set(cropWidths(W, H, minArea));
  const out: Crop[] = [];
  for (const dw of [-1, 0, 1]) {
    const width = c.width + dw;
    if (!widths.has(width)) continue;
    const height = heightFor(width, W, H);
    for (const dt of [-1, 0, 1])
      for (const dl of [-1, 0, 1]) {
        const [left, top] = [c.left + dl, c.top + dt];
        if (left < 0 || top < 0 || left > W - width || top > H - height || (dw === 0 && dl === 0 && dt === 0)) continue;
        out.push({ width, height, left, top });
      }
  }
  return out;
}

/** Image `k` shrunk to the crop's size and pasted at its offset on a canvas of the mean colour of its top and bottom rows. */
export async function putCropBack(batch: ImageBatch, k: number, crop: Crop): Promise<Float32Array> {
  return cropPaster(batch, k)(crop);
}

/**
 * putCropBack for many crops of one image: the image's bytes and border colour are read once, and
 * it is shrunk once per crop size (a screen tries each size at many offsets).
 */
export function cropPaster(batch: ImageBatch, k: number): (crop: Crop) => Promise<Float32Array> {
  const [c, h, w] = batch.shape;
  const bytes = imageBytes(batch, k);
  const background = edgeColour(bytes, batch.shape);
  const shrunk = new Map<string, Promise<Buffer>>();
  return async (crop) => {
    const size = `${crop.width}x${crop.height}`;
    let small = shrunk.get(size);
    if (!small) {
      small = sharp(bytes, { raw: { width: w, height: h, channels: c as 1 | 3 } }).resize(crop.width, crop.height, { kernel: 'cubic', fit: 'fill' }).raw().toBuffer();
      shrunk.set(size, small);
    }
    const canvas = sharp({ create: { width: w, height: h, channels: 3, background } })
      .composite([{ input: await small, raw: { width: crop.width, height: crop.height, channels: c as 1 | 3 }, left: crop.left, top: crop.top }])
      .removeAlpha();
    const { data, info } = await (c === 1 ? canvas.toColourspace('b-w') : canvas.toColourspace('srgb')).raw().toBuffer({ resolveWithObject: true });
    return imageFromBytes(data, info.channels, batch.shape);
  };
}

/** The latent positions (every channel) whose cell lies wholly inside the pasted crop. */
export function cropMask(crop: Crop, imageShape: readonly number[], latentShape: readonly number[]): Uint8Array {
  const [, H, W] = imageShape;
  const [lc, lh, lw] = latentShape;
  const [fy, fx] = [H / lh, W / lw];
  const use = new Uint8Array(lc * lh * lw);
  for (let y = 0; y < lh; y++)
    for (let x = 0; x < lw; x++) {
      const inside = x * fx >= crop.left && (x + 1) * fx <= crop.left + crop.width && y * fy >= crop.top && (y + 1) * fy <= crop.top + crop.height;
      if (inside) for (let c = 0; c < lc; c++) use[(c * lh + y) * lw + x] = 1;
    }
  return use;
}

/**
 * The crop as a NoiseMap, in geometry-search.ts's terms q = c + s (p - c) + t about the centre c:
 * scale s = W / width, shift t = c (s - 1) - s * offset (0 for a centred crop).
 */
export function cropMap(crop: Crop, imageShape: readonly number[]): NoiseMap {
  const [, H, W] = imageShape;
  const [sx, sy] = [W / crop.width, H / crop.height];
  const round = (v: number) => Math.round(v * 4) / 4 + 0;
  return { degrees: 0, scale: Math.round(sx * 1e4) / 1e4, dx: round((W / 2) * (sx - 1) - sx * crop.left), dy: round((H / 2) * (sy - 1) - sy * crop.top) };
}

/** Image k's best crop: the screen, then the neighbours of its REFINED best; the raw test (not yet paid for the search). */
export async function searchCrops(
  images: ImageBatch,
  k: number,
  key: WatermarkKey,
  invert: (batch: ImageBatch, steps?: number) => Promise<Float32Array[]>,
  search: CropSearch,
): Promise<{ crop: Crop; detection: NoiseDetection }> {
  const [, H, W] = images.shape;
  const per = images.shape.reduce((a, b) => a * b, 1);
  const tried = new Map<string, { crop: Crop; detection: NoiseDetection }>();
  const id = (c: Crop) => `${c.width},${c.left},${c.top}`;
  const paste = cropPaster(images, k);
  const tryAll = async (crops: Crop[]) => {
    const fresh = crops.filter((c) => !tried.has(id(c)));
    if (!fresh.length) return;
    const candidates = new Float32Array(fresh.length * per);
    for (const [j, c] of fresh.entries()) candidates.set(await paste(c), j * per);
    const noises = await invert({ data: candidates, count: fresh.length, shape: images.shape }, CROP_INVERSION_STEPS);
    for (const [j, x] of noises.entries()) tried.set(id(fresh[j]), { crop: fresh[j], detection: detectInNoise(key, x, cropMask(fresh[j], images.shape, search.latentShape), search.latentShape) });
  };
  const byP = () => [...tried.values()].sort((a, b) => a.detection.log10P - b.detection.log10P);
  await tryAll(screenedCrops(W, H, search.minArea));
  await tryAll(byP().slice(0, REFINED).flatMap((t) => neighbouringCrops(t.crop, W, H, search.minArea)));
  return byP()[0];
}
