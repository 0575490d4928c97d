/**
 * `diffuse studio`: a local page to watch diffusion happen. The run is exported once (model.onnx
 * for onnxruntime-web), the page's TypeScript is bundled from src/ with esbuild (Diffuse's own
 * schedulers and noise generator, not rewritten), and onnxruntime-web's files are served from
 * node_modules.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../data/index.js';
import { EXPORT_FILES, exportRun } from '../run/export.js';
import { readRunConfig } from '../run/run.js';
import { tokenizerConfigPath, tokenizerPath } from '../run/text.js';
import { DETECTOR_FILE } from '../inspect/index.js';
import type { InspectorOptions } from '../inspect/index.js';
import type { StudioInfo } from './info.js';
import { inspectHandler } from './inspect-route.js';
import { STUDIO_HTML } from './page/html.js';
import { Route, StaticServer, fileRoute, serveRoutes } from './server.js';

export interface StudioOptions {
  run: string;
  port?: number;
  host?: string;
  /** What the Inspect tab checks with: a watermark key, trust anchors, the device, the geometric search. */
  inspect?: Pick<InspectorOptions, 'key' | 'trustAnchors' | 'device' | 'geometric'>;
  onProgress?: (message: string) => void;
}

export interface Studio extends StaticServer {
  /** Stops the server and removes the temporary export. */
  stop(): Promise<void>;
}

/** The page's bundle: src/studio/page/main.ts (or its compiled .js in a package) with its imports. */
async function bundlePage(): Promise<string> {
  const here = fileURLToPath(import.meta.url);
  const entry = path.join(path.dirname(here), 'page', `main${path.extname(here)}`);
  const esbuild = await import('esbuild');
  const out = await esbuild.build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, logLevel: 'silent', minify: false });
  return out.outputFiles[0].text;
}

/** Starts the studio for a run; resolves once the page can be opened. */
export async function startStudio(o: StudioOptions): Promise<Studio> {
  const say = o.onProgress ?? (() => {});
  const config = readRunConfig(o.run);
  if (config.latent) throw new Error(`${o.run} is a latent run; the studio does not run latent runs yet (sample it with diffuse sample --run ${o.run})`);
  const exportDir = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-'));
  try {
    say('exporting the model');
    await exportRun(o.run, exportDir, { batch: 1 });
    say('bundling the page');
    const app = await bundlePage();
    const m = config.model;
    const shape: [number, number, number] = [m.inChannels, m.imageSize, m.imageSize];
    const per = shape[0] * shape[1] * shape[2];
    let images: number[][] = [];
    try {
      const builtin = config.data.source === 'mnist' || config.data.source === 'fashion-mnist';
      const d = await loadDataset(config.data.source, builtin ? 'test' : 'train', { size: config.data.size, channels: config.data.channels, limit: 8 });
      if (d.channels * d.height * d.width === per) images = Array.from({ length: Math.min(8, d.count) }, (_, k) => Array.from(d.images.subarray(k * per, (k + 1) * per)));
    } catch {
      // The data set is not on this machine: the Forward tab shows a sample of noise instead.
    }
    if (!images.length) images = [Array.from({ length: per }, (_, i) => (i % m.imageSize < m.imageSize / 2 ? -1 : 1))];
    const calibration = path.join(o.run, DETECTOR_FILE);
    const info: StudioInfo = {
      run: path.basename(path.resolve(o.run)),
      config,
      shape,
      conditioning: config.text ? 'text' : m.numClasses !== undefined ? 'class' : 'none',
      images,
      inspect: { key: Boolean(o.inspect?.key), trust: Boolean(o.inspect?.trustAnchors), detector: existsSync(calibration) ? 'calibrated' : `no ${DETECTOR_FILE} in the run; make one with diffuse detector calibrate` },
    };
    const ortDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
    const routes = new Map<string, Route>([
      ['/', { type: 'text/html; charset=utf-8', body: STUDIO_HTML }],
      ['/app.js', { type: 'text/javascript; charset=utf-8', body: app }],
      ['/studio.json', { type: 'application/json', body: JSON.stringify(info) }],
      ['/model/model.onnx', fileRoute(path.join(exportDir, EXPORT_FILES.model))],
      ['/model/export.json', fileRoute(path.join(exportDir, EXPORT_FILES.config))],
    ]);
    // A text run's tokenizer, for prompts typed in the page.
    for (const f of [tokenizerPath(exportDir), tokenizerConfigPath(exportDir)]) if (existsSync(f)) routes.set(`/model/${path.basename(f)}`, fileRoute(f));
    // onnxruntime-web fetches its wasm build and its loader by name from wasmPaths.
    for (const f of readdirSync(ortDir)) if (/^ort-wasm-simd-threaded(\.jsep)?\.(mjs|wasm)$/.test(f)) routes.set(`/ort/${f}`, fileRoute(path.join(ortDir, f)));
    say('starting the server');
    const inspect = inspectHandler(o.run, exportDir, o.inspect ?? {});
    const server = await serveRoutes(routes, { host: o.host, port: o.port, handle: inspect.handle });
    return {
      ...server,
      stop: async () => {
        await server.close();
        await inspect.release();
        rmSync(exportDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(exportDir, { recursive: true, force: true });
    throw e;
  }
}
