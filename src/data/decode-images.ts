/**
 * Image files decoded into one float block (NCHW, [-1, 1]) with sharp: the data sets' common
 * reader (folders, emoji), apart from dataset.ts so that the loaders it picks between import it
 * without importing each other.
 */
import { DataError } from './errors.js';

/** Decodes image files into one [count, channels, h, w] block in [-1, 1] (transparency composited on white). */
export async function decodeImages(files: readonly string[], opts: { size?: number; channels?: 1 | 3 } = {}): Promise<{ images: Float32Array; channels: number; height: number; width: number }> {
  const { default: sharp } = await import('sharp');
  const channels = opts.channels ?? 3;
  let size: [number, number] | undefined = opts.size ? [opts.size, opts.size] : undefined;
  let firstFile = '';
  const decoded: Uint8Array[] = [];
  for (const file of files) {
    let img = sharp(file).flatten({ background: '#ffffff' });
    if (opts.size) img = img.resize(opts.size, opts.size, { fit: 'cover' });
    img = channels === 1 ? img.grayscale().toColourspace('b-w') : img.toColourspace('srgb');
    let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
    try {
      raw = await img.raw().toBuffer({ resolveWithObject: true });
    } catch (e) {
      throw new DataError(`${file}: cannot decode image (${(e as Error).message}); remove or replace the file`);
    }
    const { width, height } = raw.info;
    if (!size) {
      size = [width, height];
      firstFile = file;
    } else if (!opts.size && (width !== size[0] || height !== size[1])) {
      throw new DataError(`${file} is ${width}x${height} but ${firstFile} is ${size[0]}x${size[1]}; pass --size N to resize all images`);
    }
    decoded.push(raw.info.channels === channels ? raw.data : pickChannels(raw.data, raw.info.channels, channels));
  }
  const [w, h] = size as [number, number];
  const per = channels * w * h;
  const images = new Float32Array(files.length * per);
  decoded.forEach((px, k) => {
    // interleaved HWC bytes -> planar CHW in [-1, 1]
    for (let c = 0; c < channels; c++) for (let i = 0; i < w * h; i++) images[k * per + c * w * h + i] = px[i * channels + c] / 127.5 - 1;
  });
  return { images, channels, height: h, width: w };
}

function pickChannels(data: Buffer, have: number, want: number): Uint8Array {
  const n = data.length / have;
  const out = new Uint8Array(n * want);
  for (let i = 0; i < n; i++) for (let c = 0; c < want; c++) out[i * want + c] = data[i * have + Math.min(c, have - 1)];
  return out;
}
