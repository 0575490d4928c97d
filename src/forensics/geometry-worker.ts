/**
 * One thread of the geometric search (see geometry-threads.ts): answers each request, an image's
 * inverted noise, with detectInMovedNoise's result or the message of the error it threw.
 */
import { parentPort } from 'node:worker_threads';
import { detectInMovedNoise } from './geometry-search.js';
import type { SearchRequest, SearchReply } from './geometry-threads.js';

const port = parentPort;
if (!port) throw new Error('geometry-worker.ts runs as a worker thread of geometry-threads.ts');
port.on('message', (r: SearchRequest) => {
  let reply: SearchReply;
  try {
    reply = { result: detectInMovedNoise(r.key, r.noise, r.shape, r.options) };
  } catch (e) {
    reply = { error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
});
