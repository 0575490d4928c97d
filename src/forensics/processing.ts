/**
 * What happens to an image between the generator and an analyst: 8-bit quantisation (every saved
 * file), JPEG re-encoding, resizing. The detector is calibrated and evaluated on images that went
 * through the same processing whether real or generated, so that the format is never the signal
 * (Grommelt et al. 2024, arXiv 2403.17608).
 */
import sharp from 'sharp';
import type { ImageBatch } from '../pipelines/index.js';

/** Rounds to the 256 levels of an 8-bit file, clipping to [-1, 1]: what saving as PNG and reading back does. */
export function quantize8(batch: ImageBatch): ImageBatch {
  const data = batch.data.map((v) => Math.round((Math.min(1, Math.max(-1, v)) + 1) * 127.5) / 127.5 - 1);
  return { ...batch, data };
}

/**
 * The mean colour of an image's top and bottom rows (interleaved 8-bit pixels of [c, h, w]), as
 * sharp's background: what the searches fill the canvas with when they move an image back.
 */
export function edgeColour(bytes: Uint8Array, [c, h, w]: readonly number[]): { r: number; g: number; b: number } {
  const fill = [0, 0, 0];
  for (let ch = 0; ch < c; ch++) {
    let s = 0;
    for (let x = 0; x < w; x++) s += bytes[x * c + ch] + bytes[((h - 1) * w + x) * c + ch];
    fill[ch] = Math.round(s / (2 * w));
  }
  return c === 1 ? { r: fill[0], g: fill[0], b: fill[0] } : { r: fill[0], g: fill[1], b: fill[2] };
}

/** Interleaved 8-bit pixels of image k (HWC), as sharp takes them. */
export function imageBytes(batch: ImageBatch, k: number): Buffer {
  const [c, h, w] = batch.shape;
  const plane = h * w;
  const b = Buffer.alloc(c * plane);
  const at = k * c * plane;
  for (let ch = 0; ch < c; ch++) for (let i = 0; i < plane; i++) b[i * c + ch] = Math.round((Math.min(1, Math.max(-1, batch.data[at + ch * plane + i])) + 1) * 127.5);
  return b;
}

/**
 * One image of `shape` (C, H, W; values in [-1, 1], planar) from interleaved 8-bit pixels with
 * `channels` per pixel (the last repeated if fewer than C, as for a grey file read by a colour model).
 */
export function imageFromBytes(data: Uint8Array, channels: number, shape: readonly [number, number, number]): Float32Array {
  const [c, h, w] = shape;
  const plane = h * w;
  const out = new Float32Array(c * plane);
  for (let ch = 0; ch < c; ch++) for (let i = 0; i < plane; i++) out[ch * plane + i] = data[i * channels + Math.min(ch, channels - 1)] / 127.5 - 1;
  return out;
}

/** Applies `f` (8-bit HWC in, sharp pipeline out) to every image and reads the result back at the same size. */
async function eachImage(batch: ImageBatch, f: (s: sharp.Sharp) => Promise<Buffer>): Promise<ImageBatch> {
  const [c, h, w] = batch.shape;
  const plane = h * w;
  const out = new Float32Array(batch.data.length);
  for (let k = 0; k < batch.count; k++) {
    const encoded = await f(sharp(imageBytes(batch, k), { raw: { width: w, height: h, channels: c as 1 | 3 } }));
    const decoded = sharp(encoded);
    const { data, info } = await (c === 1 ? decoded.toColourspace('b-w') : decoded.toColourspace('srgb')).raw().toBuffer({ resolveWithObject: true });
    if (info.width !== w || info.height !== h) throw new Error(`processing changed the size to ${info.width}x${info.height}`);
    out.set(imageFromBytes(data, info.channels, batch.shape), k * c * plane);
  }
  return { ...batch, data: out };
}

/** Each image saved as JPEG at `quality` (1-100) and decoded again. */
export async function jpegRoundTrip(batch: ImageBatch, quality: number): Promise<ImageBatch> {
  if (!(Number.isInteger(quality) && quality >= 1 && quality <= 100)) throw new Error(`JPEG quality must be an integer in 1..100, got ${quality}`);
  return eachImage(batch, (s) => s.jpeg({ quality }).toBuffer());
}

/** Each image resized by `factor` and back to its size (bicubic both ways), saved losslessly. */
export function resizeRoundTrip(batch: ImageBatch, factor: number): Promise<ImageBatch> {
  const [, h, w] = batch.shape;
  const [sw, sh] = [Math.max(1, Math.round(w * factor)), Math.max(1, Math.round(h * factor))];
  return eachImage(batch, async (s) => {
    const small = await s.resize(sw, sh, { kernel: 'cubic' }).png().toBuffer();
    return sharp(small).resize(w, h, { kernel: 'cubic' }).png().toBuffer();
  });
}
