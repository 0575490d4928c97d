/** Writing a pipeline's images: a grid as PNG, the reverse process as a strip (PNG) or an animation (GIF). */
import { Pixels, saveGif, savePng, toGrid, upscale } from '../data/index.js';
import type { ImageBatch } from './sampling-pipeline.js';

export interface GridOptions {
  /** Columns (default: square). */
  cols?: number;
  /** Integer pixel scale (default 2 below 48 px, else 1). */
  scale?: number;
  /** Pixels between images and around the grid (default 2). */
  pad?: number;
}

const defaultScale = (shape: readonly number[]) => (shape[1] < 48 ? 2 : 1);

/** Writes the batch as one PNG grid (values clipped to [-1, 1]). */
export async function saveGrid(batch: ImageBatch, file: string, o: GridOptions = {}): Promise<void> {
  await savePng(file, upscale(toGrid(batch.data, batch.count, batch.shape, o.cols, o.pad), o.scale ?? defaultScale(batch.shape)));
}

/**
 * Writes snapshots of the same images taken along the reverse process (each an ImageBatch of the
 * same count): as a .png strip, one row per image and one column per snapshot (noise on the
 * left), or as a .gif animation of grids.
 */
export async function saveFrames(frames: readonly ImageBatch[], file: string, o: { scale?: number } = {}): Promise<void> {
  if (frames.length === 0) throw new Error('saveFrames: no frames');
  const { count, shape } = frames[0];
  const scale = o.scale ?? defaultScale(shape);
  if (/\.gif$/i.test(file)) {
    const pics: Pixels[] = frames.map((f) => upscale(toGrid(f.data, count, shape, count), scale));
    await saveGif(file, pics);
    return;
  }
  const per = shape.reduce((a, b) => a * b, 1);
  const cols = frames.length;
  const strip = new Float32Array(count * cols * per);
  for (let r = 0; r < count; r++) for (let c = 0; c < cols; c++) strip.set(frames[c].data.subarray(r * per, (r + 1) * per), (r * cols + c) * per);
  await savePng(file, upscale(toGrid(strip, count * cols, shape, cols), scale));
}
