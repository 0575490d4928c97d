/**
 * Detection through turns by any angle on latent models. The pixel-space searches move the
 * inverted noise as the image moved (geometry-search.ts), but a latent model's x_T lives on the
 * autoencoder's grid, 4 or 8 pixels a cell, and moving it there does not bring the mark back.
 * Turned back in image space instead, by the right angle or one a degree or two off, and then
 * encoded and inverted, the image gives its mark back (docs/LATENT-TRAINING.md, "Turns and crops, searched").
 *
 * So this search turns the image back by every TURN_STEP degrees (the attack's own resampler and
 * centre convention matter: sharp here, as in the bench's attack), inverts every candidate, and
 * tests each with the exact test of gaussian-shading.ts. It costs one inversion per angle: about
 * 120 inversions per image that is not found unturned. The p-value is the weighted Bonferroni bound
 * of rotation-search.ts, p = min(1, 2 p_0, 2 G min_h p_h) over the G turned candidates: valid
 * whatever the correlation between neighbouring angles, since each p_h is uniform under "not made
 * with this key". With crops (crop-search.ts) the same loop also tries crops put back, and G
 * counts every crop of their lattice beside the turns.
 */
import sharp from 'sharp';
import type { ImageBatch } from '../pipelines/index.js';
import { NoiseDetection, NoiseGrid, detectInNoise } from './gaussian-shading.js';
import type { WatermarkKey } from './key.js';
import { edgeColour, imageBytes, imageFromBytes } from './processing.js';
import { Crop, CropSearch, cropLatticeSize, searchCrops } from './crop-search.js';

/** Degrees between the angles tried: the mark survives a turn back that is 2 degrees off. */
export const TURN_STEP = 3;
/** log10 p below which the unturned test is taken as it is, without the search. */
const SURE = -12;

/** The angles tried (degrees clockwise the image looks turned): every TURN_STEP but 0. */
export function turnAngles(): number[] {
  return Array.from({ length: Math.floor(360 / TURN_STEP) - 1 }, (_, k) => (k + 1) * TURN_STEP);
}

/**
 * Image `k` of the batch turned back by `degrees` (it looked turned clockwise by as much): turned
 * counter-clockwise about its centre on a canvas that holds it whole, the corners filled with the
 * mean colour of its top and bottom rows, then cropped back to its size at the centre.
 */
export async function turnBack(batch: ImageBatch, k: number, degrees: number): Promise<Float32Array> {
  const [c, h, w] = batch.shape;
  const bytes = imageBytes(batch, k);
  const background = edgeColour(bytes, batch.shape);
  const turned = await sharp(bytes, { raw: { width: w, height: h, channels: c as 1 | 3 } }).rotate(-degrees, { background }).png().toBuffer();
  const meta = await sharp(turned).metadata();
  const img = sharp(turned).extract({ left: Math.floor(((meta.width as number) - w) / 2), top: Math.floor(((meta.height as number) - h) / 2), width: w, height: h });
  const { data, info } = await (c === 1 ? img.toColourspace('b-w') : img.toColourspace('srgb')).raw().toBuffer({ resolveWithObject: true });
  return imageFromBytes(data, info.channels, batch.shape);
}

export interface TurnDetection extends NoiseDetection {
  /** The turn (degrees; the image looked turned clockwise by as much) at which the key was found best; 0 unturned. */
  rotation: number;
  /** The crop put back at which the key was found best, when crops were searched and one won. */
  crop?: Crop;
  /** G, the number of candidates the p-value pays for: the turns, and with crops every crop of the lattice (crop-search.ts). */
  turnsSearched: number;
}

/**
 * Tests each image unturned and turned back by every angle of turnAngles, and with `crops` also
 * put back from crops (crop-search.ts). `invert` gives the inverted x_T of a batch of images (the
 * model's encoder and DDIM inversion, with `steps` when given), one array per image. Images found
 * unturned with p < 1e-12 skip the search. `grid`, the latent grid (C x H x W), lets each test
 * count edge positions for less (detectInNoise); crops use their own `latentShape`.
 */
export async function detectTurned(
  images: ImageBatch,
  key: WatermarkKey,
  invert: (batch: ImageBatch, steps?: number) => Promise<Float32Array[]>,
  o: { onImage?: (done: number, total: number) => void; crops?: CropSearch; grid?: NoiseGrid } = {},
): Promise<TurnDetection[]> {
  const angles = turnAngles();
  const [, H, W] = images.shape;
  const G = angles.length + (o.crops ? cropLatticeSize(W, H, o.crops.minArea) : 0);
  const per = images.shape.reduce((a, b) => a * b, 1);
  const unturned = (await invert(images)).map((x) => detectInNoise(key, x, undefined, o.grid));
  const out: TurnDetection[] = [];
  for (let k = 0; k < images.count; k++) {
    const d0 = unturned[k];
    let best: TurnDetection = { ...d0, rotation: 0, turnsSearched: G, log10P: Math.min(0, d0.log10P + Math.log10(2)) };
    if (d0.log10P > SURE) {
      const candidates = new Float32Array(angles.length * per);
      for (const [j, deg] of angles.entries()) candidates.set(await turnBack(images, k, deg), j * per);
      const noises = await invert({ data: candidates, count: angles.length, shape: images.shape });
      for (const [j, x] of noises.entries()) {
        const d = detectInNoise(key, x, undefined, o.grid);
        const log10P = Math.min(0, d.log10P + Math.log10(2 * G));
        if (log10P < best.log10P) best = { ...d, rotation: angles[j], turnsSearched: G, log10P };
      }
      if (o.crops) {
        const found = await searchCrops(images, k, key, invert, o.crops);
        const log10P = Math.min(0, found.detection.log10P + Math.log10(2 * G));
        if (log10P < best.log10P) best = { ...found.detection, rotation: 0, crop: found.crop, turnsSearched: G, log10P };
      }
    }
    out.push({ ...best, pValue: 10 ** best.log10P });
    o.onImage?.(k + 1, images.count);
  }
  return out;
}
