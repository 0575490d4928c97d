/**
 * `diffuse scan` and `diffuse worker`: inspection as jobs on a BullMQ queue in Redis, for folders
 * too large for one machine. `scan` enqueues and reports; `worker`, on any number of machines,
 * inspects. docs/SCALE-OUT.md describes the deployment.
 */
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { once } from 'node:events';
import { ensureWritable, imagePaths } from '../data/index.js';
import { readKey } from '../forensics/index.js';
import { InspectReport, REPORT_HTML_TAIL, safeText, csvHeader, csvRow, reportHtmlHead, reportHtmlSection, reportText } from '../inspect/index.js';
import { DiffusionPipeline } from '../pipelines/index.js';
import { readRunConfig } from '../run/run.js';
import { REDIS_URL_ENV, RedisProblem, redactRedisUrl } from '../scale/redis.js';
import { ScanClient, ScanStatus } from '../scale/scans.js';
import { ScanSettings, requirementsOf } from '../scale/scan-settings.js';
import { GenerationResult, GenerationSettings, imageFileName, signerFingerprint } from '../scale/generation.js';
import type { WatermarkKey } from '../forensics/index.js';
import type { GenerateOptions } from '../pipelines/index.js';
import type { RunConfig } from '../run/config.js';
import { openCredentials, runName } from './credentials.js';
import { ScanWorker } from '../scale/scan-worker.js';
import { readTrustSettings } from './credentials.js';
import type { Command, FlagValues } from './flags.js';
import { UsageError, list, modelFlag, num, oneOf } from './flags.js';
import { ProgressLine, formatDuration } from './progress.js';

const SUBCOMMANDS = ['status', 'results', 'cancel', 'delete', 'list'] as const;

/** The Redis URL: --redis, else the environment (which keeps a password out of `ps`). */
function redisUrl(v: FlagValues): string {
  const url = v.redis === undefined ? process.env[REDIS_URL_ENV] : String(v.redis);
  if (!url) throw new UsageError(`--redis URL is required (redis://[:PASSWORD@]HOST:PORT, or rediss:// for TLS), or set ${REDIS_URL_ENV}`);
  return url;
}

/** Connects, turning Redis problems into one line. */
async function connect(v: FlagValues): Promise<ScanClient> {
  try {
    return await ScanClient.connect(redisUrl(v), { onError: (line) => process.stderr.write(`\n${line}\n`) });
  } catch (e) {
    if (e instanceof RedisProblem) throw new UsageError(e.message);
    throw e;
  }
}

/** One line on a scan, its fields (which come from Redis, where anyone with access can write) escaped. */
function statusLine(s: ScanStatus, rate?: number): string {
  return safeText(statusWords(s, rate));
}

function statusWords(s: ScanStatus, rate?: number): string {
  const left = s.jobs - s.done;
  const eta = rate && rate > 0 ? `, ${formatDuration(left / rate)} left` : '';
  const speed = rate !== undefined ? `, ${rate.toFixed(1)} images/s` : '';
  if (s.meta.kind === 'generate') return `generation ${s.meta.id}${s.meta.name ? ` (${s.meta.name})` : ''}: ${s.state}; ${s.done} of ${s.jobs} jobs done, ${s.failed} failed${rate !== undefined ? `, ${rate.toFixed(2)} jobs/s` : ''}${eta} (${s.meta.files} images)`;
  return `scan ${s.meta.id}${s.meta.name ? ` (${s.meta.name})` : ''}: ${s.state}; ${s.done} of ${s.jobs} images done, ${s.failed} failed${speed}${eta} (${s.meta.files} files)`;
}

/** Follows a scan until it completes or is cancelled, with a progress line. */
async function follow(c: ScanClient, id: string): Promise<ScanStatus> {
  const bar = new ProgressLine();
  const seen: { t: number; done: number }[] = [];
  try {
    for (;;) {
      const s = await c.status(id);
      const now = Date.now();
      seen.push({ t: now, done: s.done });
      while (seen.length > 2 && now - seen[0].t > 30_000) seen.shift();
      const rate = seen.length > 1 ? ((s.done - seen[0].done) * 1000) / Math.max(1, now - seen[0].t) : undefined;
      if (s.state === 'complete' || s.state === 'cancelled') {
        bar.done();
        return s;
      }
      bar.update(statusLine(s, rate));
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    bar.done();
  }
}

/** Writes a stream of lines to `file` through a temporary file, renamed when complete (no half-written report). */
async function streamTo(file: string, write: (line: (s: string) => Promise<void>) => Promise<void>): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const out = createWriteStream(tmp);
  try {
    await write(async (s) => {
      if (!out.write(s)) await once(out, 'drain');
    });
    out.end();
    await once(out, 'finish');
    await rename(tmp, file);
  } catch (e) {
    out.destroy();
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

export const commandScan: Command = {
  summary: 'inspect a folder or list of images as jobs in Redis for `diffuse worker`s on any number of machines; status, results, cancel, delete',
  usage:
    'diffuse scan FOLDER|LIST.txt|IMAGE... --redis URL [--run DIR] [--key key.json] [--name NAME] [--follow] [--send-bytes] [inspect\'s options]\n' +
    '       diffuse scan status ID | results ID [--json] [--csv out.csv] [--html out.html] | cancel ID | delete ID | list   (each with --redis URL)',
  positionals: true,
  options: {
    redis: { type: 'string', description: `the Redis URL, redis://[:PASSWORD@]HOST:PORT[/DB] or rediss:// (TLS) (default: $${REDIS_URL_ENV}, which keeps the password out of the process list)` },
    run: { type: 'string', description: "a Diffuse run folder: workers with the same model add its watermark and detector (only its weights' SHA-256 goes into Redis)" },
    key: { type: 'string', description: "the watermark key the workers must hold (only its fingerprint goes into Redis; each worker reads its own copy)" },
    name: { type: 'string', description: 'a name for the scan, shown by status and list' },
    follow: { type: 'boolean', description: 'stay and show progress (done, failed, images/s, time left) until the scan completes' },
    'send-bytes': { type: 'boolean', description: 'put each image into its job (up to 4 MiB each) for workers that do not share the files\' storage' },
    json: { type: 'boolean', description: 'results: one JSON object per image on stdout (as diffuse inspect --json)' },
    csv: { type: 'string', description: 'results: write the CSV summary, one row per image' },
    html: { type: 'string', description: 'results: write one HTML page of the reports (without pictures)' },
    trust: { type: 'string', multiple: true, description: 'trust anchors for content credentials (as diffuse inspect; public certificates, stored with the scan)' },
    'trust-allowed': { type: 'string', multiple: true, description: 'allowed list of end-entity signing certificates (as diffuse inspect)' },
    'trust-config': { type: 'string', description: 'extended key usages to accept (as diffuse inspect)' },
    'metadata-only': { type: 'boolean', description: 'credentials and metadata only (as diffuse inspect)' },
    steps: { type: 'string', description: 'DDIM inversion steps of the watermark check', default: '50' },
    fast: { type: 'boolean', description: 'the watermark check with 25 inversion steps' },
    fpr: { type: 'string', description: 'false-positive rate of the watermark decision', default: '0.01' },
    'max-rotation': { type: 'string', description: 'also look for the watermark turned back by up to this many degrees (0-45)', default: '0' },
    geometric: { type: 'boolean', description: 'also look for the watermark after a turn by any angle or a crop' },
    prompt: { type: 'string', description: 'text-conditional runs: the prompt to invert with', default: '' },
    resize: { type: 'boolean', description: "resize images of another size to the model's" },
  },
  async run(v, positionals) {
    const [first, ...rest] = positionals;
    if (first === undefined) throw new UsageError('give a folder, a list of paths (.txt) or images to scan, or status|results|cancel|delete ID, or list');
    if ((SUBCOMMANDS as readonly string[]).includes(first)) return scanSubcommand(first as (typeof SUBCOMMANDS)[number], rest, v);
    const runDir = v.run === undefined ? undefined : String(v.run);
    if (runDir === undefined) {
      const modelFlag = (['key', 'fast', 'geometric', 'resize'] as const).find((f) => v[f] !== undefined && v[f] !== false);
      if (modelFlag) throw new UsageError(`--${modelFlag} is about a Diffuse model's watermark or detector: give the model's --run DIR too`);
    }
    for (const f of ['json', 'csv', 'html'] as const) if (v[f] !== undefined && v[f] !== false) throw new UsageError(`--${f} belongs to diffuse scan results ID`);
    const key = v.key === undefined ? undefined : readKey(String(v.key));
    const config = runDir === undefined ? undefined : readRunConfig(runDir);
    const maxRotation = num(v, 'max-rotation', { int: true, min: 0, max: 45 }) as number;
    if (config?.latent && maxRotation > 0) throw new UsageError(`${runDir} is a latent run: it is searched for turns with --geometric (any angle; about 120 inversions per image), not --max-rotation`);
    if (v.geometric && maxRotation > 0) throw new UsageError('choose --geometric or --max-rotation: the geometric search already covers every turn');
    const trust = readTrustSettings(list(v, 'trust'), list(v, 'trust-allowed'), v['trust-config'] === undefined ? undefined : String(v['trust-config']));
    const settings: ScanSettings = {
      ...(v['metadata-only'] ? { metadataOnly: true } : {}),
      ...(trust ? { trust } : {}),
      ...(runDir !== undefined
        ? {
            inversionSteps: v.fast ? 25 : (num(v, 'steps', { int: true, min: 1 }) as number),
            fpr: num(v, 'fpr', { min: 1e-12, max: 0.5 }) as number,
            ...(maxRotation ? { maxRotation } : {}),
            ...(v.geometric ? { geometric: true } : {}),
            ...(v.resize ? { resize: true } : {}),
            ...(config?.text ? { prompt: String(v.prompt) } : {}),
          }
        : {}),
    };
    const files = await imagePaths(positionals, { lists: true });
    if (!files.length) throw new UsageError('no images to scan');
    const model = runDir === undefined ? null : await DiffusionPipeline.modelHashOf(runDir);
    const c = await connect(v);
    try {
      const bar = new ProgressLine();
      const started = Date.now();
      const meta = await c.create(files, { name: v.name === undefined ? undefined : String(v.name), settings, requirements: requirementsOf(model, key), sendBytes: Boolean(v['send-bytes']), onProgress: (n, t) => bar.update(`enqueuing ${n}/${t} files`) });
      bar.done();
      const s = await c.status(meta.id);
      process.stderr.write(
        `scan ${meta.id}: ${files.length} files, ${s.jobs} distinct images (${s.done} already known or unreadable), enqueued on ${redactRedisUrl(redisUrl(v))} in ${((Date.now() - started) / 1000).toFixed(1)} s.\n` +
          `Workers for it: diffuse worker --redis URL${runDir ? ` ${modelFlag(runDir)}` : ''}${key ? ` --key ${String(v.key)}` : ''}\n`,
      );
      console.log(meta.id);
      if (v.follow) process.stderr.write(`${statusLine(await follow(c, meta.id))}\n`);
    } finally {
      await c.close();
    }
  },
};

async function scanSubcommand(sub: (typeof SUBCOMMANDS)[number], rest: string[], v: FlagValues): Promise<void> {
  if (sub === 'list') {
    if (rest.length) throw new UsageError('diffuse scan list takes no arguments');
  } else if (rest.length !== 1) throw new UsageError(`diffuse scan ${sub} takes one scan id`);
  const id = rest[0];
  const c = await connect(v);
  try {
    if (sub === 'list') {
      const all = await c.list();
      if (!all.length) process.stderr.write('no scans on this Redis\n');
      for (const s of all) console.log(safeText(`${statusWords(s)}; created ${s.meta.created}`));
      return;
    }
    if (sub === 'status') {
      const s = v.follow ? await follow(c, id) : await c.status(id);
      console.log(statusLine(s));
      return;
    }
    if (sub === 'delete') {
      const n = await c.delete(id);
      console.log(`scan ${id} deleted with ${n} result(s) no other scan shares`);
      return;
    }
    if (sub === 'cancel') {
      await c.cancel(id);
      console.log(`scan ${id} cancelled; results already stored stay readable (diffuse scan results ${id})`);
      return;
    }
    const s = await c.status(id);
    for (const f of [v.csv, v.html]) if (f !== undefined) await ensureWritable(String(f));
    let pending = 0;
    let count = 0;
    const onPending = (n: number) => {
      pending = n;
    };
    const each = async (f: (r: InspectReport) => Promise<void>) => {
      for await (const r of c.results(id, { onPending })) {
        count++;
        await f(r);
      }
    };
    if ((v.csv !== undefined || v.html !== undefined) && s.meta.kind === 'generate') throw new UsageError(`${id} is a generation: its results are lists of files (--json or text), not reports`);
    if (v.csv !== undefined || v.html !== undefined) {
      // The files are written in one pass each over the stored results.
      if (v.csv !== undefined)
        await streamTo(String(v.csv), async (w) => {
          await w(csvHeader());
          await each((r) => w(csvRow(r)));
        });
      if (v.html !== undefined) {
        count = 0;
        await streamTo(String(v.html), async (w) => {
          await w(reportHtmlHead({ created: new Date().toISOString(), count: s.meta.files, ...(s.meta.requirements.model ? { run: `model ${s.meta.requirements.model.slice(0, 12)}` } : {}) }));
          await each((r) => w(`${reportHtmlSection(r)}\n`));
          await w(REPORT_HTML_TAIL);
        });
      }
    } else if (s.meta.kind === 'generate') {
      // A generation's results are its ranges of images: which files each job wrote.
      await each(async (r) => {
        const g = r as unknown as GenerationResult;
        console.log(v.json ? JSON.stringify(g) : safeText(`${g.file}: ${g.error ?? `wrote ${g.files?.length ?? 0} file(s), ${g.files?.[0] ?? ''}${(g.files?.length ?? 0) > 1 ? ` .. ${g.files?.[g.files.length - 1]}` : ''} (${g.seconds?.toFixed(1)} s)`}`));
      });
    } else await each(async (r) => void console.log(v.json ? JSON.stringify(r) : reportText(r).trimEnd()));
    process.stderr.write(`${count} report(s)${pending ? `; ${pending} image(s) not inspected yet (${statusLine(s)})` : ''}${v.csv !== undefined ? `; wrote ${String(v.csv)}` : ''}${v.html !== undefined ? `; wrote ${String(v.html)}` : ''}\n`);
  } finally {
    await c.close();
  }
}

/** What `diffuse sample` resolved, for a generation through the queue. */
export interface QueuedSampling {
  runDir: string;
  config: RunConfig;
  count: number;
  seed: number;
  key?: WatermarkKey;
  payload: number;
  condition: Pick<GenerateOptions, 'classLabel' | 'prompt' | 'negativePrompt' | 'guidance' | 'guidanceRescale'>;
  sampling: Pick<GenerationSettings, 'scheduler' | 'karras' | 'spacing' | 'clipSample' | 'steps' | 'eta' | 'generatorKind'>;
}

/** `diffuse sample --redis`: enqueues the generation in ranges of --chunk images; workers write --images. */
export async function sampleThroughQueue(v: FlagValues, q: QueuedSampling): Promise<void> {
  const chunk = num(v, 'chunk', { int: true, min: 1, max: 10_000 }) as number;
  const out = path.resolve(String(v.images));
  await ensureWritable(path.join(out, imageFileName(0, q.count)));
  // Only fingerprints leave this machine: the workers sign and watermark with their own copies.
  const signing = v.c2pa !== undefined || v['c2pa-key'] !== undefined ? await openCredentials(v, () => {}) : undefined;
  const c = q.condition;
  const settings: GenerationSettings = {
    run: runName(q.runDir),
    out,
    count: q.count,
    seed: q.seed,
    chunk,
    ...q.sampling,
    ...(c.guidance !== undefined ? { guidance: c.guidance } : {}),
    ...(c.guidanceRescale !== undefined ? { guidanceRescale: c.guidanceRescale } : {}),
    ...(c.prompt !== undefined ? { prompt: typeof c.prompt === 'string' ? c.prompt : [...c.prompt] } : {}),
    ...(c.negativePrompt !== undefined ? { negativePrompt: String(c.negativePrompt) } : {}),
    ...(c.classLabel !== undefined ? { classLabel: typeof c.classLabel === 'number' ? c.classLabel : (c.classLabel as number[]).map(Number) } : {}),
    ...(q.key ? { payload: q.payload } : {}),
  };
  const model = await DiffusionPipeline.modelHashOf(q.runDir);
  const requirements = { ...requirementsOf(model, q.key), signer: signing ? signerFingerprint(signing) : null };
  const client = await connect(v);
  try {
    const meta = await client.createGeneration({ name: v.name === undefined ? undefined : String(v.name), settings, requirements });
    const s = await client.status(meta.id);
    process.stderr.write(
      `generation ${meta.id}: ${q.count} images (seeds ${q.seed}..${q.seed + q.count - 1}) in ${s.jobs} jobs of up to ${chunk}, into ${out}/, enqueued on ${redactRedisUrl(redisUrl(v))}.\n` +
        `Workers for it: diffuse worker --redis URL ${modelFlag(q.runDir)}${q.key ? ' --key KEY' : ''}${signing ? ' --c2pa DIR' : ''} (the same model${q.key ? ', key' : ''}${signing ? ', signing certificate' : ''}; --images must be storage they share)\n`,
    );
    console.log(meta.id);
    if (v.follow) process.stderr.write(`${statusLine(await follow(client, meta.id))}\n`);
  } finally {
    await client.close();
  }
}

export const commandWorker: Command = {
  summary: 'take scan jobs from Redis and inspect them (run on any number of machines); Ctrl-C finishes the jobs in work and stops',
  usage: 'diffuse worker --redis URL [--concurrency N] [--run DIR [--key key.json] [--c2pa DIR]] [--device cpu|cuda] [--lock-seconds 30]',
  options: {
    redis: { type: 'string', description: `the Redis URL (default: $${REDIS_URL_ENV})` },
    concurrency: { type: 'string', description: 'jobs in work at once (default: one per core without --run, 1 with it: the model uses every core)' },
    run: { type: 'string', description: "the run folder whose watermark and detector the scans ask for (scans made with another model are left to other workers)" },
    key: { type: 'string', description: "this machine's copy of the watermark key (never sent to Redis)" },
    c2pa: { type: 'string', description: "this machine's signing folder (diffuse keygen --c2pa) for generation jobs that ask for signed images (never sent to Redis)" },
    device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
    'lock-seconds': { type: 'string', description: 'how long a job stays with a worker that stopped answering before another worker takes it up', default: '30' },
  },
  async run(v) {
    const url = redisUrl(v);
    const concurrency = num(v, 'concurrency', { int: true, min: 1, max: 256 });
    const lockSeconds = num(v, 'lock-seconds', { min: 1, max: 3600 }) as number;
    const key = v.key === undefined ? undefined : readKey(String(v.key));
    const device = oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu');
    if (v.run !== undefined) readRunConfig(String(v.run));
    if (v.c2pa !== undefined && v.run === undefined) throw new UsageError('--c2pa signs generated images: give the model\'s --run DIR too');
    const signing = v.c2pa === undefined ? undefined : await openCredentials(v, () => {});
    // Lines name scans from Redis (their names are anyone's with access): escaped for the terminal.
    const say = (line: string) => process.stderr.write(`${new Date().toISOString()} ${safeText(line)}\n`);
    let worker: ScanWorker;
    try {
      worker = await ScanWorker.start({ redis: url, concurrency, run: v.run === undefined ? undefined : String(v.run), key, signing, device, lockSeconds, onLine: say });
    } catch (e) {
      if (e instanceof RedisProblem) throw new UsageError(e.message);
      throw e;
    }
    const r = worker.requirements;
    say(`worker on ${redactRedisUrl(url)}, queue ${worker.queue}${worker.generationQueue ? ` and ${worker.generationQueue} (generation${signing ? ', signed' : ''})` : ''}: Diffuse ${r.version}, ${r.model ? `model ${r.model.slice(0, 12)}...` : 'no model'}, ${r.key ? `key ${r.key}` : 'no key'}; waiting for jobs (Ctrl-C stops)`);
    const pause = () => `longest pause of this thread ${worker.longestPauseMs.toFixed(0)} ms (a lock lasts ${lockSeconds} s)`;
    const report = setInterval(() => say(`${worker.done} jobs done; ${pause()}`), 60_000);
    await new Promise<void>((resolve) => {
      const stop = () => {
        say('stopping: finishing the jobs in work');
        clearInterval(report);
        void worker.close().then(resolve);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    say(`stopped after ${worker.done} jobs; ${pause()}`);
  },
};
