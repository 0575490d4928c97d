/**
 * The scanning side of scale-out: a scan is a list of image files enqueued as BullMQ jobs on the
 * queue of its requirements; workers (scan-worker.ts) inspect them and store one result per job.
 * `ScanClient` creates scans, reports their progress, streams their results in the files' order,
 * and cancels them. It never holds a secret: a key is named by its fingerprint only.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { DataError } from '../data/errors.js';
import { MAX_IMAGE_BYTES, readRegularFile } from '../data/safe-file.js';
import type { InspectReport } from '../inspect/report.js';
import { connectRedis } from './redis.js';
import { ScanItem, deleteScan, keys, readResults, registerJob } from './scan-store.js';
import { Requirements, ScanSettings, jobId, queueName, settingsId } from './scan-settings.js';
import { GenerationSettings, generationRanges } from './generation.js';

/** The most bytes an image may carry inside its job (the rest must be on storage the workers share). */
export const MAX_JOB_BYTES = 4 * 1024 * 1024;

/** A job's data: where the image is (or its bytes), what its content must be, and the settings' id. */
export interface ScanJobData {
  path: string;
  sha256: string;
  settings: string;
  /** base64 of the file, when it travels with the job. */
  bytes?: string;
}

/** A generation job's data: the settings' id and the range of images. */
export interface GenerationJobData {
  settings: string;
  first: number;
  n: number;
}

/** Attempts a job gets when its worker throws (a worker that dies is counted by maxStartedAttempts). */
export const JOB_ATTEMPTS = 3;

export interface ScanMeta {
  id: string;
  /** Inspection of files, or generation of images (a generation's items are ranges of images). */
  kind: 'inspect' | 'generate';
  name: string;
  created: string;
  files: number;
  requirements: Requirements;
  settings: string;
  queue: string;
  /** Whether image bytes travel with the jobs. */
  sendBytes: boolean;
}

export interface ScanStatus {
  meta: ScanMeta;
  state: 'enqueuing' | 'running' | 'complete' | 'cancelled';
  /** Distinct images (jobs) of the scan, and of those: with a result, with an error result. */
  jobs: number;
  done: number;
  failed: number;
}

export interface CreateScanOptions {
  name?: string;
  settings: ScanSettings;
  requirements: Requirements;
  /** Put each image's bytes into its job (up to maxJobBytes) instead of its path. */
  sendBytes?: boolean;
  maxJobBytes?: number;
  /** After each chunk of files is enqueued. */
  onProgress?: (enqueued: number, total: number) => void;
}

/** How many files are read, hashed and enqueued at once. */
const CHUNK = 256;

export class ScanClient {
  private readonly queues = new Map<string, Queue>();
  private constructor(readonly redis: Redis) {}

  /**
   * Connects: a bad URL, password or server is one error line (a RedisProblem). Once connected,
   * the client waits out a Redis restart (reconnecting; `onError` hears of it once per outage).
   */
  static async connect(url: string, o: { onError?: (line: string) => void } = {}): Promise<ScanClient> {
    return new ScanClient(await connectRedis(url, { onError: o.onError }));
  }

  private queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.redis, prefix: 'diffuse-bull' });
      this.queues.set(name, q);
    }
    return q;
  }

  /** Records a new scan or generation (state 'enqueuing') with its settings, and lists it. */
  private async begin(kind: ScanMeta['kind'], o: { name?: string; settings: object; requirements: Requirements; files: number; sendBytes: boolean }): Promise<ScanMeta> {
    const id = randomBytes(6).toString('hex');
    const sid = settingsId(o.settings, o.requirements);
    const meta: ScanMeta = { id, kind, name: o.name ?? '', created: new Date().toISOString(), files: o.files, requirements: o.requirements, settings: sid, queue: queueName(o.requirements, kind === 'inspect' ? 'scan' : 'generate'), sendBytes: o.sendBytes };
    await this.redis.set(keys.settings(sid), JSON.stringify(o.settings));
    await this.redis.hset(keys.scan(id), { meta: JSON.stringify(meta), state: 'enqueuing', jobs: 0, done: 0, failed: 0 });
    await this.redis.zadd(keys.scans, Date.now(), id);
    return meta;
  }

  /** Adds jobs (already registered with their scan) with the retry and clean-up every job gets. */
  private async addJobs(queue: string, jobs: readonly { name: string; data: object; opts: { jobId: string } }[]): Promise<void> {
    if (!jobs.length) return;
    await this.queue(queue).addBulk(jobs.map((j) => ({ ...j, opts: { ...j.opts, attempts: JOB_ATTEMPTS, backoff: { type: 'fixed', delay: 1000 }, removeOnComplete: true, removeOnFail: true } })));
  }

  /**
   * Enqueues one job per distinct image content of `files` (absolute paths are stored, so workers
   * on other machines find the same files on shared storage). Files that cannot be read here (a
   * FIFO, a device, too large, vanished) become items with their error, and the scan goes on.
   */
  async create(files: readonly string[], o: CreateScanOptions): Promise<ScanMeta> {
    const maxJob = o.maxJobBytes ?? MAX_JOB_BYTES;
    const meta = await this.begin('inspect', { ...o, files: files.length, sendBytes: Boolean(o.sendBytes) });
    const { id, settings: sid } = meta;
    for (let at = 0; at < files.length; at += CHUNK) {
      const chunk = files.slice(at, at + CHUNK);
      const read = await Promise.all(
        chunk.map(async (f) => {
          const abs = path.resolve(f);
          try {
            const bytes = await readRegularFile(abs, MAX_IMAGE_BYTES);
            if (o.sendBytes && bytes.length > maxJob) throw new DataError(`${bytes.length} bytes, over the ${maxJob}-byte limit for an image that travels with its job; put it on storage the workers share and scan without --send-bytes`);
            return { path: abs, bytes };
          } catch (e) {
            if (!(e instanceof DataError)) throw e;
            return { path: abs, error: e.message.startsWith(`${abs}: `) ? e.message.slice(abs.length + 2) : e.message };
          }
        }),
      );
      const items: ScanItem[] = [];
      const jobs: { name: string; data: ScanJobData; opts: { jobId: string } }[] = [];
      for (const r of read) {
        if (!r.bytes) {
          items.push({ path: r.path, error: r.error as string });
          continue;
        }
        const sha256 = createHash('sha256').update(r.bytes).digest('hex');
        const job = jobId(sid, sha256);
        items.push({ path: r.path, job });
        // Registered before the job exists, so that its result, whenever it comes, counts for this scan.
        if ((await registerJob(this.redis, id, job)) !== 1) continue;
        jobs.push({ name: 'inspect', data: { path: r.path, sha256, settings: sid, ...(o.sendBytes ? { bytes: r.bytes.toString('base64') } : {}) }, opts: { jobId: job } });
      }
      const errors = items.filter((i) => 'error' in i).length;
      const p = this.redis.pipeline();
      p.rpush(keys.items(id), ...items.map((i) => JSON.stringify(i)));
      if (errors) p.hincrby(keys.scan(id), 'jobs', errors).hincrby(keys.scan(id), 'done', errors).hincrby(keys.scan(id), 'failed', errors);
      await p.exec();
      await this.addJobs(meta.queue, jobs);
      o.onProgress?.(Math.min(files.length, at + CHUNK), files.length);
    }
    await this.redis.hset(keys.scan(id), 'state', 'running');
    return meta;
  }

  /**
   * Enqueues a generation: one job per range of `settings.chunk` images, on the queue of workers
   * with this model, key and signer. Its status, list and cancel are a scan's.
   */
  async createGeneration(o: { name?: string; settings: GenerationSettings; requirements: Requirements }): Promise<ScanMeta> {
    const ranges = generationRanges(o.settings.count, o.settings.chunk);
    const meta = await this.begin('generate', { ...o, files: o.settings.count, sendBytes: false });
    const { id, settings: sid } = meta;
    for (let at = 0; at < ranges.length; at += CHUNK) {
      const items: ScanItem[] = [];
      const jobs: { name: string; data: GenerationJobData; opts: { jobId: string } }[] = [];
      for (const { first, n } of ranges.slice(at, at + CHUNK)) {
        const job = `${sid}-${first}`;
        items.push({ path: `images ${first}-${first + n - 1}`, job });
        if ((await registerJob(this.redis, id, job)) === 1) jobs.push({ name: 'generate', data: { settings: sid, first, n }, opts: { jobId: job } });
      }
      await this.redis.rpush(keys.items(id), ...items.map((i) => JSON.stringify(i)));
      await this.addJobs(meta.queue, jobs);
    }
    await this.redis.hset(keys.scan(id), 'state', 'running');
    return meta;
  }

  /** Where a scan stands; throws a DataError for an unknown id. */
  async status(id: string): Promise<ScanStatus> {
    checkScanId(id);
    const h = await this.redis.hgetall(keys.scan(id));
    if (!h.meta) throw new DataError(`no scan ${id} on this Redis (diffuse scan list shows the scans there)`);
    const [jobs, done, failed] = [Number(h.jobs), Number(h.done), Number(h.failed)];
    const state = h.state === 'cancelled' ? 'cancelled' : h.state === 'enqueuing' ? 'enqueuing' : done >= jobs ? 'complete' : 'running';
    return { meta: JSON.parse(h.meta) as ScanMeta, state, jobs, done, failed };
  }

  /** The scans on this Redis, newest last. */
  async list(): Promise<ScanStatus[]> {
    const ids = await this.redis.zrange(keys.scans, 0, -1);
    const out: ScanStatus[] = [];
    for (const id of ids) {
      const s = await this.status(id).catch(() => undefined);
      if (s) out.push(s);
    }
    return out;
  }

  /**
   * The scan's reports in the order of its files, one per file (a file whose content another file
   * of the scan shares gets the same report under its own name); files not inspected yet are
   * left out and counted in `pending`. Reads a chunk at a time: any number of images.
   */
  async *results(id: string, o: { onPending?: (pending: number) => void } = {}): AsyncGenerator<InspectReport> {
    await this.status(id);
    const total = await this.redis.llen(keys.items(id));
    let pending = 0;
    for (let at = 0; at < total; at += 1000) {
      const items = (await this.redis.lrange(keys.items(id), at, at + 999)).map((s) => JSON.parse(s) as ScanItem);
      const jobs = items.map((i) => ('job' in i ? i.job : ''));
      const reports = await readResults(this.redis, jobs.filter(Boolean));
      let k = 0;
      for (const item of items) {
        if ('error' in item) {
          yield { file: item.path, error: item.error };
          continue;
        }
        const r = reports[k++];
        if (r) yield { ...r, file: item.path };
        else pending++;
      }
    }
    o.onPending?.(pending);
  }

  /**
   * Cancels a scan: workers skip its jobs that no other running scan waits for, and it gets no
   * further results. Results already stored stay readable.
   */
  async cancel(id: string): Promise<void> {
    await this.status(id);
    await this.redis.hset(keys.scan(id), 'state', 'cancelled');
  }

  /**
   * Deletes a scan: its record, its list of files, and the results no other scan shares. Its jobs
   * still waiting are skipped by the workers. Returns how many results were deleted.
   */
  async delete(id: string): Promise<number> {
    await this.status(id);
    await this.redis.hset(keys.scan(id), 'state', 'cancelled');
    return deleteScan(this.redis, id);
  }

  async close(): Promise<void> {
    for (const q of this.queues.values()) await q.close();
    this.redis.disconnect();
  }
}

/** Scan ids are 12 hex digits: anything else is refused before it reaches a Redis key. */
export function checkScanId(id: string): void {
  if (!/^[0-9a-f]{12}$/.test(id)) throw new DataError(`'${id.slice(0, 40).replace(/[^\x20-\x7e]/g, '?')}' is not a scan id (12 hexadecimal digits, as diffuse scan printed)`);
}
