/**
 * The studio's web server: a fixed set of files on 127.0.0.1 (never 0.0.0.0 unless asked), with
 * the headers that make the page cross-origin isolated (so onnxruntime-web may use wasm threads).
 * Every path is looked up in a table of routes; anything else, a path with `..` included, is 404,
 * and no directory is ever listed. A request whose Host header is not the address the server
 * listens on is refused: a web page elsewhere could otherwise point its own name at 127.0.0.1 (DNS
 * rebinding) and read the studio as if it were its own origin.
 */
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { OptionError } from '../engine/errors.js';

/** What a route serves: bytes (or a function making them), or a file streamed from disk, with a content type. */
export type Route = { type: string; body: Uint8Array | string | (() => Promise<Uint8Array | string>) } | { type: string; file: string };

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.onnx': 'application/octet-stream',
  '.png': 'image/png',
  '.css': 'text/css; charset=utf-8',
};

/** A route for a file on disk, streamed when asked for (a model's weights may be gigabytes). */
export function fileRoute(file: string): Route {
  return { type: TYPES[path.extname(file)] ?? 'application/octet-stream', file };
}

/** Headers on every response: cross-origin isolation, no caching, no sniffing. */
export const HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
};

/** Answers with a JSON body (and the headers every response carries). */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...HEADERS, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
}

/** Reads a request body up to `limit` bytes; undefined when it is larger. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Answers 403 (and returns true) for a request that another web page sent: its Origin is not the
 * studio's own. The Host header is already checked, so the studio's origin is http://HOST.
 */
export function refuseForeignOrigin(req: IncomingMessage, res: ServerResponse, what: string): boolean {
  const origin = req.headers.origin;
  if (origin === undefined || origin === `http://${req.headers.host}`) return false;
  sendJson(res, 403, { error: `requests from ${origin} are refused; only the studio's own page may ${what}` });
  return true;
}

export interface StaticServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** Whether a listen address accepts connections on every interface (then any Host may be right). */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

/** The Host headers a server on host:port answers: its own address, and localhost for a loopback address. */
export function allowedHosts(host: string, port: number): Set<string> {
  const bare = host.replace(/^\[|\]$/g, '');
  const name = bare.includes(':') ? `[${bare}]` : bare;
  const out = new Set([`${name}:${port}`.toLowerCase()]);
  if (bare === '127.0.0.1' || bare === '::1' || bare === 'localhost') for (const h of ['localhost', '127.0.0.1', '[::1]']) out.add(`${h}:${port}`);
  return out;
}

/** Serves `routes` (exact paths such as '/', '/app.js') on host:port; resolves once listening. */
export async function serveRoutes(routes: ReadonlyMap<string, Route>, o: { host?: string; port?: number; handle?: (req: IncomingMessage, res: ServerResponse) => Promise<boolean> } = {}): Promise<StaticServer> {
  const host = o.host ?? '127.0.0.1';
  let hosts: Set<string> | undefined;
  const server = createServer((req, res) => {
    void (async () => {
      try {
        if (hosts && !hosts.has(String(req.headers.host ?? '').toLowerCase())) {
          res.writeHead(421, { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8' }).end(`this server answers only requests for ${[...hosts][0]}\n`);
          return;
        }
        if (o.handle && (await o.handle(req, res))) return;
        const url = new URL(req.url ?? '/', 'http://localhost');
        const route = req.method === 'GET' || req.method === 'HEAD' ? routes.get(url.pathname) : undefined;
        if (!route) {
          res.writeHead(404, { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
          return;
        }
        if ('file' in route) {
          // Checked when asked for: a file replaced by something else since the server started is not served.
          const st = await stat(route.file);
          if (!st.isFile()) throw new Error('not a regular file');
          res.writeHead(200, { ...HEADERS, 'Content-Type': route.type, 'Content-Length': st.size });
          if (req.method === 'HEAD') res.end();
          else await pipeline(createReadStream(route.file), res);
          return;
        }
        const body = typeof route.body === 'function' ? await route.body() : route.body;
        res.writeHead(200, { ...HEADERS, 'Content-Type': route.type, 'Content-Length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      } catch (e) {
        if (!res.headersSent) res.writeHead(500, { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8' });
        res.end(`error: ${(e as Error).message}\n`);
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const port = o.port ?? 8080;
      if (e.code === 'EADDRINUSE') reject(new OptionError(`port ${port} on ${host} is in use; try \`port\` ${port + 1}`));
      else if (e.code === 'EACCES') reject(new Error(`no permission to listen on port ${port}; try a port above 1024`));
      else reject(e);
    });
    server.listen(o.port ?? 8080, host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (o.port ?? 8080);
  if (!isWildcardHost(host)) hosts = allowedHosts(host, port);
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
