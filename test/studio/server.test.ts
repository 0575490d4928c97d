import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { serveRoutes } from '../../src/studio/server.js';
import { cli } from '../cli/helpers.js';
import { tinyConfig } from '../train/helpers.js';

/** A raw GET: the path goes out exactly as written (no client-side normalisation of '..'). */
function get(url: string, rawPath: string, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: rawPath, method }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('studio server', () => {
  it('serves its routes only, on 127.0.0.1, cross-origin isolated; everything else is 404', async () => {
    const s = await serveRoutes(new Map([['/', { type: 'text/html', body: '<p>hi</p>' }], ['/app.js', { type: 'text/javascript', body: async () => 'x()' }]]), { port: 0 });
    try {
      const addr = s.server.address();
      assert.ok(typeof addr === 'object' && addr?.address === '127.0.0.1', 'listens on 127.0.0.1');
      const home = await get(s.url, '/');
      assert.equal(home.status, 200);
      assert.equal(home.body, '<p>hi</p>');
      assert.equal(home.headers['cross-origin-opener-policy'], 'same-origin');
      assert.equal(home.headers['cross-origin-embedder-policy'], 'require-corp');
      assert.equal((await get(s.url, '/app.js')).body, 'x()');
      for (const p of ['/nope', '/../package.json', '/app.js/../../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '//etc/passwd', '/src/', '/node_modules/']) {
        const r = await get(s.url, p);
        assert.equal(r.status, 404, p);
        assert.ok(!r.body.includes('"name"') && !r.body.includes('root:'), `${p} leaks nothing`);
      }
      assert.equal((await get(s.url, '/', 'POST')).status, 404);
      // The same port again: a clear error with another port to try.
      const port = Number(new URL(s.url).port);
      await assert.rejects(serveRoutes(new Map(), { port }), new RegExp(`port ${port} on 127.0.0.1 is in use; try \\x60port\\x60 ${port + 1}`));
    } finally {
      await s.close();
    }
  });
});

describe('diffuse studio: bad run folders', () => {
  it('says in one line what is missing, before anything is served', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-bad-'));
    try {
      let r = await cli('studio', '--run', path.join(root, 'nowhere'), '--port', '0');
      assert.equal(r.code, 1);
      assert.match(r.err, /nowhere: not a run folder \(no config\.json\)/);
      // A config but no checkpoint yet.
      writeFileSync(path.join(root, 'config.json'), JSON.stringify(tinyConfig()));
      r = await cli('studio', '--run', root, '--port', '0');
      assert.equal(r.code, 1);
      assert.match(r.err, /no checkpoint yet/);
      r = await cli('studio', '--run', root, '--port', '99999');
      assert.equal(r.code, 1);
      assert.match(r.err, /--port/);
      // A run or a model folder, one of them; a model folder that is not one says which file is missing.
      for (const args of [[], ['--run', root, '--model', root]]) {
        r = await cli('studio', ...args, '--port', '0');
        assert.equal(r.code, 1, args.join(' '));
        assert.match(r.err, /give --run DIR .* or --model DIR .*, one of them/);
      }
      r = await cli('studio', '--model', root, '--port', '0');
      assert.equal(r.code, 1);
      assert.match(r.err, /model_index\.json: no such file/);
      r = await cli('studio', '--model', root, '--geometric', '--port', '0');
      assert.equal(r.code, 1);
      assert.match(r.err, /--geometric searches a run's images/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
