/**
 * The geometric search on several threads. Each image's search is independent, pure computation
 * and takes most of a second, so a batch is shared among worker threads, one per core by default;
 * each image gets exactly the result it gets in one thread. Node only (node:worker_threads).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { GeometryDetection, GeometrySearchOptions, detectInMovedNoise } from './geometry-search.js';
import type { WatermarkKey } from './key.js';

/** What a search thread is asked: one image's inverted noise. */
export interface SearchRequest {
  key: WatermarkKey;
  noise: Float32Array;
  shape: [number, number, number];
  options: GeometrySearchOptions;
}
export type SearchReply = { result: GeometryDetection; error?: undefined } | { error: string; result?: undefined };

const HERE = import.meta.url;

/**
 * A search thread. In the source tree the worker is TypeScript and needs tsx's loader, which a
 * thread does not inherit (neither from `--import tsx` nor from bin/diffuse.js's register()), so
 * the thread registers it before loading the worker.
 */
function startThread(): Worker {
  const source = HERE.endsWith('.ts');
  const file = new URL(source ? './geometry-worker.ts' : './geometry-worker.js', HERE);
  if (source) {
    const tsx = import.meta.resolve('tsx/esm/api');
    return new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(file.href)}); });`, { eval: true });
  }
  return new Worker(file);
}

/** Sends one request and waits for its reply; a thread that fails or stops rejects. */
function ask(thread: Worker, request: SearchRequest): Promise<GeometryDetection> {
  return new Promise((resolve, reject) => {
    const done = () => {
      thread.off('message', onMessage);
      thread.off('error', onError);
      thread.off('exit', onExit);
    };
    const onMessage = (r: SearchReply) => {
      done();
      if (r.error !== undefined) reject(new Error(r.error));
      else resolve(r.result);
    };
    const onError = (e: Error) => {
      done();
      reject(e);
    };
    const onExit = (code: number) => {
      done();
      reject(new Error(`a thread of the geometric search stopped (exit code ${code})`));
    };
    thread.on('message', onMessage);
    thread.on('error', onError);
    thread.on('exit', onExit);
    thread.postMessage(request);
  });
}

/**
 * detectInMovedNoise for each noise, on up to `threads` threads (default: one per core; 1 runs in
 * this thread). Results come in the order of the noises.
 */
export async function detectInMovedNoises(
  key: WatermarkKey,
  noises: readonly Float32Array[],
  shape: readonly [number, number, number],
  options: GeometrySearchOptions = {},
  threads = availableParallelism(),
): Promise<GeometryDetection[]> {
  if (!(Number.isInteger(threads) && threads >= 1)) throw new Error(`the geometric search takes a whole number of threads >= 1, got ${threads}`);
  const n = Math.min(threads, noises.length);
  if (n <= 1) return noises.map((x) => detectInMovedNoise(key, x, shape, options));
  const results = new Array<GeometryDetection>(noises.length);
  const pool = Array.from({ length: n }, startThread);
  let next = 0;
  try {
    await Promise.all(
      pool.map(async (thread) => {
        while (next < noises.length) {
          const i = next++;
          results[i] = await ask(thread, { key, noise: noises[i], shape: [shape[0], shape[1], shape[2]], options });
        }
      }),
    );
  } finally {
    await Promise.all(pool.map((t) => t.terminate()));
  }
  return results;
}
