/**
 * Detection through small rotations. An image turned by a few degrees inverts to noise that is
 * close to its x_T turned by as much: the pixel-space model treats slightly tilted content as it
 * treats upright content (measured on the emoji run: at 15 degrees the turned-back noise recovers
 * 0.63-0.67 of the signs, chance being 0.5; at 75 degrees nothing, since the model is not
 * rotation-equivariant). So the search turns the recovered noise back by each whole degree in
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
import type { WatermarkKey } from './key.js';

export interface RotatedNoiseDetection extends NoiseDetection {
  /** The turn, in degrees, at which the key was found best (positive: the image looks turned clockwise); 0 without a turn. */
  rotation: number;
}

/**
 * Turns each channel of `noise` (shape C x H x W) about its centre, by bilinear resampling:
 * out(q) = in(R(degrees) (q - c) + c), so that noise of an image turned clockwise by `degrees`
 * comes back upright. Positions whose source lies outside the image keep their own value,
 * in(q): filling them with a constant would give them the same sign bit in every image, and a
 * fixed key would then meet a fixed pattern there, which biases the test for that key.
 */
export function rotateNoise(noise: Float32Array, shape: readonly [number, number, number], degrees: number): Float32Array {
  const [C, H, W] = shape;
  if (noise.length !== C * H * W) throw new Error(`rotateNoise: ${noise.length} values do not make a ${C}x${H}x${W} image`);
  const r = (degrees * Math.PI) / 180;
  const [cos, sin] = [Math.cos(r), Math.sin(r)];
  const [cx, cy] = [(W - 1) / 2, (H - 1) / 2];
  const out = new Float32Array(noise.length);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const sx = cos * (x - cx) - sin * (y - cy) + cx;
      const sy = sin * (x - cx) + cos * (y - cy) + cy;
      if (sx < -1e-9 || sy < -1e-9 || sx > W - 1 + 1e-9 || sy > H - 1 + 1e-9) {
        for (let c = 0; c < C; c++) out[c * H * W + y * W + x] = noise[c * H * W + y * W + x];
        continue;
      }
      const [x0, y0] = [Math.min(W - 1, Math.max(0, Math.floor(sx))), Math.min(H - 1, Math.max(0, Math.floor(sy)))];
      const [x1, y1] = [Math.min(W - 1, x0 + 1), Math.min(H - 1, y0 + 1)];
      const [fx, fy] = [Math.max(0, sx - x0), Math.max(0, sy - y0)];
      for (let c = 0; c < C; c++) {
        const p = c * H * W;
        const top = (1 - fx) * noise[p + y0 * W + x0] + fx * noise[p + y0 * W + x1];
        const bottom = (1 - fx) * noise[p + y1 * W + x0] + fx * noise[p + y1 * W + x1];
        out[p + y * W + x] = (1 - fy) * top + fy * bottom;
      }
    }
  return out;
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
