/**
 * Scale-out through Redis against the one-machine commands, in the same run, with a redis-server
 * this bench starts on 127.0.0.1 (Debian's; append-only file on, fsync every second):
 *
 *   npm run bench:scan [-- --count 300 --jobs 1000,100000 --empty 5000 [--run DIR [--key key.json] --generate 200]]
 *
 * - File-level inspection of `count` distinct 1-2 megapixel files (bench:inspect's folder without
 *   copies): `diffuse inspect FOLDER --json` (wall time, start-up included, and its own timing line)
 *   against `diffuse scan` + 1 and 2 `diffuse worker` processes started beforehand (time from the
 *   enqueue to the last result, enqueue included).
 * - With --run: the same with the model's watermark (--key) and detector, on the first `count`
 *   files of the run's size made by `diffuse sample --images`.
 * - The queue's own cost: `empty` jobs whose processor only stores a result (BullMQ + the result
 *   script), in one process with 64 jobs in work: jobs per second.
 * - Growth: `jobs` files (tiny, distinct) enqueued with no worker: enqueue rate, and Redis memory
 *   per queued job (INFO used_memory before and after).
 * - With --run and --generate N: N images in one process (`diffuse sample --per-image-seeds
 *   --images`) against `diffuse sample --redis` with 2 worker processes.
 */
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import * as path from 'node:path';
import { Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { ScanClient } from '../src/scale/scans.js';
import { keys, recordResult } from '../src/scale/scan-store.js';
import { requirementsOf } from '../src/scale/scan-settings.js';
import { startRedis } from '../test/scale/redis-server.js';
import { flag, log } from './args.js';
import { makeImageFolder } from './image-folder.js';

const count = Number(flag('count', '300'));
const jobCounts = (flag('jobs', '1000,100000') as string).split(',').map(Number);
const empty = Number(flag('empty', '5000'));
const run = flag('run');
const key = flag('key');
const generate = Number(flag('generate', '0'));
const root = path.resolve(import.meta.dirname, '..');
const diffuse = path.join(root, 'bin', 'diffuse.js');
const scratch = mkdtempSync(path.join(tmpdir(), 'diffuse-bench-scan-'));
const folder = path.resolve(flag('dir', `/tmp/diffuse-bench-scan-${count}`) as string);

const redis = await startRedis({ appendfsync: 'everysec' });
const seconds = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e9;
const rows: string[] = [];
const row = (what: string, n: number, s: number, note = '') => {
  rows.push(`| ${what} | ${n} | ${s.toFixed(2)} | ${(n / s).toFixed(1)} | ${note} |`);
  log(rows[rows.length - 1]);
};

/** `diffuse inspect` on a folder: wall seconds and the seconds of its own timing line. */
function inspectOnce(dir: string, extra: string[]): { wall: number; own?: number } {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [diffuse, 'inspect', dir, '--json', ...extra], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const wall = seconds(t);
  if (r.status !== 0) throw new Error(`diffuse inspect failed: ${r.stderr.slice(-300)}`);
  const own = /inspected \d+ of \d+ image\(s\) in ([\d.]+) s/.exec(r.stderr);
  return { wall, own: own ? Number(own[1]) : undefined };
}

function startWorkers(n: number, extra: string[]): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, [diffuse, 'worker', '--redis', redis.url, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] }));
}

/** The workers' longest event-loop pause (ms), from their stop lines. */
let pauseMs = 0;

async function stopWorkers(ws: ChildProcess[]): Promise<void> {
  const said = ws.map((w) => {
    let text = '';
    w.stderr?.on('data', (d) => (text += String(d)));
    return () => text;
  });
  await Promise.all(ws.map((w) => new Promise((r) => (w.once('exit', r), w.kill('SIGTERM')))));
  pauseMs = Math.max(0, ...said.map((t) => Number(/longest pause of this thread (\d+) ms/.exec(t())?.[1] ?? 0)));
}

/** Waits until the workers' queue is served (a worker logs its start line). */
async function workersReady(ws: ChildProcess[]): Promise<void> {
  await Promise.all(ws.map((w) => new Promise<void>((resolve) => w.stderr?.on('data', (d) => /waiting for jobs/.test(String(d)) && resolve()))));
}

/** Redis memory per stored result, from the last scanOnce (bytes). */
let resultBytes = 0;

/** A scan of `files` through `workers` worker processes: seconds from the enqueue to the last result. */
async function scanOnce(files: string[], workers: number, workerArgs: string[], scanArgs: { run?: string; key?: string }): Promise<number> {
  const ws = startWorkers(workers, workerArgs);
  await workersReady(ws);
  const c = await ScanClient.connect(redis.url);
  const { DiffusionPipeline, readKey } = await import('../src/index.js');
  const model = scanArgs.run ? await DiffusionPipeline.modelHashOf(scanArgs.run) : null;
  // A fresh Redis state for each row, so that no result is reused.
  await c.redis.flushall();
  const used = async () => Number(/used_memory:(\d+)/.exec(await c.redis.info('memory'))?.[1]);
  const before = await used();
  const t = process.hrtime.bigint();
  const meta = await c.create(files, { settings: scanArgs.run ? { inversionSteps: 50, fpr: 0.01 } : {}, requirements: requirementsOf(model, scanArgs.key ? readKey(scanArgs.key) : undefined) });
  for (;;) {
    const s = await c.status(meta.id);
    if (s.state === 'complete') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const s = seconds(t);
  // What stays once the jobs are done (BullMQ removes completed jobs): the scan and its results.
  resultBytes = ((await used()) - before) / files.length;
  await c.close();
  await stopWorkers(ws);
  return s;
}

const cores = availableParallelism();
log(`bench:scan: ${cores} cores, redis-server on ${redis.url}`);

// ---- file-level inspection ----
await makeImageFolder(folder, count, { distinct: true });
const files = readdirSync(folder)
  .sort()
  .map((f) => path.join(folder, f));
const own = inspectOnce(folder, []);
row('diffuse inspect FOLDER (one process)', files.length, own.wall, `without start-up ${own.own?.toFixed(2)} s, ${(files.length / (own.own ?? own.wall)).toFixed(1)} images/s`);
for (const w of [1, 2]) {
  const s = await scanOnce(files, w, [], {});
  row(`diffuse scan + ${w} diffuse worker process${w > 1 ? 'es' : ''} (concurrency ${cores} each)`, files.length, s, `enqueue included; Redis keeps ${resultBytes.toFixed(0)} bytes per image after the scan; workers' longest pause ${pauseMs} ms`);
}

// ---- Diffuse-model inspection ----
if (run) {
  const samples = path.join(scratch, 'samples');
  const r = spawnSync(process.execPath, [diffuse, 'sample', '--run', run, '--count', String(Math.min(count, 200)), '--steps', '25', '--images', samples, '--out', path.join(scratch, 'grid.png'), ...(key ? ['--key', key] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const modelFiles = readdirSync(samples).map((f) => path.join(samples, f));
  const keyArgs = key ? ['--key', key] : [];
  const m = inspectOnce(samples, ['--run', run, ...keyArgs]);
  row(`diffuse inspect --run${key ? ' --key' : ''} (one process)`, modelFiles.length, m.wall, `without start-up ${m.own?.toFixed(2)} s`);
  for (const w of [1, 2]) {
    const s = await scanOnce(modelFiles, w, ['--run', run, ...keyArgs], { run, key });
    row(`diffuse scan --run${key ? ' --key' : ''} + ${w} worker process${w > 1 ? 'es' : ''} (concurrency 1 each)`, modelFiles.length, s, `enqueue included; workers' longest pause ${pauseMs} ms`);
  }
}

// ---- the queue's own cost ----
{
  const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
  await conn.flushall();
  const q = new Queue('bench-empty', { connection: conn, prefix: 'diffuse-bull' });
  // Each job waited for by one scan, as a scan's jobs are (the result script counts it done there).
  const p = conn.pipeline();
  for (let k = 0; k < empty; k++) p.sadd(keys.jobScans(`e-${k}`), 'bench');
  await p.exec();
  const t0 = process.hrtime.bigint();
  for (let at = 0; at < empty; at += 1000) await q.addBulk(Array.from({ length: Math.min(1000, empty - at) }, (_, k) => ({ name: 'e', data: { path: `/x/${at + k}`, sha256: String(at + k), settings: 's' }, opts: { jobId: `e-${at + k}`, removeOnComplete: true } })));
  const enq = seconds(t0);
  let done = 0;
  const workerConn = new Redis(redis.url, { maxRetriesPerRequest: null });
  let resolve = () => {};
  const finished = new Promise<void>((r) => (resolve = r));
  const t = process.hrtime.bigint();
  const w = new Worker(
    'bench-empty',
    async (job: Job) => {
      await recordResult(conn, job.id as string, { file: job.data.path }, job.attemptsStarted);
      if (++done === empty) resolve();
    },
    { connection: workerConn, prefix: 'diffuse-bull', concurrency: 64 },
  );
  await finished;
  const emptySeconds = seconds(t);
  await w.close();
  workerConn.disconnect();
  row('empty jobs: BullMQ + the result script, 64 in work, one process', empty, emptySeconds, `added at ${(empty / enq).toFixed(0)} jobs/s`);
  await q.close();
  conn.disconnect();
}

// ---- growth: queued jobs and Redis memory ----
for (const n of jobCounts) {
  const dir = path.join(scratch, `tiny-${n}`);
  mkdirSync(dir);
  for (let i = 0; i < n; i++) writeFileSync(path.join(dir, `${String(i).padStart(6, '0')}.png`), `tiny distinct file ${i}`);
  const tiny = readdirSync(dir)
    .sort()
    .map((f) => path.join(dir, f));
  const c = await ScanClient.connect(redis.url);
  await c.redis.flushall();
  const used = async () => Number(/used_memory:(\d+)/.exec(await c.redis.info('memory'))?.[1]);
  const before = await used();
  const t = process.hrtime.bigint();
  await c.create(tiny, { settings: {}, requirements: requirementsOf(null, undefined) });
  const s = seconds(t);
  const per = ((await used()) - before) / n;
  row(`enqueue ${n} files (read, hash, register, add), no worker`, n, s, `Redis memory ${per.toFixed(0)} bytes per queued job, ${(((await used()) - before) / 2 ** 20).toFixed(1)} MiB in all`);
  await c.redis.flushall();
  await c.close();
  rmSync(dir, { recursive: true, force: true });
}

// ---- generation ----
if (run && generate > 0) {
  const one = path.join(scratch, 'gen-one');
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [diffuse, 'sample', '--run', run, '--count', String(generate), '--per-image-seeds', '--steps', '25', '--images', one, '--out', path.join(scratch, 'gen.png')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  row('diffuse sample --per-image-seeds --images (one process)', generate, seconds(t), 'start-up and grid included');
  const ws = startWorkers(2, ['--run', run, '--concurrency', '1']);
  await workersReady(ws);
  const t2 = process.hrtime.bigint();
  const g = spawnSync(process.execPath, [diffuse, 'sample', '--run', run, '--count', String(generate), '--steps', '25', '--images', path.join(scratch, 'gen-queued'), '--redis', redis.url, '--follow'], { encoding: 'utf8' });
  if (g.status !== 0) throw new Error(g.stderr);
  row('diffuse sample --redis + 2 worker processes', generate, seconds(t2), 'enqueue and client start-up included');
  await stopWorkers(ws);
}

console.log(`\n## bench:scan (${cores} cores, redis-server with appendonly, everysec)\n`);
console.log('| what | images or jobs | seconds | per second | note |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
await redis.stop();
rmSync(scratch, { recursive: true, force: true });
