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

/** Throws unless `threads` is a whole number >= 1 (the one check of every thread count here). */
export function checkThreadCount(threads: number): void {
  if (!(Number.isInteger(threads) && threads >= 1)) throw new Error(`the geometric search takes a whole number of threads >= 1, got ${threads}`);
}

/**
 * A pool of search threads that lives as long as its owner: for callers that search image after
 * image (the inspector), so that one image's search runs while the next image is inverted, and
 * threads are started once. Threads start when first needed; requests wait for a free one.
 */
export class SearchThreads {
  private readonly idle: Worker[] = [];
  private readonly waiting: { resolve: (thread: Worker) => void; reject: (e: Error) => void }[] = [];
  private readonly stopped = new WeakSet<Worker>();
  private started = 0;
  private closed = false;

  /** `size`: the most threads it runs at once (default: one per core). */
  constructor(readonly size = availableParallelism()) {
    checkThreadCount(size);
  }

  /** detectInMovedNoise on a thread of the pool; the same result as in this thread. */
  async search(key: WatermarkKey, noise: Float32Array, shape: readonly [number, number, number], options: GeometrySearchOptions = {}): Promise<GeometryDetection> {
    const thread = await this.take();
    // A busy thread keeps the process alive until its reply comes; an idle one does not.
    thread.ref();
    try {
      return await ask(thread, { key, noise, shape: [shape[0], shape[1], shape[2]], options });
    } finally {
      // A thread that stopped is replaced by a new one when next needed; an error the search threw
      // leaves its thread usable.
      if (this.stopped.has(thread)) this.started--;
      else this.give(thread);
    }
  }

  /** Stops every thread; searches still waiting are refused. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.reject(new Error('the geometric search threads are closed'));
    const threads = this.idle.splice(0);
    this.started -= threads.length;
    await Promise.all(threads.map((t) => t.terminate()));
  }

  private take(): Promise<Worker> {
    if (this.closed) return Promise.reject(new Error('the geometric search threads are closed'));
    const free = this.idle.pop();
    if (free) return Promise.resolve(free);
    if (this.started < this.size) {
      this.started++;
      const t = startThread();
      t.once('error', () => this.stopped.add(t));
      t.once('exit', () => this.stopped.add(t));
      return Promise.resolve(t);
    }
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private give(thread: Worker): void {
    if (this.closed) {
      this.started--;
      void thread.terminate();
      return;
    }
    const next = this.waiting.shift();
    if (next) next.resolve(thread);
    else {
      thread.unref();
      this.idle.push(thread);
    }
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
