/**
 * Detection through small rotations. An image turned by a few degrees inverts to noise that is
 * close to its x_T turned by as much (measured on the emoji run: at 15 degrees the turned-back
 * noise recovers 0.63-0.67 of the signs, chance being 0.5, and 0.76 with the right shift of half a
 * pixel as well). This cheap search covers small turns about the centre; geometry-search.ts
 * covers any angle, the shift and crops, at more cost. It turns the recovered noise back by each whole degree in
 * [-maxDegrees, maxDegrees] and tests every turn with the same exact test as unturned noise.
 *
 * The p-value is a weighted Bonferroni bound: half the level goes to the unturned test, half is
 * shared by the G turns,
 *   p = min(1, 2 p_0, 2 G min_h p_h).
 * Each p_h is uniform under "not made with this key" (the key is what is random; see
 * gaussian-shading.ts), so P(p <= a) <= a/2 + G a/(2G) = a: valid whatever the correlation
 * between neighbouring turns, and conservative because they are correlated.
 */
import { NoiseDetection, detectInNoise } from './gaussian-shading.js';
import { warpNoise } from './geometry-search.js';
import type { WatermarkKey } from './key.js';

export interface RotatedNoiseDetection extends NoiseDetection {
  /** The turn, in degrees, at which the key was found best (positive: the image looks turned clockwise); 0 without a turn. */
  rotation: number;
}

/**
 * Turns each channel of `noise` (shape C x H x W) about its centre, by bilinear resampling:
 * out(q) = in(R(degrees) (q - c) + c), so that noise of an image turned clockwise by `degrees`
 * comes back upright (warpNoise with a pure turn; positions whose source is outside keep their value).
 */
export function rotateNoise(noise: Float32Array, shape: readonly [number, number, number], degrees: number): Float32Array {
  return warpNoise(noise, shape, { degrees, scale: 1, dx: 0, dy: 0 });
}

/** Tests the noise unturned and turned back by every whole degree up to `maxDegrees` either way; see the file's comment for the p-value. */
export function detectInRotatedNoise(key: WatermarkKey, noise: Float32Array, shape: readonly [number, number, number], maxDegrees: number): RotatedNoiseDetection {
  if (!(Number.isInteger(maxDegrees) && maxDegrees >= 1 && maxDegrees <= 45)) throw new Error(`the rotation search takes whole degrees in 1..45, got ${maxDegrees}`);
  const unturned = detectInNoise(key, noise);
  let best: RotatedNoiseDetection = { ...unturned, rotation: 0, log10P: Math.min(0, unturned.log10P + Math.log10(2)) };
  const turns = 2 * maxDegrees;
  for (let deg = -maxDegrees; deg <= maxDegrees; deg++) {
    if (deg === 0) continue;
    const d = detectInNoise(key, rotateNoise(noise, shape, deg));
    const log10P = Math.min(0, d.log10P + Math.log10(2 * turns));
    if (log10P < best.log10P) best = { ...d, rotation: deg, log10P };
  }
  return { ...best, pValue: 10 ** best.log10P };
}
