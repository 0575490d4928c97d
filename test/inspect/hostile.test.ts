/**
 * Hostile files and requests, tried as an attacker would: a FIFO and a device in a folder, a
 * decompression bomb in the header and in a text chunk, control characters and spreadsheet
 * formulas in metadata, a foreign Host header, an oversized upload, absurd counts and key files.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { errorLine } from '../../src/cli/main.js';
import { DataError, InspectReport, inspectImage, readImage, readMetadata, reportText } from '../../src/index.js';
import { Inspector, csvRow } from '../../src/inspect/index.js';
import { validateKey } from '../../src/forensics/index.js';
import { serveRoutes } from '../../src/studio/server.js';
import { inspectHandler } from '../../src/studio/inspect-route.js';
import { startLine } from '../../src/cli/studio.js';
import { allowedHosts } from '../../src/studio/server.js';
import { cli } from '../cli/helpers.js';
import { tinyConfig } from '../train/helpers.js';
import { pngChunk } from '../provenance/tamper.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-hostile-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A PNG from raw chunks: IHDR with the given size, then `extra` chunks, a tiny IDAT and IEND. */
function craftPng(width: number, height: number, extra: Buffer[] = [], idat = deflateSync(Buffer.alloc(2))): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth 1
  ihdr[9] = 0; // greyscale
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), ...extra, pngChunk('IDAT', idat), pngChunk('IEND', Buffer.alloc(0))]);
}

const textChunk = (keyword: string, text: string) => pngChunk('tEXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));

describe('hostile files', () => {
  it('skips a FIFO and a link to a device in a folder with one line each, and inspects the rest', { timeout: 60_000 }, async () => {
    const dir = path.join(root, 'folder');
    mkdirSync(dir);
    execFileSync('mkfifo', [path.join(dir, 'b.png')]);
    symlinkSync('/dev/zero', path.join(dir, 'z.png'));
    await sharp({ create: { width: 20, height: 10, channels: 3, background: '#336699' } }).png().toFile(path.join(dir, 'a.png'));
    const r = await cli('inspect', dir, '--json');
    assert.equal(r.code, 0, r.err);
    const reports = r.out.split('\n').map((l) => JSON.parse(l) as InspectReport);
    assert.deepEqual(
      reports.map((x) => [path.basename(x.file), x.error ?? 'ok']),
      [
        ['a.png', 'ok'],
        ['b.png', 'a FIFO (named pipe), not an image file; skipped'],
        ['z.png', 'a device, not an image file; skipped'],
      ],
    );
    // The same guard for the commands that read one image.
    await assert.rejects(readImage(path.join(dir, 'b.png')), /a FIFO \(named pipe\), not an image file/);
    await assert.rejects(readImage(path.join(dir, 'z.png')), /a device, not an image file/);
  });

  it('refuses to decode a 16000x16000 PNG of a few kilobytes, from its header, and still reads its file-level signals', async () => {
    const rows = Buffer.alloc(16000 * (1 + 2000)); // every row: filter byte 0 and 2000 zero bytes
    const file = path.join(root, 'bomb.png');
    writeFileSync(file, craftPng(16000, 16000, [textChunk('Software', 'NovelAI')], deflateSync(rows, { level: 9 })));
    await assert.rejects(readImage(file), (e: Error) => e instanceof DataError && /declares 16000x16000 pixels \(256 megapixels\), over the 50-megapixel decoding limit; not decoded/.test(e.message));
    const before = process.memoryUsage().rss;
    const r = await inspectImage(file);
    assert.equal(r.error, undefined);
    assert.deepEqual([r.width, r.height], [16000, 16000]);
    assert.equal(r.metadata?.generators[0]?.tool, 'NovelAI');
    assert.ok(process.memoryUsage().rss - before < 200e6, 'nothing was decoded');
  });

  it('does not expand a zTXt bomb beyond its limit, and says so', () => {
    const bomb = deflateSync(Buffer.alloc(64 * 1024 * 1024, 0x41), { level: 9 });
    const z = pngChunk('zTXt', Buffer.concat([Buffer.from('parameters'), Buffer.from([0, 0]), bomb]));
    const m = readMetadata(craftPng(4, 4, [z]));
    assert.deepEqual(m.generators, []);
    assert.match(m.problems.join(), /PNG zTXt "parameters": compressed text expands beyond 8388608 bytes; not expanded/);
  });

  it('escapes control characters from the file in the text report, and neutralises formulas in the CSV', async () => {
    const evil = 'a cat\u001b[2J\u001b[1;1H\n  verdict:     NOT GENERATED (forged line)\u202e\nSteps: 20, Sampler: Euler, Seed: 1';
    const file = path.join(root, 'evil\u001b[31m.png');
    writeFileSync(file, craftPng(4, 4, [textChunk('parameters', evil)]));
    const r = await inspectImage(file);
    assert.equal(r.metadata?.generators[0]?.prompt?.includes('\u001b'), true, 'the report keeps the raw value');
    const text = reportText(r);
    assert.doesNotMatch(text, /[\u0000-\u0008\u000b-\u001f\u007f\u202e]/, 'no control character reaches the terminal');
    assert.equal(text.split('\n').filter((l) => l.startsWith('  verdict:')).length, 1, 'one verdict line: the forged one stays inside the prompt');
    assert.match(text, /\\u001b\[2J/);
    const csv = csvRow({ file: '=HYPERLINK("http://x")', metadata: { generators: [{ tool: 'T', foundIn: 'x', prompt: '+cmd|calc', model: '@SUM(1)' }], fields: [], problems: [] } });
    assert.match(csv, /^"'=HYPERLINK\(""http:\/\/x""\)"/);
    assert.match(csv, /,'@SUM\(1\),/);
    assert.match(csv, /,'\+cmd\|calc,/);
  });
});

describe('hostile requests to the studio', () => {
  /** A raw request with the headers given. */
  function send(url: string, o: { method?: string; path?: string; headers?: Record<string, string | number>; body?: Buffer; hold?: boolean; setHost?: boolean }): Promise<{ status: number; body: string; req: ReturnType<typeof request> }> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: o.path ?? '/', method: o.method ?? 'GET', headers: o.headers, setHost: o.setHost ?? true }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, req }));
      });
      req.on('error', (e) => (o.hold ? undefined : reject(e)));
      if (o.body) req.write(o.body);
      if (!o.hold) req.end();
    });
  }

  it("answers only its own Host (DNS rebinding), refuses an oversized upload by its Content-Length, and bounds uploads in hand", { timeout: 60_000 }, async () => {
    const handler = inspectHandler('no-run', root, () => Inspector.open(path.join(root, 'no-run')));
    const s = await serveRoutes(new Map([['/', { type: 'text/plain', body: 'hi' }]]), { port: 0, handle: handler.handle });
    const port = new URL(s.url).port;
    const held: ReturnType<typeof request>[] = [];
    try {
      assert.equal((await send(s.url, { headers: { Host: `127.0.0.1:${port}` } })).status, 200);
      assert.equal((await send(s.url, { headers: { Host: `localhost:${port}` } })).status, 200);
      for (const host of [`attacker.example:${port}`, 'attacker.example', `127.0.0.1:${Number(port) + 1}`]) {
        const r = await send(s.url, { headers: { Host: host } });
        assert.equal(r.status, 421, `Host '${host}': ${r.body}`);
      }
      assert.ok([400, 421].includes((await send(s.url, { setHost: false })).status), 'no Host header at all: refused (by Node itself for HTTP/1.1)');
      const origin = `http://127.0.0.1:${port}`;
      const big = await send(s.url, { method: 'POST', path: '/api/inspect', headers: { Host: `127.0.0.1:${port}`, Origin: origin, 'Content-Length': 60 * 1024 * 1024 }, body: Buffer.alloc(10), hold: true });
      assert.equal(big.status, 413);
      big.req.destroy();
      // Four uploads that never finish are held; a fifth is turned away at once.
      for (let i = 0; i < 4; i++) {
        const req = request({ host: '127.0.0.1', port, path: '/api/inspect', method: 'POST', headers: { Host: `127.0.0.1:${port}`, Origin: origin, 'Content-Length': 1000 } });
        req.on('error', () => undefined);
        req.write(Buffer.alloc(10));
        held.push(req);
      }
      await new Promise((r) => setTimeout(r, 300));
      const fifth = await send(s.url, { method: 'POST', path: '/api/inspect', headers: { Host: `127.0.0.1:${port}`, Origin: origin, 'Content-Length': 5 }, body: Buffer.alloc(5) });
      assert.equal(fifth.status, 503, fifth.body);
    } finally {
      for (const r of held) r.destroy();
      await s.close();
    }
  });
});

describe('the studio on another address', () => {
  it('warns in its start-up line that every machine on the network can use it on 0.0.0.0, and answers its own Host only otherwise', () => {
    assert.match(startLine('runs/x', 'http://0.0.0.0:8080/', '0.0.0.0'), /WARNING: on --host 0\.0\.0\.0 every machine on the network can use it/);
    assert.match(startLine('runs/x', 'http://[::]:8080/', '::'), /WARNING/);
    assert.doesNotMatch(startLine('runs/x', 'http://127.0.0.1:8080/', '127.0.0.1'), /WARNING/);
    assert.deepEqual([...allowedHosts('192.168.1.5', 8080)], ['192.168.1.5:8080']);
    assert.ok(allowedHosts('127.0.0.1', 8080).has('localhost:8080'));
    assert.ok(allowedHosts('::1', 9).has('[::1]:9'));
  });
});

describe('absurd arguments', () => {
  it('says in one line that --count 100000000 cannot fit, before any work', async () => {
    const run = path.join(root, 'run');
    mkdirSync(run);
    writeFileSync(path.join(run, 'config.json'), JSON.stringify(tinyConfig()));
    const r = await cli('sample', '--run', run, '--count', '100000000', '--out', path.join(root, 'g.png'));
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.err, /internal error/);
    assert.match(r.err, /--count 100000000: the grid would hold [\d.]+ GiB of images; at most \d+ images of this model fit in one run/);
  });

  it('names a key file whose scheme is an object without running anything on it', () => {
    for (const scheme of [{ toString: 1 }, { a: 1 }, null, [1], 7]) {
      let err: unknown;
      try {
        validateKey({ format: 'diffuse-watermark-key-1', scheme, secret: Buffer.alloc(32).toString('base64') }, 'k.json');
      } catch (e) {
        err = e;
      }
      const line = errorLine('inspect', err);
      assert.doesNotMatch(line, /internal error/, line);
      assert.match(line, /k\.json: a key whose "scheme" is a (object|null|list|number), not a name, which this version does not know/);
    }
  });
});
