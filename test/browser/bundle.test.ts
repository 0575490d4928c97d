/**
 * diffuse/browser: it bundles for a web page with nothing of Node in it, and in Chromium it loads an
 * export from a URL and gives Node's images.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as esbuild from 'esbuild';
import { DiffusionPipeline, StableDiffusionPipeline, exportRun, gaussianShading, generateKey, train } from '../../src/index.js';
import { tinyModel } from '../latent/helpers.js';
import { Route, StaticServer, fileRoute, serveRoutes } from '../../src/studio/server.js';
import { blobs, tinyConfig } from '../train/helpers.js';
import { launchChromium, maxDiff } from '../studio/browser.js';

const here = import.meta.dirname;
const root = mkdtempSync(path.join(tmpdir(), 'diffuse-browser-'));
let server: StaticServer | undefined;
after(async () => {
  await server?.close();
  rmSync(root, { recursive: true, force: true });
});

const bundle = (entry: string) => esbuild.build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, logLevel: 'silent' });

describe('diffuse/browser', () => {
  before(async () => {
    await train(path.join(root, 'run'), tinyConfig(), blobs(), { sampleEvery: 0, sampleCount: 4, logEvery: 100, maxSteps: 10 });
    await exportRun(path.join(root, 'run'), path.join(root, 'export'), { batch: 1 });
  });

  it('bundles for the browser without any Node module (esbuild refuses node: imports on the browser platform)', async () => {
    const out = await bundle(path.resolve(here, '..', '..', 'src', 'browser', 'index.ts'));
    assert.equal(out.errors.length, 0);
    assert.doesNotMatch(out.outputFiles[0].text, /from ["']node:/);
  });

  it("loads an export from a URL in Chromium with urlModelFiles and openExportedModel, and gives DiffusionPipeline's images, watermarked too; and a Stable Diffusion folder", async () => {
    const app = (await bundle(path.join(here, 'entry.ts'))).outputFiles[0].text;
    const routes = new Map<string, Route>([
      ['/', { type: 'text/html; charset=utf-8', body: '<!doctype html><meta charset="utf-8"><script type="module" src="/app.js"></script>' }],
      ['/app.js', { type: 'text/javascript; charset=utf-8', body: app }],
    ]);
    const ortDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
    for (const f of readdirSync(ortDir)) if (/^ort-wasm-simd-threaded(\.jsep)?\.(mjs|wasm)$/.test(f)) routes.set(`/ort/${f}`, fileRoute(path.join(ortDir, f)));
    const exported = path.join(root, 'export');
    for (const f of ['model_index.json', 'unet/model.onnx', 'unet/config.json', 'scheduler/scheduler_config.json']) routes.set(`/models/x/${f}`, fileRoute(path.join(exported, f)));
    // The tiny Stable Diffusion folder, with its U-Net's weights in model.onnx_data (found by urlModelFiles with a HEAD request).
    const sd = tinyModel(path.join(root, 'tiny-sd'));
    rmSync(path.join(sd, 'unet'), { recursive: true });
    cpSync(path.join(here, '..', 'fixtures', 'tiny-sd', 'external-data', 'unet'), path.join(sd, 'unet'), { recursive: true });
    for (const f of readdirSync(sd, { recursive: true }) as string[]) if (statSync(path.join(sd, f)).isFile()) routes.set(`/models/sd/${f.split(path.sep).join('/')}`, fileRoute(path.join(sd, f)));
    server = await serveRoutes(routes, { port: 0 });
    const browser = await launchChromium();
    const pipe = await DiffusionPipeline.fromPretrained(exported);
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(server.url);
      await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true, null, { timeout: 60_000 });
      const got = Float32Array.from(await page.evaluate(() => (window as unknown as { generate: (s: number) => Promise<number[]> }).generate(6)));
      const want = await pipe.generate({ count: 2, seed: 6, steps: 5, scheduler: 'ddim', eta: 0 });
      assert.equal(got.length, want.data.length);
      assert.ok(maxDiff(want.data, got) < 1e-4, `max difference ${maxDiff(want.data, got)}`);
      // With the watermark: the page draws the key's signs as Node does.
      const key = generateKey();
      const marked = Float32Array.from(await page.evaluate(([k]) => (window as unknown as { generate: (s: number, k: unknown) => Promise<number[]> }).generate(6, k), [key] as const));
      const wantMarked = await pipe.generate({ count: 2, seed: 6, steps: 5, scheduler: 'ddim', eta: 0, watermark: gaussianShading(key, 77) });
      assert.ok(maxDiff(wantMarked.data, marked) < 1e-4, `watermarked: max difference ${maxDiff(wantMarked.data, marked)}`);
      assert.ok(maxDiff(want.data, marked) > 1e-3, 'the watermark changed the image');
      // A Stable Diffusion folder at a URL, external weights and all: StableDiffusionPipeline.fromFiles over urlModelFiles.
      const sdGot = Float32Array.from(await page.evaluate(() => (window as unknown as { generateSd: (p: string, s: number) => Promise<number[]> }).generateSd('a red square', 3)));
      const sdPipe = await StableDiffusionPipeline.fromPretrained(sd);
      const sdWant = await sdPipe.generate({ prompt: 'a red square', seed: 3, steps: 4, guidance: 5 });
      await sdPipe.release();
      assert.ok(maxDiff(sdWant.data, sdGot) < 1e-4, `Stable Diffusion: max difference ${maxDiff(sdWant.data, sdGot)}`);
      assert.deepEqual(errors, []);
    } finally {
      await pipe.release();
      await browser.close();
    }
  });
});
