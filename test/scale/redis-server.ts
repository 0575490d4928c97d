/**
 * A real redis-server for the tests (Debian's, installed by .ci/run), on 127.0.0.1 and a free
 * port, with its data in a temporary folder and the append-only file on, so that it can be
 * stopped and started again with its data, as a restarted production server would be.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before } from 'node:test';

export interface TestRedis {
  url: string;
  port: number;
  /** Stops the server gracefully (it writes its append-only file) and starts it again on the same port and data. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once the server answers PING (with the password, if any). */
async function ready(port: number, password?: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection({ host: '127.0.0.1', port });
      c.once('error', () => resolve(false));
      c.once('connect', () => c.write(`${password ? `AUTH ${password}\r\n` : ''}PING\r\n`));
      c.on('data', (d) => {
        if (d.toString().includes('PONG')) {
          c.end();
          resolve(true);
        }
      });
      setTimeout(() => (c.destroy(), resolve(false)), 500);
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start (is Debian's redis-server installed? .ci/run installs it)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * `appendfsync`: 'always' (the tests: no write lost at a restart) or 'everysec' (Redis's default,
 * the benches). `tls`: listen with TLS only, on test/fixtures/tls's certificate for 127.0.0.1
 * (the URL is then rediss://; clients trust the test CA through NODE_EXTRA_CA_CERTS).
 */
/** The test certificates (test/fixtures/tls/make_tls_fixtures.sh). */
export const TLS = path.resolve(import.meta.dirname, '..', 'fixtures', 'tls');

/** Resolves once a TLS server accepts connections (the handshake is not checked here). */
async function readyTls(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection({ host: '127.0.0.1', port });
      c.once('error', () => resolve(false));
      c.once('connect', () => (c.destroy(), resolve(true)));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`redis-server with TLS on port ${port} did not start`);
}

export async function startRedis(o: { password?: string; appendfsync?: 'always' | 'everysec'; tls?: boolean } = {}): Promise<TestRedis> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'diffuse-redis-'));
  let proc: ChildProcess | undefined;
  const launch = async () => {
    const tlsArgs = ['--port', '0', '--tls-port', String(port), '--tls-cert-file', path.join(TLS, 'server.pem'), '--tls-key-file', path.join(TLS, 'server-key.pem'), '--tls-ca-cert-file', path.join(TLS, 'ca.pem'), '--tls-auth-clients', 'no'];
    const args = [...(o.tls ? tlsArgs : ['--port', String(port)]), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', o.appendfsync ?? 'always', '--save', '', '--maxmemory-policy', 'noeviction', ...(o.password ? ['--requirepass', o.password] : [])];
    proc = spawn('redis-server', args, { stdio: 'ignore' });
    proc.once('error', () => {});
    if (o.tls) await readyTls(port);
    else await ready(port, o.password);
  };
  const halt = async () => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  };
  await launch();
  return {
    port,
    url: `${o.tls ? 'rediss' : 'redis'}://${o.password ? `:${o.password}@` : ''}127.0.0.1:${port}`,
    restart: async (downMs = 500) => {
      await halt();
      await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
    stop: async () => {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A server for one test file: started before its tests, stopped (and `cleanup` run) after them. */
export function redisForTests(cleanup: () => void = () => {}): { readonly redis: TestRedis } {
  const holder: { redis?: TestRedis } = {};
  before(async () => {
    holder.redis = await startRedis();
  });
  after(async () => {
    await holder.redis?.stop();
    cleanup();
  });
  return {
    get redis(): TestRedis {
      if (!holder.redis) throw new Error('the test Redis is not started yet');
      return holder.redis;
    },
  };
}
