/**
 * `diffuse studio`: a local page to watch diffusion happen. For a run, the run is exported once
 * (diffuse export's model folder) and the page runs it with SamplingPipeline in onnxruntime-web;
 * a Diffuse export is served as it is. For a Stable Diffusion folder (Optimum's layout), the
 * folder's files are served as they are and the page opens them with the same
 * StableDiffusionPipeline that Node runs.
 * The page's TypeScript is bundled from src/ with esbuild (Diffuse's own schedulers, noise
 * generator and pipelines, not rewritten), and onnxruntime-web's files are served from node_modules.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../data/index.js';
import { conditioningOf } from '../run/conditioning.js';
import { exportRun } from '../run/export.js';
import { isExportFolder, readExportFolder } from '../run/export-folder.js';
import { DETECTOR_FILE, Inspector } from '../inspect/index.js';
import type { InspectorOptions } from '../inspect/index.js';
import { StableDiffusionPipeline, readModelConfig } from '../latent/index.js';
import { folderFiles } from '../components/index.js';
import { readSchedulerConfig } from '../samplers/from-config.js';
import type { InspectChecks, ModelStudioInfo, RunStudioInfo, StudioInfo } from './info.js';
import { generateHandler } from './generate-route.js';
import { inspectHandler } from './inspect-route.js';
import { STUDIO_HTML } from './page/html.js';
import { Route, StaticServer, fileRoute, serveRoutes } from './server.js';

export interface StudioOptions {
  /** A run folder (diffuse train); or give `model`. */
  run?: string;
  /** A Stable Diffusion-class model folder of ONNX components (Optimum's layout); or give `run`. */
  model?: string;
  port?: number;
  host?: string;
  /** What the Inspect tab checks with: a watermark key, trust anchors, the device, the geometric search (runs only). */
  inspect?: Pick<InspectorOptions, 'key' | 'trustAnchors' | 'device' | 'geometric'>;
  onProgress?: (message: string) => void;
}

export interface Studio extends StaticServer {
  /** Stops the server and removes the temporary files. */
  stop(): Promise<void>;
}

/** The component folders of a model folder that the page may read. */
const MODEL_COMPONENTS = ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder', 'tokenizer', 'scheduler'] as const;

/** The page's bundle: src/studio/page/main.ts (or its compiled .js in a package) with its imports. */
async function bundlePage(): Promise<string> {
  const here = fileURLToPath(import.meta.url);
  const entry = path.join(path.dirname(here), 'page', `main${path.extname(here)}`);
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
    minify: false,
  });
  return out.outputFiles[0].text;
}

/** The routes every studio has: the page, its bundle, /studio.json, and onnxruntime-web's files. */
async function pageRoutes(info: StudioInfo): Promise<Map<string, Route>> {
  const app = await bundlePage();
  const ortDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
  const routes = new Map<string, Route>([
    ['/', { type: 'text/html; charset=utf-8', body: STUDIO_HTML }],
    ['/app.js', { type: 'text/javascript; charset=utf-8', body: app }],
    ['/studio.json', { type: 'application/json', body: JSON.stringify(info) }],
  ]);
  // onnxruntime-web fetches its wasm build and its loader by name from wasmPaths.
  for (const f of readdirSync(ortDir)) if (/^ort-wasm-simd-threaded(\.jsep)?\.(mjs|wasm)$/.test(f)) routes.set(`/ort/${f}`, fileRoute(path.join(ortDir, f)));
  return routes;
}

/** Starts the studio for a run or a model folder; resolves once the page can be opened. */
export async function startStudio(o: StudioOptions): Promise<Studio> {
  if ((o.run === undefined) === (o.model === undefined)) throw new Error('startStudio: give a run or a model folder (one of them)');
  const work = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-'));
  try {
    // A Diffuse export given as a model folder is a run's studio over its files.
    const { routes, handlers } = o.model !== undefined && !isExportFolder(o.model) ? await modelStudio(o.model, work, o) : await runStudio((o.run ?? o.model) as string, work, o);
    (o.onProgress ?? (() => {}))('starting the server');
    const handle = async (req: IncomingMessage, res: ServerResponse) => {
      for (const h of handlers) if (await h.handle(req, res)) return true;
      return false;
    };
    const server = await serveRoutes(routes, { host: o.host, port: o.port, handle });
    return {
      ...server,
      stop: async () => {
        await server.close();
        for (const h of handlers) await h.release();
        rmSync(work, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(work, { recursive: true, force: true });
    throw e;
  }
}

/**
 * A run, exported to `work` for onnxruntime-web, or what `diffuse export` wrote (served as it is),
 * with a few images of its data set.
 */
async function runStudio(run: string, work: string, o: StudioOptions) {
  const say = o.onProgress ?? (() => {});
  const exported = isExportFolder(run);
  if (!exported) {
    say('exporting the model');
    await exportRun(run, work, { batch: 1 });
  }
  const folder = exported ? run : work;
  const manifest = readExportFolder(folder);
  const config = manifest.run;
  const m = config.model;
  // A latent run's pictures are its autoencoder's images; its U-Net's shape is the latents'.
  const shape: [number, number, number] = manifest.latent?.imageShape ?? [m.inChannels, m.imageSize, m.imageSize];
  const per = shape[0] * shape[1] * shape[2];
  let images: number[][] = [];
  try {
    const builtin = config.data.source === 'mnist' || config.data.source === 'fashion-mnist';
    const d = await loadDataset(config.data.source, builtin ? 'test' : 'train', { size: config.data.size, channels: config.data.channels, limit: 8 });
    if (d.channels * d.height * d.width === per) images = Array.from({ length: Math.min(8, d.count) }, (_, k) => Array.from(d.images.subarray(k * per, (k + 1) * per)));
  } catch {
    // The data set is not on this machine: the Forward tab shows a sample of noise instead.
  }
  if (!images.length) images = [Array.from({ length: per }, (_, i) => (i % shape[2] < shape[2] / 2 ? -1 : 1))];
  const calibration = path.join(run, DETECTOR_FILE);
  const { files, routes } = serveComponents(folder);
  const info: RunStudioInfo = {
    kind: 'run',
    run: path.basename(path.resolve(run)),
    config,
    shape,
    files,
    ...(manifest.latent ? { latent: { scalingFactor: manifest.latent.scalingFactor, latentShape: manifest.latent.latentShape } } : {}),
    conditioning: conditioningOf(config),
    images,
    inspect: checks(o, existsSync(calibration) ? 'calibrated' : `no ${DETECTOR_FILE} in the run; make one with diffuse detector calibrate`),
  };
  say('bundling the page');
  for (const [p, r] of await pageRoutes(info)) routes.set(p, r);
  const inspect = inspectHandler(info.run, work, () => Inspector.open(run, o.inspect ?? {}));
  return { routes, handlers: [inspect] };
}

/**
 * The files of a model folder that the page may read, as routes under /model/: model_index.json
 * and the regular files of its component folders. Nothing else in the folder is served, and no
 * folder is listed.
 */
function serveComponents(dir: string): { files: Record<string, string[]>; routes: Map<string, Route> } {
  const files: Record<string, string[]> = { '': ['model_index.json'] };
  const routes = new Map<string, Route>();
  for (const component of MODEL_COMPONENTS) {
    const folder = path.join(dir, component);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) continue;
    // Regular files only (a symbolic link to one, as Hugging Face's cache writes, counts): never a FIFO or a device.
    files[component] = readdirSync(folder).filter((f) => /^[\w.-]+$/.test(f) && statSync(path.join(folder, f)).isFile()).sort();
  }
  for (const [component, names] of Object.entries(files)) for (const f of names) routes.set(`/model/${component ? `${component}/` : ''}${f}`, fileRoute(path.join(dir, component, f)));
  return { files, routes };
}

/**
 * A model folder: its configs checked here (the page would otherwise fail later, in the browser),
 * then its files served under /model/ as they are: model_index.json and the regular files of the
 * component folders. Nothing else in the folder is served, and no folder is listed.
 */
async function modelStudio(dir: string, work: string, o: StudioOptions) {
  const say = o.onProgress ?? (() => {});
  if (!existsSync(dir)) throw new Error(`${dir}: no such model folder`);
  if (o.inspect?.geometric) throw new Error(`${dir}: the studio checks a model folder's watermark as the image is; the geometric search is for runs (the library's detectWatermark runs it for folders)`);
  say('reading the model folder');
  const config = await readModelConfig(folderFiles(dir));
  const { files, routes } = serveComponents(dir);
  const calibration = path.join(dir, DETECTOR_FILE);
  const info: ModelStudioInfo = {
    kind: 'model',
    run: path.basename(path.resolve(dir)),
    files,
    defaultSize: config.defaultSize,
    vaeScale: config.vaeScale,
    inpainting: config.inpainting,
    scheduler: readSchedulerConfig(config.schedulerConfig).name,
    unetBytes: (files.unet ?? []).reduce((sum, f) => sum + statSync(path.join(dir, 'unet', f)).size, 0),
    inspect: checks(o, existsSync(calibration) ? 'calibrated' : `no ${DETECTOR_FILE} in the folder; make one with diffuse detector calibrate --model`),
  };
  say('bundling the page');
  for (const [p, r] of await pageRoutes(info)) routes.set(p, r);
  // One pipeline in Node for both tabs, opened when first needed (SD 1.5 takes gigabytes).
  let pipe: Promise<StableDiffusionPipeline> | undefined;
  const shared = () => (pipe ??= StableDiffusionPipeline.fromPretrained(dir, { device: o.inspect?.device ?? 'cpu' }).catch((e: Error) => {
    pipe = undefined;
    throw e;
  }));
  const inspect = inspectHandler(info.run, work, async () => Inspector.openStableDiffusion(dir, o.inspect ?? {}, await shared()));
  const generate = generateHandler(shared, say);
  const release = { handle: async () => false, release: async () => void (await (await pipe?.catch(() => undefined))?.release()) };
  return { routes, handlers: [inspect, generate, release] };
}

function checks(o: StudioOptions, detector: string): InspectChecks {
  return { key: Boolean(o.inspect?.key), trust: Boolean(o.inspect?.trustAnchors), detector };
}
