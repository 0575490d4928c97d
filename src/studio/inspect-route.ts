/**
 * POST /api/inspect: the Inspect tab's request. The body is the dropped file's bytes; the server
 * writes them to a private temporary folder, runs the same Inspector as `diffuse inspect`, answers
 * with the report and its HTML page, and deletes the copy. The model loads on the first request,
 * and requests are inspected one at a time. Requests from other origins are refused, so that no
 * other web page open in the browser can use the studio's server.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { Inspector, reportHtml } from '../inspect/index.js';
import { readBody, refuseForeignOrigin, sendJson } from './server.js';

/** The largest file the tab accepts. */
export const MAX_INSPECT_BYTES = 50 * 1024 * 1024;
/** Uploads held at once (being read or waiting for their turn); more are answered 503. */
export const MAX_PENDING_UPLOADS = 4;

/** A file name safe to use inside the temporary folder: its last part, plain characters only. */
function safeName(header: string | string[] | undefined): string {
  let name = 'image';
  try {
    if (typeof header === 'string' && header) name = decodeURIComponent(header);
  } catch {
    // A malformed name: keep the default.
  }
  return path.basename(name).replace(/[^\w.-]+/g, '_').replace(/^\.+/, '').slice(-100) || 'image';
}

/**
 * The route's handler: `open` makes the Inspector on the first request (a run's, or a model
 * folder's); `name` is the run or folder the report pages name; uploads are written under `workDir`.
 */
export function inspectHandler(name: string, workDir: string, open: () => Promise<Inspector>): { handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>; release(): Promise<void> } {
  let inspector: Promise<Inspector> | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let pending = 0;
  return {
    async handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/api/inspect') return false;
      if (req.method !== 'POST') {
        sendJson(res, 405, { error: 'POST an image file to /api/inspect' });
        return true;
      }
      if (refuseForeignOrigin(req, res, 'inspect')) return true;
      // Refused before a byte of the body is read: an announced size over the limit, or too many uploads in hand.
      const announced = Number(req.headers['content-length'] ?? NaN);
      if (announced > MAX_INSPECT_BYTES) {
        res.setHeader('Connection', 'close');
        sendJson(res, 413, { error: `the file is larger than ${MAX_INSPECT_BYTES / 1024 / 1024} MB` });
        req.destroy();
        return true;
      }
      if (pending >= MAX_PENDING_UPLOADS) {
        res.setHeader('Retry-After', '5');
        sendJson(res, 503, { error: `${pending} files are already being inspected; try again when they are done` });
        return true;
      }
      pending++;
      try {
        return await inspectBody(req, res);
      } finally {
        pending--;
      }
    },
    async release() {
      await queue;
      if (inspector) await (await inspector).release();
    },
  };

  async function inspectBody(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const body = await readBody(req, MAX_INSPECT_BYTES);
    if (!body) {
      sendJson(res, 413, { error: `the file is larger than ${MAX_INSPECT_BYTES / 1024 / 1024} MB` });
      return true;
    }
    if (!body.length) {
      sendJson(res, 400, { error: 'the request holds no file' });
      return true;
    }
    const fileName = safeName(req.headers['x-file-name']);
    const task = queue.then(async () => {
      inspector ??= open();
      const dir = await mkdtemp(path.join(workDir, 'inspect-'));
      try {
        const file = path.join(dir, fileName);
        await writeFile(file, body);
        const { report, pictures } = await (await inspector).inspect(file, { pictures: true });
        report.file = fileName;
        return { report, html: reportHtml([{ report, pictures: pictures ?? {} }], { run: name, created: new Date().toISOString() }) };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
    queue = task.catch(() => undefined);
    try {
      sendJson(res, 200, await task);
    } catch (e) {
      sendJson(res, 500, { error: `could not inspect ${fileName}: ${(e as Error).message.split('\n')[0]}` });
    }
    return true;
  }
}
