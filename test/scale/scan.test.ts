/**
 * Scans through a real Redis: every file gets the report `diffuse inspect` gives it, the same
 * content is one job and one result, unreadable files end as results with their error, workers
 * refuse scans they cannot run, cancelled scans are skipped, and the CLI's faces (status, results
 * as JSON, CSV and HTML, errors about Redis) say what they should.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { Redis } from 'ioredis';
import { Inspector, generateKey, readKey } from '../../src/index.js';
import { type InspectReport } from '../../src/index.js';
import { ScanClient, ScanStatus } from '../../src/scale/scans.js';
import { ScanWorker } from '../../src/scale/scan-worker.js';
import { keyFingerprint, queueName, requirementsOf } from '../../src/scale/scan-settings.js';
import { registerJob } from '../../src/scale/scan-store.js';
import { Queue } from 'bullmq';
import { cli } from '../cli/helpers.js';
import { TLS, redisForTests, startRedis } from './redis-server.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-scan-'));
const fixtures = path.resolve('test/fixtures');
const server = redisForTests(() => rmSync(root, { recursive: true, force: true }));

async function until(c: ScanClient, id: string, state: ScanStatus['state'] = 'complete', ms = 60_000): Promise<ScanStatus> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await c.status(id);
    if (s.state === state) return s;
    if (Date.now() > deadline) throw new Error(`scan ${id} still ${s.state} (${s.done}/${s.jobs}) after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function collect(c: ScanClient, id: string): Promise<{ reports: InspectReport[]; pending: number }> {
  const reports: InspectReport[] = [];
  let pending = -1;
  for await (const r of c.results(id, { onPending: (n) => (pending = n) })) reports.push(r);
  return { reports, pending };
}

describe('diffuse scan: file-level inspection through Redis', () => {
  const folder = path.join(root, 'files');
  let files: string[] = [];

  before(async () => {
    mkdirSync(folder);
    // Files other tools wrote (content credentials, NovelAI, the SD mark), and hostile ones.
    const real = ['inspect', 'novelai', 'invisible-watermark'].flatMap((d) => readdirSync(path.join(fixtures, d)).filter((f) => /\.(png|jpe?g|webp)$/i.test(f)).map((f) => path.join(fixtures, d, f)));
    for (const f of real.slice(0, 14)) copyFileSync(f, path.join(folder, path.basename(f)));
    copyFileSync(path.join(folder, readdirSync(folder)[0]), path.join(folder, 'zz-same-content.png'));
    writeFileSync(path.join(folder, 'corrupt.png'), Buffer.from('\x89PNG\r\n\x1a\nnot really a png'));
    execFileSync('mkfifo', [path.join(folder, 'fifo.png')]);
    await sharp({ create: { width: 16, height: 16, channels: 3, background: '#336699' } }).png().toFile(path.join(folder, 'vanishes.png'));
    await sharp({ create: { width: 16, height: 16, channels: 3, background: '#996633' } }).png().toFile(path.join(folder, 'changes.png'));
    files = readdirSync(folder)
      .sort()
      .map((f) => path.join(folder, f));
  });

  it('gives every file the report diffuse inspect gives it, one job per content, errors as results', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const meta = await c.create(files, { name: 'files', settings: {}, requirements: requirementsOf(null, undefined) });
    let s = await c.status(meta.id);
    assert.equal(s.state, 'running');
    // 19 files: one shares another's content; the FIFO is refused when enqueued.
    assert.equal(meta.files, files.length);
    assert.equal(s.jobs, files.length - 1);
    assert.equal(s.done, 1, 'the FIFO is done (with its error) at once');
    // Before a worker runs: one file vanishes, one is rewritten.
    unlinkSync(path.join(folder, 'vanishes.png'));
    await sharp({ create: { width: 16, height: 16, channels: 3, background: '#000000' } }).png().toFile(path.join(folder, 'changes.png'));
    const lines: string[] = [];
    const worker = await ScanWorker.start({ redis: server.redis.url, concurrency: 3, onLine: (l) => lines.push(l) });
    try {
      s = await until(c, meta.id);
    } finally {
      await worker.close();
    }
    assert.equal(s.done, s.jobs);
    const { reports, pending } = await collect(c, meta.id);
    assert.equal(pending, 0);
    assert.deepEqual(
      reports.map((r) => r.file),
      files,
      'one report per file, in order',
    );
    const byName = new Map(reports.map((r) => [path.basename(r.file), r]));
    assert.match(byName.get('fifo.png')?.error ?? '', /a FIFO \(named pipe\), not an image file/);
    assert.match(byName.get('vanishes.png')?.error ?? '', /no such file/);
    assert.match(byName.get('changes.png')?.error ?? '', /changed since it was enqueued/);
    assert.match(byName.get('corrupt.png')?.error ?? '', /cannot decode image/);
    assert.equal(s.failed, 4);
    // Every other file: exactly what the in-process inspector says.
    const inspector = await Inspector.open(undefined, { threads: 1 });
    try {
      let compared = 0;
      for (const r of reports) {
        if (r.error) continue;
        const own = (await inspector.inspect(r.file)).report;
        assert.deepEqual(r, JSON.parse(JSON.stringify(own)), r.file);
        compared++;
      }
      assert.equal(compared, files.length - 4);
    } finally {
      await inspector.release();
    }
    const first = byName.get(path.basename(files[0]));
    assert.deepEqual({ ...byName.get('zz-same-content.png'), file: '' }, { ...first, file: '' }, 'the copy shares its twin\'s result');
    // The same files again: one job, one result per content and settings, so the only new job is
    // the rewritten file's new content.
    const raw = new Redis(server.redis.url);
    assert.equal((await raw.keys('diffuse:result:*')).length, files.length - 2, 'one result per distinct content (the FIFO has none)');
    const again = await c.create(files, { settings: {}, requirements: requirementsOf(null, undefined) });
    const s2 = await c.status(again.id);
    assert.equal(s2.jobs - s2.done, 1);
    assert.equal(await raw.llen('diffuse-bull:' + again.queue + ':wait'), 1);
    raw.disconnect();
    await c.close();
  });

  it('sends the bytes with the jobs when asked, and refuses images over the limit in words', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const two = [path.join(folder, 'corrupt.png'), files.find((f) => f.endsWith('.jpg') || f.endsWith('.jpeg')) ?? files[0]];
    const small = await c.create(two, { settings: { metadataOnly: true }, requirements: requirementsOf(null, undefined), sendBytes: true, maxJobBytes: 100 });
    const worker = await ScanWorker.start({ redis: server.redis.url, concurrency: 2 });
    try {
      await until(c, small.id);
      const { reports } = await collect(c, small.id);
      assert.match(reports[0].error ?? '', /cannot decode image/);
      assert.match(reports[1].error ?? '', /over the 100-byte limit for an image that travels with its job/);
      const big = await c.create(two.slice(1), { settings: { metadataOnly: true }, requirements: requirementsOf(null, undefined), sendBytes: true });
      await until(c, big.id);
      const [r] = (await collect(c, big.id)).reports;
      assert.equal(r.file, two[1]);
      assert.equal(r.error, undefined);
      assert.ok(r.metadata && r.credentials, 'inspected from the bytes in the job');
    } finally {
      await worker.close();
      await c.close();
    }
  });

  it('skips the jobs of a cancelled scan', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const one = path.join(root, 'cancelled.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#123456' } }).png().toFile(one);
    const meta = await c.create([one], { settings: {}, requirements: requirementsOf(null, undefined) });
    await c.cancel(meta.id);
    const worker = await ScanWorker.start({ redis: server.redis.url, concurrency: 1 });
    try {
      const deadline = Date.now() + 10_000;
      while (worker.done < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(worker.done, 1, 'the job was taken and skipped');
    } finally {
      await worker.close();
    }
    const s = await c.status(meta.id);
    assert.equal(s.state, 'cancelled');
    assert.equal(s.done, 0);
    assert.equal((await collect(c, meta.id)).pending, 1);
    await c.close();
  });

  it('fails a malformed job from Redis at once, with the reason, and the scan completes', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const one = path.join(root, 'beside-a-bad-job.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#0a0b0c' } }).png().toFile(one);
    const requirements = requirementsOf(null, undefined);
    const meta = await c.create([one], { settings: {}, requirements });
    // Anyone who can write to Redis can add jobs: one with a relative path and no real hash.
    const q = new Queue(queueName(requirements), { connection: c.redis, prefix: 'diffuse-bull' });
    await registerJob(c.redis, meta.id, 'bad-job-1');
    await q.add('inspect', { path: 'relative.png', sha256: 'x', settings: 'y' }, { jobId: 'bad-job-1', attempts: 3 });
    await q.close();
    const worker = await ScanWorker.start({ redis: server.redis.url, concurrency: 1 });
    try {
      const s = await until(c, meta.id);
      assert.equal(s.jobs, 2);
      assert.equal(s.failed, 1);
    } finally {
      await worker.close();
    }
    const bad = JSON.parse((await c.redis.hget('diffuse:result:bad-job-1', 'report')) as string) as InspectReport;
    assert.match(bad.error ?? '', /^given up after 1 attempts: malformed scan job: the path is not an absolute path/);
    await c.close();
  });

  it('deletes a scan with the results no other scan shares; its waiting jobs are skipped', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const dir = path.join(root, 'deleted');
    mkdirSync(dir);
    const f = await Promise.all(
      [1, 2, 3, 4, 5].map(async (i) => {
        const file = path.join(dir, `${i}.png`);
        await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 200, g: i * 40, b: 7 } } }).png().toFile(file);
        return file;
      }),
    );
    const requirements = requirementsOf(null, undefined);
    const a = await c.create(f.slice(0, 3), { settings: { metadataOnly: true }, requirements });
    const b = await c.create(f.slice(2, 4), { settings: { metadataOnly: true }, requirements });
    const worker = await ScanWorker.start({ redis: server.redis.url, concurrency: 2 });
    try {
      await until(c, a.id);
      await until(c, b.id);
      const results = async () => (await c.redis.keys('diffuse:result:*')).length;
      const before = await results();
      assert.equal(await c.delete(a.id), 2, 'files 1 and 2; file 3 is also scan b\'s');
      assert.equal(await results(), before - 2);
      await assert.rejects(c.status(a.id), /no scan/);
      assert.equal((await collect(c, b.id)).reports.length, 2);
      let r = await cli('scan', 'delete', b.id, '--redis', server.redis.url);
      assert.match(r.out, /deleted with 2 result\(s\)/);
      assert.equal(await results(), before - 4);
      // A scan deleted before its jobs ran: the workers skip them.
      worker.done = 0;
      const d = await c.create(f.slice(4), { settings: { metadataOnly: true }, requirements });
      r = await cli('scan', 'delete', d.id, '--redis', server.redis.url);
      const deadline = Date.now() + 10_000;
      while (worker.done < 1 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      assert.equal(worker.done, 1);
      assert.equal(await results(), before - 4, 'no result for the deleted scan');
    } finally {
      await worker.close();
      await c.close();
    }
  });

  it('leaves scans it cannot run to other workers, and says why', async () => {
    const c = await ScanClient.connect(server.redis.url);
    const keyA = generateKey();
    const one = path.join(root, 'needs-key.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#654321' } }).png().toFile(one);
    const needsKey = await c.create([one], { name: 'needs a key', settings: {}, requirements: requirementsOf(null, keyA) });
    const oldVersion = await c.create([one], { settings: {}, requirements: { version: '0.0.9', model: null, key: null } });
    const lines: string[] = [];
    const plain = await ScanWorker.start({ redis: server.redis.url, concurrency: 1, onLine: (l) => lines.push(l) });
    try {
      const deadline = Date.now() + 5000;
      while (lines.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(lines.some((l) => l.includes(`scan ${needsKey.id} (needs a key): it needs the watermark key with fingerprint ${keyFingerprint(keyA)} (this worker has no --key)`)), lines.join('\n'));
      assert.ok(lines.some((l) => l.includes(`scan ${oldVersion.id}: it needs Diffuse 0.0.9 (this worker runs`)), lines.join('\n'));
      assert.equal((await c.status(needsKey.id)).done, 0, 'not taken');
    } finally {
      await plain.close();
    }
    const keyed = await ScanWorker.start({ redis: server.redis.url, concurrency: 1, key: keyA });
    try {
      assert.equal((await until(c, needsKey.id)).done, 1);
    } finally {
      await keyed.close();
    }
    assert.equal((await c.status(oldVersion.id)).done, 0);
    await c.close();
  });
});

describe('diffuse scan and worker on the command line', () => {
  const run = path.join(root, 'run');
  const key = path.join(root, 'key.json');
  const images = path.join(root, 'cli-images');

  before(async () => {
    const train = path.join(root, 'train');
    mkdirSync(train);
    mkdirSync(images);
    for (let i = 0; i < 24; i++) {
      const px = Buffer.alloc(64, 0);
      for (let d = 0; d < 9; d++) px[(Math.floor(i / 6) + Math.floor(d / 3)) * 8 + (i % 6) + (d % 3)] = 240;
      await sharp(px, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(path.join(train, `${i}.png`));
    }
    let r = await cli('train', '--data', train, '--size', '8', '--channels', '1', '--preset', 'tiny', '--run', run, '--steps', '20', '--batch', '8', '--sample-every', '0', '--timesteps', '40');
    assert.equal(r.code, 0, r.err);
    r = await cli('keygen', '--out', key);
    assert.equal(r.code, 0, r.err);
    r = await cli('sample', '--run', run, '--count', '3', '--steps', '10', '--out', path.join(root, 'grid.png'), '--images', images, '--key', key, '--payload', '5');
    assert.equal(r.code, 0, r.err);
    for (let i = 0; i < 2; i++) copyFileSync(path.join(train, `${i}.png`), path.join(images, `real-${i}.png`));
  });

  it('scans with a model and key: the same reports as diffuse inspect, as JSON, CSV and HTML', async () => {
    let r = await cli('scan', images, '--redis', server.redis.url, '--run', run, '--key', key, '--steps', '10', '--name', 'cli');
    assert.equal(r.code, 0, r.err);
    const id = r.out.trim();
    assert.match(id, /^[0-9a-f]{12}$/);
    assert.match(r.err, /5 files, 5 distinct images/);
    // The key's secret never reaches Redis.
    const raw = new Redis(server.redis.url);
    const secret = (readKey(key) as { secret: string }).secret;
    for (const k of await raw.keys('*')) {
      const type = await raw.type(k);
      const dump = type === 'string' ? await raw.get(k) : type === 'hash' ? JSON.stringify(await raw.hgetall(k)) : type === 'list' ? JSON.stringify(await raw.lrange(k, 0, -1)) : '';
      assert.ok(!String(dump).includes(secret), `${k} holds the key's secret`);
    }
    raw.disconnect();
    const worker = await ScanWorker.start({ redis: server.redis.url, run, key: readKey(key), concurrency: 1 });
    try {
      r = await cli('scan', 'status', id, '--redis', server.redis.url, '--follow');
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /complete; 5 of 5 images done, 0 failed/);
    } finally {
      await worker.close();
    }
    r = await cli('scan', 'results', id, '--redis', server.redis.url, '--json');
    assert.equal(r.code, 0, r.err);
    const scanned = r.out.split('\n').map((l) => JSON.parse(l) as InspectReport);
    const direct = await cli('inspect', images, '--run', run, '--key', key, '--steps', '10', '--json', '--threads', '1');
    assert.equal(direct.code, 0, direct.err);
    assert.deepEqual(
      scanned,
      direct.out.split('\n').map((l) => ({ ...(JSON.parse(l) as InspectReport), file: path.resolve((JSON.parse(l) as InspectReport).file) })),
    );
    const samples = scanned.filter((x) => !path.basename(x.file).startsWith('real-'));
    assert.equal(samples.length, 3);
    assert.ok(samples.every((x) => x.watermark?.status === 'checked' && x.watermark.detected), 'the three watermarked samples');
    const csv = path.join(root, 'out.csv');
    const html = path.join(root, 'out.html');
    r = await cli('scan', 'results', id, '--redis', server.redis.url, '--csv', csv, '--html', html);
    assert.equal(r.code, 0, r.err);
    assert.equal(readFileSync(csv, 'utf8').trim().split('\n').length, 6);
    const page = readFileSync(html, 'utf8');
    assert.equal(page.match(/<section>/g)?.length, 5);
    assert.match(page, /<\/body><\/html>\n$/);
    r = await cli('scan', 'list', '--redis', server.redis.url);
    assert.match(r.out, new RegExp(`scan ${id} \\(cli\\): complete`));
    // A name with control characters (anyone with access to Redis could write one) is printed escaped.
    r = await cli('scan', path.join(images, 'real-0.png'), '--redis', server.redis.url, '--metadata-only', '--name', 'evil\x1b[2J\nforged line');
    assert.equal(r.code, 0, r.err);
    r = await cli('scan', 'list', '--redis', server.redis.url);
    assert.ok(!r.out.includes('\x1b') && r.out.includes('evil\\u001b[2J\\nforged line'), r.out);
  });

  it('generates through the queue: the same bytes as one machine with the same seeds; signed and watermarked by the workers', async () => {
    const one = path.join(root, 'one-machine');
    const queued = path.join(root, 'queued');
    let r = await cli('sample', '--run', run, '--count', '10', '--steps', '6', '--seed', '3', '--per-image-seeds', '--images', one, '--out', path.join(root, 'one.png'));
    assert.equal(r.code, 0, r.err);
    r = await cli('sample', '--run', run, '--count', '10', '--steps', '6', '--seed', '3', '--images', queued, '--redis', server.redis.url, '--chunk', '3', '--name', 'gen');
    assert.equal(r.code, 0, r.err);
    const id = r.out.trim();
    assert.match(r.err, /10 images \(seeds 3\.\.12\) in 4 jobs of up to 3/);
    const plain = await ScanWorker.start({ redis: server.redis.url, concurrency: 1 });
    const lines: string[] = [];
    const modelWorker = await ScanWorker.start({ redis: server.redis.url, run, concurrency: 1, onLine: (l) => lines.push(l) });
    try {
      r = await cli('scan', 'status', id, '--redis', server.redis.url, '--follow');
      assert.match(r.out, /generation [0-9a-f]{12} \(gen\): complete; 4 of 4 jobs done, 0 failed \(10 images\)/);
    } finally {
      await plain.close();
      await modelWorker.close();
    }
    const names = readdirSync(one).sort();
    assert.equal(names.length, 10);
    assert.deepEqual(readdirSync(queued).sort(), names, 'the same files, no temporary ones left');
    for (const n of names) assert.ok(readFileSync(path.join(one, n)).equals(readFileSync(path.join(queued, n))), `${n}: byte-identical`);
    r = await cli('scan', 'results', id, '--redis', server.redis.url);
    assert.match(r.out, /images 9-9: wrote 1 file\(s\)/);
    // Watermarked and signed: the workers use their own key and certificate.
    const c2pa = path.join(root, 'c2pa');
    r = await cli('keygen', '--c2pa', '--out', c2pa);
    assert.equal(r.code, 0, r.err);
    const signed = path.join(root, 'signed');
    r = await cli('sample', '--run', run, '--count', '2', '--steps', '6', '--images', signed, '--redis', server.redis.url, '--key', key, '--payload', '77', '--c2pa', c2pa);
    assert.equal(r.code, 0, r.err);
    const gid = r.out.trim();
    const noSigner = await ScanWorker.start({ redis: server.redis.url, run, key: readKey(key), concurrency: 1, onLine: (l) => lines.push(l) });
    await new Promise((res) => setTimeout(res, 1500));
    await noSigner.close();
    assert.ok(lines.some((l) => l.includes(`generation`) || l.includes(`scan ${gid}`)), lines.join('\n'));
    assert.ok(lines.some((l) => l.includes(`not taking the jobs of scan ${gid}: it needs the signing certificate with fingerprint`)), lines.join('\n'));
    const { loadSigningCredentials } = await import('../../src/provenance/index.js');
    const w = await ScanWorker.start({ redis: server.redis.url, run, key: readKey(key), signing: await loadSigningCredentials({ dir: c2pa }), concurrency: 1 });
    try {
      r = await cli('scan', 'status', gid, '--redis', server.redis.url, '--follow');
      assert.match(r.out, /complete; 1 of 1 jobs done, 0 failed/);
    } finally {
      await w.close();
    }
    r = await cli('inspect', signed, '--run', run, '--key', key, '--steps', '10', '--json', '--trust', path.join(c2pa, 'c2pa-root.pem'));
    const reports = r.out.split('\n').map((l) => JSON.parse(l) as InspectReport);
    assert.equal(reports.length, 2);
    for (const [k, rep] of reports.entries()) {
      assert.equal(rep.credentials?.state, 'trusted', JSON.stringify(rep.credentials));
      assert.equal(rep.credentials?.claims?.diffuse?.seed, k, 'image k has seed 0 + k');
      assert.ok(rep.watermark?.status === 'checked' && rep.watermark.detected && rep.watermark.payload === 77);
    }
  });

  it('says in one line what is wrong with Redis or an id, and never prints a password', async () => {
    let r = await cli('scan', 'list', '--redis', 'redis://127.0.0.1:1');
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1: nothing listens there/);
    r = await cli('scan', 'list', '--redis', 'http://127.0.0.1:1');
    assert.match(r.err, /starts with redis:\/\/ or rediss:\/\//);
    r = await cli('scan', 'status', 'abc', '--redis', server.redis.url);
    assert.equal(r.code, 1);
    assert.match(r.err, /'abc' is not a scan id/);
    r = await cli('scan', 'status', '0123456789ab', '--redis', server.redis.url);
    assert.match(r.err, /no scan 0123456789ab on this Redis/);
    const locked = await startRedis({ password: 'pa55-w0rd-secret' });
    try {
      r = await cli('scan', 'list', '--redis', locked.url.replace('pa55-w0rd-secret', 'wrong-guess-xyz'));
      assert.equal(r.code, 1);
      assert.match(r.err, /redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ refused the user name or password/);
      assert.ok(!r.err.includes('wrong-guess-xyz'));
      r = await cli('scan', 'list', '--redis', locked.url.replace(':pa55-w0rd-secret@', ''));
      assert.match(r.err, /asks for a password/);
      r = await cli('worker', '--redis', locked.url.replace('pa55-w0rd-secret', 'wrong-guess-xyz'));
      assert.equal(r.code, 1);
      assert.ok(!r.err.includes('wrong-guess-xyz'));
      process.env.DIFFUSE_REDIS_URL = locked.url;
      try {
        r = await cli('scan', 'list');
      } finally {
        delete process.env.DIFFUSE_REDIS_URL;
      }
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, /no scans on this Redis/);
      assert.ok(!r.err.includes('pa55-w0rd-secret') && !r.out.includes('pa55-w0rd-secret'));
    } finally {
      await locked.stop();
    }
    // A list of paths, relative to the list's folder, with a comment and a blank line.
    const listFile = path.join(images, 'list.txt');
    writeFileSync(listFile, `# two of them\n${readdirSync(images).filter((f) => f.endsWith('.png')).slice(0, 2).join('\n')}\n\nmissing.png\n`);
    r = await cli('scan', listFile, '--redis', server.redis.url, '--metadata-only');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /: 3 files, 3 distinct images \(1 already known or unreadable\)/);
    // TLS: rediss:// with the server's CA trusted (NODE_EXTRA_CA_CERTS), and refused in one line without it.
    const tls = await startRedis({ password: 'tls-pass-9', tls: true });
    try {
      const run = (env: Record<string, string>) => spawnSync(process.execPath, ['bin/diffuse.js', 'scan', 'list', '--redis', tls.url], { encoding: 'utf8', env: { ...process.env, ...env } });
      let p = run({ NODE_EXTRA_CA_CERTS: path.join(TLS, 'ca.pem') });
      assert.equal(p.status, 0, p.stderr);
      assert.match(p.stderr, /no scans on this Redis/);
      p = run({});
      assert.equal(p.status, 1);
      assert.match(p.stderr.trim(), /^diffuse scan: cannot reach Redis at rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+ over TLS: .*certificate/);
      assert.equal(p.stderr.trim().split('\n').length, 1, p.stderr);
      assert.ok(!p.stderr.includes('tls-pass-9'));
    } finally {
      await tls.stop();
    }
    r = await cli('scan', images, '--redis', server.redis.url, '--key', key);
    assert.match(r.err, /--key is about a Diffuse model's watermark or detector: give the model's --run DIR too/);
  });
});
