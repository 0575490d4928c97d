/**
 * A pool of worker threads for independent, CPU-bound requests (the geometric search of one
 * image, the file-level inspection of one file): threads start when first needed, requests wait
 * for a free one, and each request gets the answer its handler gives in one thread. Node only.
 *
 * Worker side: a module that calls `serveRequests(handler)`. In the source tree that module is
 * TypeScript and needs tsx's loader, which a thread does not inherit (neither from `--import tsx`
 * nor from bin/diffuse.js's register()), so the thread registers it before loading the module.
 */
import { availableParallelism } from 'node:os';
import { Worker, parentPort } from 'node:worker_threads';

type Reply<R> = { result: R; error?: undefined } | { error: string; result?: undefined };

/** Starts a thread on `module` (the URL of its .ts file in the source tree, of its .js file when built). */
function startThread(module: URL): Worker {
  if (module.pathname.endsWith('.ts')) {
    const tsx = import.meta.resolve('tsx/esm/api');
    return new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(module.href)}); });`, { eval: true });
  }
  return new Worker(module);
}

/**
 * The worker module's URL beside the caller's: `name` without extension, resolved against the
 * caller's `import.meta.url`, as .ts in the source tree and .js when built.
 */
export function workerModule(callerUrl: string, name: string): URL {
  return new URL(`./${name}${callerUrl.endsWith('.ts') ? '.ts' : '.js'}`, callerUrl);
}

/** Answers each request posted to this thread with the handler's result, or the message of the error it threw. */
export function serveRequests<Q, R>(handler: (request: Q) => R | Promise<R>): void {
  const port = parentPort;
  if (!port) throw new Error('this module runs as a worker thread of a ThreadPool');
  port.on('message', (request: Q) => {
    void (async () => {
      let reply: Reply<R>;
      try {
        reply = { result: await handler(request) };
      } catch (e) {
        reply = { error: e instanceof Error ? e.message : String(e) };
      }
      port.postMessage(reply);
    })();
  });
}

/** Throws unless `threads` is a whole number >= 1. */
export function checkThreadCount(threads: number, what: string): void {
  if (!(Number.isInteger(threads) && threads >= 1)) throw new Error(`${what} takes a whole number of threads >= 1, got ${threads}`);
}

export class ThreadPool<Q, R> {
  private readonly idle: Worker[] = [];
  private readonly waiting: { resolve: (thread: Worker) => void; reject: (e: Error) => void }[] = [];
  private readonly stopped = new WeakSet<Worker>();
  private started = 0;
  private closed = false;

  /**
   * `module`: the worker (see workerModule); `what`: its name in errors ("the geometric search");
   * `size`: the most threads at once (default: one per core).
   */
  constructor(
    private readonly module: URL,
    private readonly what: string,
    readonly size = availableParallelism(),
  ) {
    checkThreadCount(size, what);
  }

  /** The handler's answer to `request`, from a thread of the pool; `transfer`: buffers moved to the thread, not copied. */
  async run(request: Q, transfer: readonly ArrayBuffer[] = []): Promise<R> {
    const thread = await this.take();
    // A busy thread keeps the process alive until its reply comes; an idle one does not.
    thread.ref();
    try {
      return await this.ask(thread, request, transfer);
    } finally {
      // A thread that stopped is replaced by a new one when next needed; an error the handler
      // threw leaves its thread usable.
      if (this.stopped.has(thread)) this.started--;
      else this.give(thread);
    }
  }

  /** Stops every thread; requests still waiting are refused. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.reject(new Error(`the ${this.what} threads are closed`));
    const threads = this.idle.splice(0);
    this.started -= threads.length;
    await Promise.all(threads.map((t) => t.terminate()));
  }

  /** Sends one request and waits for its reply; a thread that fails or stops rejects. */
  private ask(thread: Worker, request: Q, transfer: readonly ArrayBuffer[]): Promise<R> {
    return new Promise((resolve, reject) => {
      const done = () => {
        thread.off('message', onMessage);
        thread.off('error', onError);
        thread.off('exit', onExit);
      };
      const onMessage = (r: Reply<R>) => {
        done();
        if (r.error !== undefined) reject(new Error(r.error));
        else resolve(r.result as R);
      };
      const onError = (e: Error) => {
        done();
        reject(e);
      };
      const onExit = (code: number) => {
        done();
        reject(new Error(`a thread of the ${this.what} stopped (exit code ${code})`));
      };
      thread.on('message', onMessage);
      thread.on('error', onError);
      thread.on('exit', onExit);
      thread.postMessage(request, [...transfer]);
    });
  }

  private take(): Promise<Worker> {
    if (this.closed) return Promise.reject(new Error(`the ${this.what} threads are closed`));
    const free = this.idle.pop();
    if (free) return Promise.resolve(free);
    if (this.started < this.size) {
      this.started++;
      const t = startThread(this.module);
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
