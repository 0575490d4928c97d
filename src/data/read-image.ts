/**
 * Reading one image for a model: a file (PNG, JPEG, WebP, ... decoded with sharp) or a held-out
 * image of a built-in set ('mnist:INDEX', 'fashion-mnist:INDEX'), as [C, H, W] in [-1, 1].
 */
import { loadDataset } from './dataset.js';
import { DataError } from './errors.js';
import { MAX_IMAGE_PIXELS, checkPixels, readRegularFile } from './safe-file.js';

export interface ReadImageOptions {
  /** The channels the image must have (1 grey, 3 colour); another count is an error unless `convert`. */
  channels?: 1 | 3;
  /** The side the image must have; another size is an error unless `resize`. */
  size?: number;
  /** Resize (cover crop) to `size` instead of refusing another size. */
  resize?: boolean;
  /** Convert grey to colour or colour to grey instead of refusing another channel count. */
  convert?: boolean;
  /** Resize (stretch) to this [width, height] (a latent model's image size). */
  resizeTo?: [number, number];
  /** Without `resizeTo`: resize down to the nearest sides that are multiples of this, as diffusers' image processor does. */
  multipleOf?: number;
  /** Instead of resizing: the centred square of this side, pixels as they are (an image with a shorter side is refused). */
  crop?: number;
}

export interface ReadImage {
  /** [C, H, W] in [-1, 1]. */
  data: Float32Array;
  shape: [number, number, number];
}

const BUILTIN = /^(mnist|fashion-mnist):(\d+)$/;

/** Reads one image; every problem (missing, undecodable, wrong size or channels) is one DataError line. */
export async function readImage(spec: string, opts: ReadImageOptions = {}): Promise<ReadImage> {
  const m = BUILTIN.exec(spec);
  if (m) {
    const ds = await loadDataset(m[1], 'test');
    const i = Number(m[2]);
    if (i >= ds.count) throw new DataError(`${m[1]} has ${ds.count} test images; index ${i} is out of range`);
    const per = ds.channels * ds.height * ds.width;
    const out: ReadImage = { data: ds.images.slice(i * per, (i + 1) * per), shape: [ds.channels, ds.height, ds.width] };
    checkShape(spec, out.shape, opts);
    return out;
  }
  let bytes: Buffer;
  try {
    bytes = await readRegularFile(spec);
  } catch (e) {
    const msg = (e as Error).message;
    throw new DataError(/no such file$/.test(msg) ? `${msg} (give an image file, or mnist:INDEX)` : msg);
  }
  const { default: sharp } = await import('sharp');
  // Header first: a small file can declare a huge image, which is refused before it is decoded.
  const decode = () => sharp(bytes, { limitInputPixels: MAX_IMAGE_PIXELS });
  // metadata() reads the header only (no pixel limit applies to it).
  const meta = await sharp(bytes)
    .metadata()
    .catch(() => {
      throw new DataError(`${spec}: cannot decode image (not a PNG, JPEG, WebP, GIF, TIFF or AVIF file, or truncated)`);
    });
  checkPixels(spec, meta.width, meta.height);
  const fileChannels = meta.space === 'b-w' || (meta.channels ?? 3) < 3 || (await isGreyContent(decode())) ? 1 : 3;
  const channels = opts.channels ?? fileChannels;
  if (channels !== fileChannels && !opts.convert) {
    const what = (c: number) => (c === 1 ? 'greyscale' : 'colour');
    throw new DataError(`${spec} is a ${what(fileChannels)} image but the model takes ${what(channels)} images (${channels} channel${channels > 1 ? 's' : ''})`);
  }
  const [w, h] = [meta.width ?? 0, meta.height ?? 0];
  if (opts.size !== undefined && (w !== opts.size || h !== opts.size) && !opts.resize) {
    throw new DataError(`${spec} is ${w}x${h} but the model takes ${opts.size}x${opts.size} images; resize it first (or pass --resize)`);
  }
  if (opts.crop !== undefined && (w < opts.crop || h < opts.crop)) throw new DataError(`${spec} is ${w}x${h}: smaller than the ${opts.crop}x${opts.crop} square it is read as`);
  let img = decode().flatten({ background: '#ffffff' });
  if (opts.crop !== undefined) img = img.extract({ left: Math.floor((w - opts.crop) / 2), top: Math.floor((h - opts.crop) / 2), width: opts.crop, height: opts.crop });
  if (opts.size !== undefined && (w !== opts.size || h !== opts.size)) img = img.resize(opts.size, opts.size, { fit: 'cover' });
  const step = opts.multipleOf ?? 1;
  const [tw, th] = opts.resizeTo ?? [w - (w % step), h - (h % step)];
  if (tw < 1 || th < 1) throw new DataError(`${spec} is ${w}x${h}: smaller than the model's ${step}-pixel step`);
  if (opts.size === undefined && opts.crop === undefined && (tw !== w || th !== h)) img = img.resize(tw, th, { fit: 'fill' });
  img = channels === 1 ? img.grayscale().toColourspace('b-w') : img.toColourspace('srgb');
  let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    raw = await img.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new DataError(`${spec}: cannot decode image (${(e as Error).message.split('\n')[0]})`);
  }
  const { width, height } = raw.info;
  const have = raw.info.channels;
  const plane = width * height;
  const data = new Float32Array(channels * plane);
  for (let c = 0; c < channels; c++) for (let i = 0; i < plane; i++) data[c * plane + i] = raw.data[i * have + Math.min(c, have - 1)] / 127.5 - 1;
  return { data, shape: [channels, height, width] };
}

function checkShape(spec: string, shape: [number, number, number], opts: ReadImageOptions): void {
  const [c, h, w] = shape;
  if (opts.channels !== undefined && c !== opts.channels) throw new DataError(`${spec} has ${c} channel(s) but the model takes ${opts.channels}`);
  if (opts.size !== undefined && (h !== opts.size || w !== opts.size)) throw new DataError(`${spec} is ${w}x${h} but the model takes ${opts.size}x${opts.size} images`);
}

/** An RGB file whose three channels agree at every pixel holds a grey image (many tools save grey as RGB). */
async function isGreyContent(image: import('sharp').Sharp): Promise<boolean> {
  const { data, info } = await image.flatten({ background: '#ffffff' }).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  for (let i = 0; i < info.width * info.height; i++) {
    const k = i * info.channels;
    if (data[k] !== data[k + 1] || data[k] !== data[k + 2]) return false;
  }
  return true;
}
