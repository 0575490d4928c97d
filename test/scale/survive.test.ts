/**
 * What a scan must survive, with `diffuse worker` processes and a real redis-server: kill -9 of a
 * worker in the middle of its jobs, Redis stopped and started again mid-scan (append-only file
 * on), a job that kills every worker that takes it, and a job longer than the lock. Each ends
 * with every image holding exactly one result.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { Redis } from 'ioredis';
import { ScanClient, ScanStatus } from '../../src/scale/scans.js';
import { requirementsOf } from '../../src/scale/scan-settings.js';
import { redisForTests } from './redis-server.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-survive-'));
const server = redisForTests(() => rmSync(root, { recursive: true, force: true }));

/** `count` distinct small PNGs in a new folder. */
async function images(name: string, count: number): Promise<string[]> {
  const dir = path.join(root, name);
  mkdirSync(dir);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const f = path.join(dir, `${String(i).padStart(3, '0')}.png`);
    await sharp({ create: { width: 24, height: 24, channels: 3, background: { r: (i * 37) % 256, g: (i * 91) % 256, b: name.length * 20 } } }).png().toFile(f);
    out.push(f);
  }
  return out;
}

/** A `diffuse worker` process with file-level inspection. */
function worker(env: Record<string, string>, concurrency: number): { proc: ChildProcess; err: () => string } {
  const proc = spawn(process.execPath, ['bin/diffuse.js', 'worker', '--redis', server.redis.url, '--lock-seconds', '1', '--concurrency', String(concurrency)], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d) => (err += String(d)));
  return { proc, err: () => err };
}

async function stop(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill(signal);
  await exited;
}

async function until(c: ScanClient, id: string, test: (s: ScanStatus) => boolean, ms = 90_000): Promise<ScanStatus> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await c.status(id);
    if (test(s)) return s;
    if (Date.now() > deadline) throw new Error(`scan ${id}: ${s.done}/${s.jobs} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every file's result, read straight from Redis: the attempt that stored it, whether it is a report, and how many inspections of it finished. */
async function results(c: ScanClient, id: string): Promise<{ attempts: number[]; ok: boolean[]; runs: number[] }> {
  const raw = new Redis(server.redis.url);
  try {
    const items = (await raw.lrange(`diffuse:scan:${id}:items`, 0, -1)).map((s) => JSON.parse(s) as { job: string });
    const attempts: number[] = [];
    const ok: boolean[] = [];
    const runs: number[] = [];
    for (const { job } of items) {
      const h = await raw.hgetall(`diffuse:result:${job}`);
      assert.ok(h.report, `no result for ${job}`);
      attempts.push(Number(h.attempt));
      ok.push(h.ok === '1');
      runs.push(Number(h.runs));
    }
    return { attempts, ok, runs };
  } finally {
    raw.disconnect();
  }
}

describe('diffuse worker: what a scan survives', () => {
  it('kill -9 of a worker in the middle of its jobs: taken up again, one result each', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const files = await images('killed', 30);
    const meta = await c.create(files, { settings: {}, requirements: requirementsOf(null, undefined) });
    const a = worker({ DIFFUSE_TEST_JOB_DELAY_MS: '400' }, 3);
    await until(c, meta.id, (s) => s.done >= 6);
    // Three jobs are in work now (each takes at least 400 ms): kill the worker under them.
    await stop(a.proc, 'SIGKILL');
    const killedAt = (await c.status(meta.id)).done;
    assert.ok(killedAt < 30);
    const b = worker({}, 2);
    try {
      const s = await until(c, meta.id, (x) => x.state === 'complete');
      assert.equal(s.jobs, 30);
      assert.equal(s.done, 30, 'each job counted once');
      assert.equal(s.failed, 0);
    } finally {
      await stop(b.proc);
    }
    const { attempts, ok } = await results(c, meta.id);
    assert.equal(attempts.length, 30);
    assert.ok(ok.every(Boolean));
    assert.ok(attempts.some((n) => n >= 2), `a job in work at the kill was started again (attempts: ${attempts.join(',')})`);
    await c.close();
  });

  it('Redis stopped and started again mid-scan: the scan completes with every result', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const files = await images('restart', 30);
    const meta = await c.create(files, { settings: {}, requirements: requirementsOf(null, undefined) });
    await c.close();
    const w = worker({ DIFFUSE_TEST_JOB_DELAY_MS: '200' }, 3);
    try {
      const c1 = await ScanClient.connect(server.redis.url);
      await until(c1, meta.id, (s) => s.done >= 5);
      await c1.close();
      await server.redis.restart(1500);
      const c2 = await ScanClient.connect(server.redis.url);
      const s = await until(c2, meta.id, (x) => x.state === 'complete');
      assert.equal(s.done, 30);
      assert.equal(s.failed, 0);
      const { attempts } = await results(c2, meta.id);
      assert.equal(attempts.length, 30);
      await c2.close();
      assert.match(w.err(), /cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+: .*retrying/, 'the worker said Redis was away');
    } finally {
      await stop(w.proc);
    }
  });

  it('a job that kills every worker that takes it is given up after 3 starts, with the reason; the scan completes', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const files = await images('crash', 5);
    const poison = createHash('sha256').update(readFileSync(files[2])).digest('hex');
    const meta = await c.create(files, { settings: {}, requirements: requirementsOf(null, undefined) });
    // A supervisor (systemd's Restart=always) starts the worker again each time it dies.
    let current = worker({ DIFFUSE_TEST_CRASH_SHA256: poison }, 1);
    let starts = 1;
    let done = false;
    const supervise = (async () => {
      while (!done) {
        if (current.proc.exitCode !== null) {
          assert.equal(current.proc.exitCode, 70);
          current = worker({ DIFFUSE_TEST_CRASH_SHA256: poison }, 1);
          starts++;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      const s = await until(c, meta.id, (x) => x.state === 'complete', 120_000);
      assert.equal(s.done, 5);
      assert.equal(s.failed, 1);
    } finally {
      done = true;
      await supervise;
      await stop(current.proc);
    }
    assert.equal(starts, 4, 'three crashes, then a worker that gave the job up');
    const reports = [];
    for await (const r of c.results(meta.id)) reports.push(r);
    assert.match(reports[2].error ?? '', /given up: the workers inspecting it stopped \(crashed or were killed\) 3 times/);
    assert.ok(reports.filter((_, i) => i !== 2).every((r) => !r.error));
    await c.close();
  });

  it('a job longer than the lock stays with its worker (the lock is renewed while it works)', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const files = await images('long', 2);
    const meta = await c.create(files, { settings: {}, requirements: requirementsOf(null, undefined) });
    // Two workers, a 1 s lock and jobs of 3.5 s: a lost lock would hand a job to the other worker.
    const w1 = worker({ DIFFUSE_TEST_JOB_DELAY_MS: '3500' }, 1);
    const w2 = worker({ DIFFUSE_TEST_JOB_DELAY_MS: '3500' }, 1);
    try {
      await until(c, meta.id, (x) => x.state === 'complete');
    } finally {
      await Promise.all([stop(w1.proc), stop(w2.proc)]);
    }
    const { attempts, runs } = await results(c, meta.id);
    assert.deepEqual(attempts, [1, 1]);
    assert.deepEqual(runs, [1, 1], 'each job inspected once');
    await c.close();
  });
});
