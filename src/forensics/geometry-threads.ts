/**
 * The geometric search on several threads. Each image's search is independent, pure computation
 * and takes most of a second, so a batch is shared among worker threads, one per core by default;
 * each image gets exactly the result it gets in one thread. Node only (node:worker_threads).
 */
import { availableParallelism } from 'node:os';
import { GeometryDetection, GeometrySearchOptions, detectInMovedNoise } from './geometry-search.js';
import type { WatermarkKey } from './key.js';
import { ThreadPool, checkThreadCount as checkThreads, workerModule } from '../threads/pool.js';

/** What a search thread is asked: one image's inverted noise. */
export interface SearchRequest {
  key: WatermarkKey;
  noise: Float32Array;
  shape: [number, number, number];
  options: GeometrySearchOptions;
}

/** Throws unless `threads` is a whole number >= 1 (the one check of every thread count of the search). */
export function checkThreadCount(threads: number): void {
  checkThreads(threads, 'the geometric search');
}

/**
 * A pool of search threads that lives as long as its owner: for callers that search image after
 * image (the inspector), so that one image's search runs while the next image is inverted, and
 * threads are started once. Threads start when first needed; requests wait for a free one.
 */
export class SearchThreads {
  private readonly pool: ThreadPool<SearchRequest, GeometryDetection>;

  /** `size`: the most threads it runs at once (default: one per core). */
  constructor(readonly size = availableParallelism()) {
    checkThreadCount(size);
    this.pool = new ThreadPool(workerModule(import.meta.url, 'geometry-worker'), 'geometric search', size);
  }

  /** detectInMovedNoise on a thread of the pool; the same result as in this thread. */
  search(key: WatermarkKey, noise: Float32Array, shape: readonly [number, number, number], options: GeometrySearchOptions = {}): Promise<GeometryDetection> {
    return this.pool.run({ key, noise, shape: [shape[0], shape[1], shape[2]], options });
  }

  /** Stops every thread; searches still waiting are refused. */
  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * detectInMovedNoise for each noise, on up to `threads` threads (default: one per core; 1 runs in
 * this thread), or on a SearchThreads pool the caller keeps. Results come in the order of the noises.
 */
export async function detectInMovedNoises(
  key: WatermarkKey,
  noises: readonly Float32Array[],
  shape: readonly [number, number, number],
  options: GeometrySearchOptions = {},
  threads: number | SearchThreads = availableParallelism(),
): Promise<GeometryDetection[]> {
  if (threads instanceof SearchThreads) return Promise.all(noises.map((x) => threads.search(key, x, shape, options)));
  checkThreadCount(threads);
  const n = Math.min(threads, noises.length);
  if (n <= 1) return noises.map((x) => detectInMovedNoise(key, x, shape, options));
  const pool = new SearchThreads(n);
  try {
    return await Promise.all(noises.map((x) => pool.search(key, x, shape, options)));
  } finally {
    await pool.close();
  }
}
