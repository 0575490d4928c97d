/**
 * Writing images: grids and strips of [-1, 1] tensors as PNG (sharp) and animated GIF (gifenc).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export interface Pixels {
  /** Interleaved 8-bit pixels, `channels` per pixel. */
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/**
 * Lays out `count` images of [C, H, W] (C = 1 or 3, values in [-1, 1]) in a grid
 * of `cols` columns with `pad` pixels of `background` (0..255) between them.
 */
export function toGrid(images: Float32Array, count: number, shape: readonly number[], cols = Math.ceil(Math.sqrt(count)), pad = 2, background = 255): Pixels {
  const [c, h, w] = shape;
  if (c !== 1 && c !== 3) throw new Error(`toGrid: images must have 1 or 3 channels, got ${c}`);
  if (images.length < count * c * h * w) throw new Error(`toGrid: ${images.length} values do not hold ${count} images of [${shape.join(', ')}]`);
  const rows = Math.ceil(count / cols);
  const width = cols * w + (cols + 1) * pad;
  const height = rows * h + (rows + 1) * pad;
  const data = new Uint8Array(width * height * c).fill(background);
  for (let k = 0; k < count; k++) {
    const ox = pad + (k % cols) * (w + pad);
    const oy = pad + Math.floor(k / cols) * (h + pad);
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const v = images[((k * c + ch) * h + y) * w + x];
          data[((oy + y) * width + ox + x) * c + ch] = Math.round(Math.min(1, Math.max(-1, v)) * 127.5 + 127.5);
        }
  }
  return { data, width, height, channels: c as 1 | 3 };
}

/** Scales pixels up by an integer factor (nearest), so that 28x28 digits are visible. */
export function upscale(p: Pixels, factor: number): Pixels {
  if (factor === 1) return p;
  const width = p.width * factor;
  const height = p.height * factor;
  const data = new Uint8Array(width * height * p.channels);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < p.channels; c++) data[(y * width + x) * p.channels + c] = p.data[(Math.floor(y / factor) * p.width + Math.floor(x / factor)) * p.channels + c];
  return { data, width, height, channels: p.channels };
}

/**
 * Creates the file's folder one level at a time (Node's recursive mkdir never returns on some
 * virtual file systems, such as /proc) and checks that it is writable.
 */
export async function ensureWritable(file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const missing: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    const stat = await fs.stat(d).catch(() => undefined);
    if (stat) {
      if (!stat.isDirectory()) throw new Error(`${file}: ${d} is not a folder; choose another --out path`);
      break;
    }
    missing.unshift(d);
    if (path.dirname(d) === d) break;
  }
  try {
    for (const d of missing) await fs.mkdir(d);
    await fs.access(dir, fs.constants?.W_OK ?? 2);
  } catch {
    throw new Error(`${file}: cannot write to folder ${dir}; choose another --out path`);
  }
}

export async function savePng(file: string, p: Pixels): Promise<void> {
  await ensureWritable(file);
  const { default: sharp } = await import('sharp');
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const img = sharp(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength), { raw: { width: p.width, height: p.height, channels: p.channels } });
    // One channel stays one channel (sharp would write it as RGB).
    await (p.channels === 1 ? img.toColourspace('b-w') : img).png().toFile(tmp);
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw new Error(`${file}: cannot write the image (${(e as Error).message.split('\n')[0]}); choose another --out path`);
  }
}

/** Animated GIF of equally sized frames (`delayMs` each, the last held 4x longer). */
export async function saveGif(file: string, frames: readonly Pixels[], delayMs = 80): Promise<void> {
  await ensureWritable(file);
  const { GIFEncoder, quantize, applyPalette } = (await import('gifenc')) as unknown as GifEnc;
  const gif = GIFEncoder();
  frames.forEach((f, i) => {
    const rgba = new Uint8Array(f.width * f.height * 4);
    for (let k = 0; k < f.width * f.height; k++) {
      for (let c = 0; c < 3; c++) rgba[k * 4 + c] = f.data[k * f.channels + (f.channels === 1 ? 0 : c)];
      rgba[k * 4 + 3] = 255;
    }
    const palette = quantize(rgba, 256);
    gif.writeFrame(applyPalette(rgba, palette), f.width, f.height, { palette, delay: i === frames.length - 1 ? delayMs * 4 : delayMs });
  });
  gif.finish();
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, gif.bytes());
  await fs.rename(tmp, file);
}

interface GifEnc {
  GIFEncoder(): {
    writeFrame(index: Uint8Array, w: number, h: number, o: { palette: number[][]; delay: number }): void;
    finish(): void;
    bytes(): Uint8Array;
  };
  quantize(rgba: Uint8Array, n: number): number[][];
  applyPalette(rgba: Uint8Array, palette: number[][]): Uint8Array;
}
