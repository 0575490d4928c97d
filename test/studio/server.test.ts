import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { serveRoutes } from '../../src/studio/server.js';

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
      await assert.rejects(serveRoutes(new Map(), { port }), new RegExp(`port ${port} on 127.0.0.1 is in use; try --port ${port + 1}`));
    } finally {
      await s.close();
    }
  });
});
