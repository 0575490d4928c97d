/**
 * `diffuse studio`: a local page to watch diffusion happen. The run is exported once (model.onnx
 * for onnxruntime-web), the page's TypeScript is bundled from src/ with esbuild (Diffuse's own
 * schedulers and noise generator, not rewritten), and onnxruntime-web's files are served from
 * node_modules.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../data/index.js';
import { EXPORT_FILES, exportRun } from '../run/export.js';
import { defaultEta, defaultSpacing, schedulerConfigOf } from '../run/config.js';
import { readRunConfig } from '../run/run.js';
import { SCHEDULER_NAMES } from '../samplers/registry.js';
import type { TimestepSpacing } from '../samplers/common.js';
import type { StudioInfo } from './info.js';
import { STUDIO_HTML } from './page/html.js';
import { Route, StaticServer, fileRoute, serveRoutes } from './server.js';

export interface StudioOptions {
  run: string;
  port?: number;
  host?: string;
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
    const spacing: Partial<Record<string, TimestepSpacing>> = {};
    for (const s of SCHEDULER_NAMES) {
      const v = defaultSpacing(config, s);
      if (v) spacing[s] = v;
    }
    const info: StudioInfo = {
      run: path.basename(path.resolve(o.run)),
      shape,
      conditioning: config.text ? 'text' : m.numClasses !== undefined ? 'class' : 'none',
      schedulerConfig: schedulerConfigOf(config),
      defaultEta: defaultEta(config),
      spacing,
      images,
    };
    const ortDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
    const routes = new Map<string, Route>([
      ['/', { type: 'text/html; charset=utf-8', body: STUDIO_HTML }],
      ['/app.js', { type: 'text/javascript; charset=utf-8', body: app }],
      ['/studio.json', { type: 'application/json', body: JSON.stringify(info) }],
      ['/model/model.onnx', fileRoute(path.join(exportDir, EXPORT_FILES.model))],
      ['/model/export.json', fileRoute(path.join(exportDir, EXPORT_FILES.config))],
    ]);
    // onnxruntime-web fetches its wasm build and its loader by name from wasmPaths.
    for (const f of readdirSync(ortDir)) if (/^ort-wasm-simd-threaded(\.jsep)?\.(mjs|wasm)$/.test(f)) routes.set(`/ort/${f}`, fileRoute(path.join(ortDir, f)));
    say('starting the server');
    const server = await serveRoutes(routes, { host: o.host, port: o.port });
    return {
      ...server,
      stop: async () => {
        await server.close();
        rmSync(exportDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(exportDir, { recursive: true, force: true });
    throw e;
  }
}
