/**
 * POST /api/generate: the Generate tab's "server" backend for a model folder. A Stable Diffusion
 * U-Net does not fit 32-bit WebAssembly (docs/BENCHMARKS.md, "In the browser"), so the page can
 * ask the studio's own server to run the folder's StableDiffusionPipeline in Node instead and
 * watch it step by step. The request is the tab's settings as JSON (a source image and mask as
 * base64 float32 for img2img and inpainting), checked before anything runs; the answer is a
 * stream of JSON lines: one per step with the latents, then the image, or an error. One request
 * runs at a time (the model already uses every core); a closed connection stops its run. Requests
 * from other origins are refused, as for /api/inspect.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StableDiffusionPipeline } from '../latent/index.js';
import type { LatentGenerateOptions, LatentImageBatch } from '../latent/index.js';
import { SCHEDULER_NAMES, SchedulerName } from '../samplers/registry.js';
import { readBody, refuseForeignOrigin, sendJson } from './server.js';

/** The largest request: a 2048 x 2048 source and its mask as base64 float32, with room to spare. */
export const MAX_GENERATE_BYTES = 80 * 1024 * 1024;
/** The most steps one request may ask for. */
export const MAX_GENERATE_STEPS = 500;
/** The longest side one request may ask for, in pixels. */
export const MAX_GENERATE_SIDE = 2048;

/** What the page sends. */
export interface GenerateRequest {
  mode: 'generate' | 'img2img' | 'inpaint';
  prompt: string;
  negativePrompt: string;
  guidance: number;
  steps: number;
  seed: number;
  width: number;
  height: number;
  /** '' for the folder's own scheduler, else one of Diffuse's names. */
  scheduler: string;
  strength?: number;
  /** [3, height, width] in [-1, 1], base64 of little-endian float32 (img2img, inpaint). */
  image?: string;
  /** [1, height, width], 1 = generate (inpaint). */
  mask?: string;
}

/** One line of the answer. */
export type GenerateLine =
  | { step: number; total: number; timestep: number; latents: string }
  | { done: true; image: string; shape: [number, number, number] }
  | { error: string };

const floats = (b64: string, n: number, what: string): Float32Array => {
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length !== 4 * n) throw new Error(`${what} has ${bytes.length} bytes, expected ${4 * n} (${n} float32 values)`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = bytes.readFloatLE(4 * i);
  if (out.some((v) => !Number.isFinite(v))) throw new Error(`${what} holds a value that is not a finite number`);
  return out;
};
const base64 = (x: Float32Array): string => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64');

/** A request checked: the source image and mask decoded. */
export type CheckedRequest = Omit<GenerateRequest, 'image' | 'mask'> & { image?: Float32Array; mask?: Float32Array };

/** Checks a request's fields (types, bounds, the image's and mask's sizes), naming the first that is wrong. */
export function checkGenerateRequest(body: unknown, vaeScale: number): CheckedRequest {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('the request is not a JSON object');
  const r = body as Record<string, unknown>;
  const text = (k: string) => {
    const v = r[k] ?? '';
    if (typeof v !== 'string' || v.length > 10_000) throw new Error(`${k} must be a string of at most 10,000 characters`);
    return v;
  };
  const number = (k: string, min: number, max: number, int = false, dflt?: number) => {
    const v = r[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (int && !Number.isInteger(v))) throw new Error(`${k} must be ${int ? 'a whole number' : 'a number'} from ${min} to ${max}`);
    return v;
  };
  const mode = r.mode ?? 'generate';
  if (mode !== 'generate' && mode !== 'img2img' && mode !== 'inpaint') throw new Error('mode must be generate, img2img or inpaint');
  const scheduler = r.scheduler ?? '';
  if (typeof scheduler !== 'string' || (scheduler !== '' && !SCHEDULER_NAMES.includes(scheduler as SchedulerName))) throw new Error(`scheduler must be '' (the folder's) or one of ${SCHEDULER_NAMES.join(', ')}`);
  const side = (k: string) => {
    const v = number(k, vaeScale, MAX_GENERATE_SIDE, true);
    if (v % vaeScale) throw new Error(`${k} must be a multiple of ${vaeScale} pixels`);
    return v;
  };
  const out: CheckedRequest = {
    mode,
    prompt: text('prompt'),
    negativePrompt: text('negativePrompt'),
    guidance: number('guidance', 0, 100, false, 7.5),
    steps: number('steps', 1, MAX_GENERATE_STEPS, true, 50),
    seed: number('seed', 0, 2 ** 53 - 1, true, 0),
    width: side('width'),
    height: side('height'),
    scheduler,
  };
  if (mode !== 'generate') {
    if (typeof r.image !== 'string') throw new Error(`${mode} needs the source image`);
    out.image = floats(r.image, 3 * out.width * out.height, 'image');
  }
  if (mode === 'img2img') out.strength = number('strength', 0, 1, false, 0.8);
  if (mode === 'inpaint') {
    if (typeof r.mask !== 'string') throw new Error('inpaint needs the mask');
    out.mask = floats(r.mask, out.width * out.height, 'mask');
  }
  return out;
}

/** The route's handler: the folder's pipeline from `open` (the studio opens it once, shares it with Inspect and releases it). */
export function generateHandler(open: () => Promise<StableDiffusionPipeline>, say: (message: string) => void = () => {}): { handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>; release(): Promise<void> } {
  /** The run in progress, if any; `stopping` makes it end at its next step. */
  let current: Promise<void> | undefined;
  let stopping = false;
  return {
    async handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/api/generate') return false;
      if (req.method !== 'POST') {
        sendJson(res, 405, { error: 'POST the settings as JSON to /api/generate' });
        return true;
      }
      if (refuseForeignOrigin(req, res, 'generate')) return true;
      if (Number(req.headers['content-length'] ?? NaN) > MAX_GENERATE_BYTES) {
        res.setHeader('Connection', 'close');
        sendJson(res, 413, { error: `the request is larger than ${MAX_GENERATE_BYTES / 1024 / 1024} MB` });
        req.destroy();
        return true;
      }
      if (current || stopping) {
        res.setHeader('Retry-After', '5');
        sendJson(res, 503, { error: stopping ? 'the studio is stopping' : 'the server is already generating an image; try again when it is done' });
        return true;
      }
      current = run(req, res);
      try {
        await current;
      } finally {
        current = undefined;
      }
      return true;
    },
    async release() {
      // The pipeline is the studio's to release, after this: a run in progress ends at its next step.
      stopping = true;
      await current?.catch(() => undefined);
    },
  };

  async function run(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, MAX_GENERATE_BYTES);
    if (!body) return sendJson(res, 413, { error: `the request is larger than ${MAX_GENERATE_BYTES / 1024 / 1024} MB` });
    let p: StableDiffusionPipeline;
    let o: CheckedRequest;
    try {
      p = await open();
    } catch (e) {
      return sendJson(res, 500, { error: `could not open the model: ${(e as Error).message.split('\n')[0]}` });
    }
    try {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        throw new Error('the request is not valid JSON');
      }
      o = checkGenerateRequest(parsed, p.vaeScale);
    } catch (e) {
      return sendJson(res, 400, { error: (e as Error).message });
    }
    // From here the answer is a stream of lines; a failure is its last line.
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
    const line = (l: GenerateLine) => res.write(`${JSON.stringify(l)}\n`);
    let gone = false;
    res.on('close', () => (gone = true));
    let stepsDone = 0;
    try {
      const common: LatentGenerateOptions = {
        prompt: o.prompt,
        negativePrompt: o.negativePrompt,
        guidance: o.guidance,
        steps: o.steps,
        seed: o.seed,
        ...(o.scheduler ? { scheduler: p.schedulerNamed(o.scheduler as SchedulerName) } : {}),
        onStep: (s) => {
          // The page left: stop here rather than run the remaining steps for nobody.
          if (gone) throw new Error('the page closed the connection');
          if (stopping) throw new Error('the studio is stopping');
          line({ step: s.index, total: s.total, timestep: s.timestep, latents: base64(s.latents) });
          stepsDone = s.index + 1;
        },
      };
      let out: LatentImageBatch;
      const { width, height } = o;
      if (o.mode === 'generate') out = await p.generate({ ...common, width, height });
      else {
        const image = { data: o.image as Float32Array, count: 1, shape: [3, height, width] as const };
        if (o.mode === 'img2img') out = await p.img2img({ ...common, image, strength: o.strength });
        else out = await p.inpaint({ ...common, image, mask: { data: o.mask as Float32Array, shape: [1, height, width] } });
      }
      line({ done: true, image: base64(out.data), shape: out.shape });
    } catch (e) {
      if (gone || stopping) say(`generation stopped after ${stepsDone} of ${o.steps} steps: ${gone ? 'the page left' : 'the studio is stopping'}`);
      else line({ error: (e as Error).message.split('\n')[0] });
    }
    res.end();
  }
}
