/**
 * The working side of scale-out: a BullMQ worker on the queue of this machine's requirements
 * (its Diffuse version, its model, its key), running the same Inspector as `diffuse inspect` on
 * each job and storing one result per job (scan-store.ts).
 *
 * The inspection's heavy parts already run off this thread (ONNX Runtime's sessions, sharp's
 * decoder, the pixel checks and the geometric search on worker threads), so this thread stays free
 * to renew the locks of the jobs in work: a job is taken from its worker only when the worker stops
 * answering for `lockSeconds`, and then another worker takes it up. A job whose workers keep dying
 * on it (a crash, kill -9) is given up after MAX_STARTS starts, with that reason as its result.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Device } from '../engine/index.js';
import type { WatermarkKey } from '../forensics/key.js';
import { Inspector } from '../inspect/inspector.js';
import type { InspectReport } from '../inspect/report.js';
import { connectRedis } from './redis.js';
import { GenerationJobData, JOB_ATTEMPTS, ScanJobData, ScanMeta } from './scans.js';
import { GenerationResult, GenerationSettings, generateRange, signerFingerprint } from './generation.js';
import { DiffusionPipeline } from '../pipelines/index.js';
import type { SigningCredentials } from '../provenance/index.js';
import { keys, recordResult } from './scan-store.js';
import { Requirements, ScanSettings, queueName, requirementsMismatch, requirementsOf } from './scan-settings.js';

/** Starts of one job (by any workers) before it is given up: its workers died on it this often. */
export const MAX_STARTS = 3;

export interface ScanWorkerOptions {
  /** The Redis URL (redis:// or rediss://). */
  redis: string;
  /** Jobs in work at once (default: one per core for file-level scans, 1 with a model, which uses every core). */
  concurrency?: number;
  /** A Diffuse run folder: the model this worker checks watermarks and the detector with. */
  run?: string;
  /** The watermark key, from this machine's own file: it never goes into Redis. */
  key?: WatermarkKey;
  device?: Device;
  /** Signing credentials for the images this worker generates (its own files: never sent to Redis). */
  signing?: SigningCredentials;
  /** Seconds a job stays with a worker that stops answering before another worker takes it up (default 30). */
  lockSeconds?: number;
  /** Lines for the operator: jobs done, scans this worker cannot run, Redis outages. */
  onLine?: (line: string) => void;
}

export class ScanWorker {
  private readonly inspectors = new Map<string, Promise<Inspector>>();
  private readonly settings = new Map<string, ScanSettings>();
  private readonly told = new Set<string>();
  private timer?: NodeJS.Timeout;
  private readonly scratch = mkdtempSync(path.join(tmpdir(), 'diffuse-worker-'));
  /** Jobs this worker finished (results stored, or skipped for a cancelled scan). */
  done = 0;
  /** How long this thread was kept from answering (its longest pause renews no lock). */
  private readonly pauses = monitorEventLoopDelay({ resolution: 10 });
  private worker!: Worker;
  /** With a model: a second BullMQ worker for generation jobs, and the model it generates with. */
  private generator?: Worker;
  private pipe?: Promise<DiffusionPipeline>;

  private constructor(
    private readonly redis: Redis,
    private readonly o: ScanWorkerOptions,
    readonly requirements: Requirements,
  ) {}

  /** Connects, loads the model (if any) to learn its hash, and starts taking jobs. */
  static async start(o: ScanWorkerOptions): Promise<ScanWorker> {
    const say = o.onLine ?? (() => {});
    const redis = await connectRedis(o.redis, { onError: say });
    const model = o.run === undefined ? null : await DiffusionPipeline.modelHashOf(o.run);
    const w = new ScanWorker(redis, o, requirementsOf(model, o.key));
    w.begin();
    return w;
  }

  /** The queue this worker takes scan jobs from. */
  get queue(): string {
    return queueName(this.requirements);
  }

  /** What generation jobs need of this worker: its model, key and signing certificate. */
  get generationRequirements(): Requirements {
    return { ...this.requirements, signer: this.o.signing ? signerFingerprint(this.o.signing) : null };
  }

  /** The queue this worker takes generation jobs from (with a model only). */
  get generationQueue(): string | undefined {
    return this.o.run === undefined ? undefined : queueName(this.generationRequirements, 'generate');
  }

  /** The longest time this thread could not run a timer (a lock renewal) since the worker started, in ms. */
  get longestPauseMs(): number {
    return this.pauses.max / 1e6;
  }

  private begin(): void {
    this.pauses.enable();
    const lock = (this.o.lockSeconds ?? 30) * 1000;
    const concurrency = this.o.concurrency ?? (this.o.run ? 1 : availableParallelism());
    // A job whose worker dies is put back by the stalled check; it is given up after MAX_STARTS starts.
    const options = (concurrency: number) => ({ connection: this.redis, prefix: 'diffuse-bull', concurrency, lockDuration: lock, stalledInterval: lock, maxStalledCount: MAX_STARTS + 1, maxStartedAttempts: MAX_STARTS });
    const onError = (e: Error) => this.o.onLine?.(`worker: ${e.message.split('\n')[0]}`);
    this.worker = new Worker(this.queue, (job: Job<ScanJobData>) => this.process(job), options(concurrency));
    this.worker.on('failed', (job, err) => void this.failed(job, err));
    this.worker.on('error', onError);
    const generation = this.generationQueue;
    if (generation) {
      this.generator = new Worker(generation, (job: Job<GenerationJobData>) => this.generate(job), options(1));
      this.generator.on('failed', (job, err) => void this.failed(job, err, job ? `images ${job.data.first}-${job.data.first + job.data.n - 1}` : ''));
      this.generator.on('error', onError);
    }
    void this.tellForeignScans();
    this.timer = setInterval(() => void this.tellForeignScans(), 30_000);
  }

  private async settingsOf(sid: string): Promise<ScanSettings> {
    let s = this.settings.get(sid);
    if (!s) {
      const text = await this.redis.get(keys.settings(sid));
      if (text === null) throw new Error(`the settings ${sid} of this job are not on the Redis server`);
      s = checkScanSettings(JSON.parse(text));
      this.settings.set(sid, s);
    }
    return s;
  }

  /** One inspector per settings (a worker usually serves one or two), each with this machine's model and key. */
  private inspectorFor(sid: string, s: ScanSettings): Promise<Inspector> {
    let i = this.inspectors.get(sid);
    if (!i) {
      i = Inspector.open(this.o.run, { ...s, key: this.requirements.key ? this.o.key : undefined, device: this.o.device, threads: this.o.run ? undefined : Math.max(2, availableParallelism()) });
      this.inspectors.set(sid, i);
    }
    return i;
  }

  /** Whether every scan that waits for the job was cancelled or deleted (then it is skipped). */
  private async abandoned(jobId: string): Promise<boolean> {
    const scans = await this.redis.smembers(keys.jobScans(jobId));
    // Every job is registered with its scan before it is enqueued: no scan left means all were deleted.
    if (!scans.length) return true;
    const p = this.redis.pipeline();
    for (const s of scans) p.hget(keys.scan(s), 'state');
    const states = ((await p.exec()) ?? []).map(([, v]) => v);
    return states.every((v) => v === 'cancelled');
  }

  private async process(job: Job<ScanJobData>): Promise<void> {
    const d = checkScanJob(job.data);
    const id = job.id as string;
    if (await this.abandoned(id)) {
      this.done++;
      return;
    }
    await hooksForTests(d.sha256);
    const inspector = await this.inspectorFor(d.settings, await this.settingsOf(d.settings));
    let report: InspectReport;
    if (d.bytes !== undefined) {
      // The bytes travelled with the job: inspected from a private file under the image's own name.
      const bytes = Buffer.from(d.bytes, 'base64');
      const dir = mkdtempSync(path.join(this.scratch, 'j'));
      try {
        const file = path.join(dir, path.basename(d.path));
        if (createHash('sha256').update(bytes).digest('hex') !== d.sha256) report = { file: d.path, error: 'the bytes in the job do not match its SHA-256 (damaged in transit)' };
        else {
          writeFileSync(file, bytes, { mode: 0o600 });
          report = (await inspector.inspect(file)).report;
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } else report = (await inspector.inspect(d.path, { sha256: d.sha256 })).report;
    await recordResult(this.redis, id, { ...report, file: d.path }, job.attemptsStarted);
    this.done++;
  }

  /** Makes a range of images of a generation and writes them where its settings say. */
  private async generate(job: Job<GenerationJobData>): Promise<void> {
    const id = job.id as string;
    if (await this.abandoned(id)) {
      this.done++;
      return;
    }
    const text = await this.redis.get(keys.settings(job.data.settings));
    if (text === null) throw new Error(`the settings ${job.data.settings} of this job are not on the Redis server`);
    const s = checkGenerationSettings(JSON.parse(text));
    this.pipe ??= DiffusionPipeline.fromRun(this.o.run as string, { device: this.o.device ?? 'cpu' });
    const started = Date.now();
    const { first, n } = job.data;
    if (!(Number.isInteger(first) && Number.isInteger(n) && first >= 0 && n >= 1 && first + n <= s.count)) throw new UnrecoverableError(`malformed generation job: images ${first}+${n} of ${s.count}`);
    const files = await generateRange(await this.pipe, s, first, n, { key: this.o.key, signing: this.o.signing });
    const result: GenerationResult = { file: `images ${first}-${first + n - 1}`, files, seconds: (Date.now() - started) / 1000 };
    await recordResult(this.redis, id, result, job.attemptsStarted);
    this.done++;
  }

  /** A job given up (thrown JOB_ATTEMPTS times, or its workers died MAX_STARTS times): its result is the reason. */
  private async failed(job: Job<{ path?: string }> | undefined, err: Error, what = job?.data.path ?? ''): Promise<void> {
    if (!job) return;
    const final = err.name === 'UnrecoverableError' || /allowable limit/.test(err.message) || job.attemptsMade >= (job.opts.attempts ?? JOB_ATTEMPTS);
    if (!final) return;
    const why = /allowable limit/.test(err.message) ? `given up: the workers inspecting it stopped (crashed or were killed) ${MAX_STARTS} times` : `given up after ${job.attemptsMade} attempts: ${err.message.split('\n')[0]}`;
    try {
      await recordResult(this.redis, job.id as string, { file: what, error: why }, job.attemptsStarted);
    } catch (e) {
      this.o.onLine?.(`could not store the failure of ${what}: ${(e as Error).message}`);
    }
  }

  /** Says once per scan which running scans this worker cannot run, and why (their jobs wait on another queue). */
  private async tellForeignScans(): Promise<void> {
    try {
      const ids = await this.redis.zrange(keys.scans, -200, -1);
      for (const id of ids) {
        if (this.told.has(id)) continue;
        const h = await this.redis.hmget(keys.scan(id), 'meta', 'state', 'jobs', 'done');
        if (!h[0] || h[1] === 'cancelled' || Number(h[3]) >= Number(h[2])) continue;
        const meta = JSON.parse(h[0]) as ScanMeta;
        const why = meta.kind === 'generate' ? (this.o.run === undefined ? 'a model to generate with (this worker has no --run)' : requirementsMismatch(meta.requirements, this.generationRequirements)) : requirementsMismatch(meta.requirements, this.requirements);
        this.told.add(id);
        if (why) this.o.onLine?.(`not taking the jobs of scan ${id}${meta.name ? ` (${meta.name})` : ''}: it needs ${why}`);
      }
    } catch {
      // Redis is away: the connection's own line says so.
    }
  }

  /** Stops taking jobs, lets the ones in work finish, and lets go of the models. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.pauses.disable();
    await this.worker.close();
    await this.generator?.close();
    await (await this.pipe?.catch(() => undefined))?.release();
    for (const i of this.inspectors.values()) await (await i.catch(() => undefined))?.release();
    this.redis.disconnect();
    rmSync(this.scratch, { recursive: true, force: true });
  }
}

/**
 * Two switches for the tests of what a worker must survive (docs/SCALE-OUT.md lists them):
 * DIFFUSE_TEST_CRASH_SHA256 names an image content on which the process exits at once, as a crash
 * in native code would end it; DIFFUSE_TEST_JOB_DELAY_MS makes every job take at least that long,
 * so that a test can kill a worker or restart Redis while jobs are certainly in work.
 */
async function hooksForTests(sha256: string): Promise<void> {
  if (process.env.DIFFUSE_TEST_CRASH_SHA256 === sha256) process.exit(70);
  const delay = Number(process.env.DIFFUSE_TEST_JOB_DELAY_MS ?? 0);
  if (delay > 0) await new Promise((r) => setTimeout(r, delay));
}

/**
 * What comes from Redis is checked before it is used: anyone who can write to the Redis server can
 * put jobs there, and a worker must not be talked into reading a device, a huge number of steps or
 * writing outside an absolute folder by a malformed job (it is failed at once, with the reason).
 */
function checkScanJob(d: unknown): ScanJobData {
  const j = d as Partial<ScanJobData> | null;
  const bad = (what: string) => new UnrecoverableError(`malformed scan job: ${what}`);
  if (!j || typeof j !== 'object') throw bad('not an object');
  if (typeof j.path !== 'string' || !path.isAbsolute(j.path) || j.path.includes('\0')) throw bad('the path is not an absolute path');
  if (typeof j.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(j.sha256)) throw bad('the SHA-256 is not 64 hex digits');
  if (typeof j.settings !== 'string' || !/^[0-9a-f]{16}$/.test(j.settings)) throw bad('the settings id is not 16 hex digits');
  if (j.bytes !== undefined && typeof j.bytes !== 'string') throw bad('the bytes are not base64 text');
  return j as ScanJobData;
}

const isInt = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

function checkScanSettings(v: unknown): ScanSettings {
  const s = v as ScanSettings | null;
  const bad = (what: string) => new UnrecoverableError(`malformed scan settings: ${what}`);
  if (!s || typeof s !== 'object') throw bad('not an object');
  if (s.inversionSteps !== undefined && !isInt(s.inversionSteps, 1, 1000)) throw bad('inversionSteps must be 1..1000');
  if (s.fpr !== undefined && !(typeof s.fpr === 'number' && s.fpr > 0 && s.fpr <= 0.5)) throw bad('fpr must be in (0, 0.5]');
  if (s.maxRotation !== undefined && !isInt(s.maxRotation, 0, 45)) throw bad('maxRotation must be 0..45');
  if (s.prompt !== undefined && typeof s.prompt !== 'string') throw bad('prompt must be text');
  for (const f of ['metadataOnly', 'geometric', 'resize'] as const) if (s[f] !== undefined && typeof s[f] !== 'boolean') throw bad(`${f} must be true or false`);
  if (s.trust !== undefined && (typeof s.trust !== 'object' || Object.values(s.trust).some((t) => t !== undefined && typeof t !== 'string'))) throw bad('trust must hold PEM texts');
  return s;
}

function checkGenerationSettings(v: unknown): GenerationSettings {
  const s = v as GenerationSettings | null;
  const bad = (what: string) => new UnrecoverableError(`malformed generation settings: ${what}`);
  if (!s || typeof s !== 'object') throw bad('not an object');
  if (typeof s.out !== 'string' || !path.isAbsolute(s.out) || s.out.includes('\0')) throw bad('out is not an absolute folder');
  if (!isInt(s.count, 1, 1e9) || !isInt(s.chunk, 1, 10_000) || !isInt(s.seed, 0, 2 ** 53)) throw bad('count, chunk or seed out of range');
  if (!isInt(s.steps, 1, 1000) || !(typeof s.eta === 'number' && s.eta >= 0 && s.eta <= 10)) throw bad('steps must be 1..1000 and eta 0..10');
  if (s.payload !== undefined && !isInt(s.payload, 0, 2 ** 32 - 1)) throw bad('payload must be a 32-bit integer');
  return s;
}
