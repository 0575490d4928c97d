import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { StableDiffusionPipeline } from '../../src/latent/index.js';
import { Studio, startStudio } from '../../src/studio/studio.js';
import { tinyModel } from '../latent/helpers.js';
import { WEBGPU_FLAGS, generateInPage, maxDiff, openStudio } from './browser.js';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures');
const root = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-model-'));
// The tiny fixture, with its U-Net's weights in model.onnx_data beside the graph (as Optimum saves SD 1.5's).
const dir = tinyModel(path.join(root, 'tiny-sd'));
rmSync(path.join(dir, 'unet'), { recursive: true });
cpSync(path.join(fixtures, 'tiny-sd', 'external-data', 'unet'), path.join(dir, 'unet'), { recursive: true });
let studio: Studio;
let pipe: StableDiffusionPipeline;
after(async () => {
  await studio?.stop();
  await pipe?.release();
  rmSync(root, { recursive: true, force: true });
});

/** A raw GET of a path, as written. */
function get(url: string, rawPath: string): Promise<number> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: rawPath }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('diffuse studio --model: a Stable Diffusion folder in the browser', () => {
  before(async () => {
    // Files the page must never be given: a stray file in the folder, a folder inside a component's.
    writeFileSync(path.join(dir, 'secret.txt'), 'not served');
    mkdirSync(path.join(dir, 'unet', 'nested'));
    studio = await startStudio({ model: dir, port: 0 });
    pipe = await StableDiffusionPipeline.fromPretrained(dir);
  });

  it('serves the folder\'s component files and nothing else', async () => {
    assert.equal(await get(studio.url, '/model/unet/model.onnx'), 200);
    assert.equal(await get(studio.url, '/model/unet/model.onnx_data'), 200, 'the external weights');
    assert.equal(await get(studio.url, '/model/model_index.json'), 200);
    for (const p of ['/model/secret.txt', '/model/unet/', '/model/unet/nested', '/model/../package.json', '/model/%2e%2e/secret.txt', '/model/unet/..%2fsecret.txt']) assert.equal(await get(studio.url, p), 404, p);
  });

  it("gives StableDiffusionPipeline's images for a prompt, a negative prompt and guidance; img2img and inpainting of a dropped image", async () => {
    const { browser, page, errors } = await openStudio(studio.url);
    try {
      assert.equal(await page.isVisible('#tab-forward'), false, 'no Forward tab for a latent model');
      assert.equal(await page.isVisible('#panel-generate'), true);
      assert.equal(await page.inputValue('#width'), String(pipe.defaultSize));
      await page.fill('#prompt', 'a red circle on a white square');
      await page.fill('#negative', 'blue');
      await page.fill('#guidance', '4');
      await page.fill('#steps', '4');
      await page.fill('#seed', '3');
      const got = await generateInPage(page);
      const want = await pipe.generate({ prompt: 'a red circle on a white square', negativePrompt: 'blue', guidance: 4, steps: 4, seed: 3 });
      assert.ok(maxDiff(want.data, got) < 1e-4, `browser vs Node: max difference ${maxDiff(want.data, got)}`);
      const plain = await pipe.generate({ prompt: 'a red circle on a white square', guidance: 4, steps: 4, seed: 3 });
      assert.ok(maxDiff(plain.data, got) > 1e-3, 'the negative prompt changed the image');

      // The prompt's tokenizer warnings, from the folder's own tokenizer.
      await page.fill('#prompt', Array(80).fill('cat').join(' '));
      await page.dispatchEvent('#prompt', 'input');
      assert.match((await page.textContent('#prompt-warnings')) ?? '', /longer than 77 tokens and was cut/);
      await page.fill('#prompt', 'a red circle');
      await page.dispatchEvent('#prompt', 'input');

      // img2img of a dropped picture at another size: stretched to the model's, and said so.
      const S = pipe.defaultSize;
      const raw = Buffer.alloc(S * S * 3);
      for (let i = 0; i < S * S; i++) raw.set([(i * 7) % 256, (i * 3) % 256, 200], i * 3);
      const exact = await sharp(raw, { raw: { width: S, height: S, channels: 3 } }).png().toBuffer();
      await page.selectOption('#mode', 'img2img');
      const wide = await sharp({ create: { width: 2 * S, height: S, channels: 3, background: '#336699' } }).png().toBuffer();
      await page.setInputFiles('#edit-drop-file', { name: 'wide.png', mimeType: 'image/png', buffer: wide });
      await page.waitForFunction(() => (document.getElementById('edit-drop-status')?.textContent ?? '') !== '');
      assert.equal(await page.textContent('#edit-drop-status'), `wide.png: resized from ${2 * S}x${S} to ${S}x${S}`);
      await page.setInputFiles('#edit-drop-file', { name: 'exact.png', mimeType: 'image/png', buffer: exact });
      await page.waitForFunction(() => document.getElementById('edit-drop-status')?.textContent === 'exact.png');
      // The same picture as the model reads it: NCHW in [-1, 1].
      const image = { data: new Float32Array(3 * S * S).map((_, j) => raw[(j % (S * S)) * 3 + Math.floor(j / (S * S))] / 127.5 - 1), count: 1, shape: [3, S, S] as const };
      await page.fill('#strength', '0.5');
      await page.selectOption('#scheduler', 'dpm++2m');
      const edited = await generateInPage(page);
      const wantEdit = await pipe.img2img({ prompt: 'a red circle', negativePrompt: 'blue', guidance: 4, steps: 4, seed: 3, image, strength: 0.5, scheduler: pipe.schedulerNamed('dpm++2m') });
      assert.ok(maxDiff(wantEdit.data, edited) < 1e-4, `img2img: max difference ${maxDiff(wantEdit.data, edited)}`);

      // Inpainting: refused in words without a mask; then a stroke across the image.
      await page.selectOption('#mode', 'inpaint');
      await page.selectOption('#scheduler', '');
      await page.click('#generate');
      await page.waitForFunction(() => /^error: paint the region/.test(document.getElementById('status')?.textContent ?? ''));
      const box = (await page.locator('#source-canvas').boundingBox()) as { x: number; y: number; width: number; height: number };
      await page.mouse.move(box.x + 2, box.y + box.height * 0.3);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width - 2, box.y + box.height * 0.3, { steps: 12 });
      await page.mouse.up();
      const inpainted = await generateInPage(page);
      const mask = Float32Array.from(await page.evaluate(() => (window as unknown as { studioMask: number[] }).studioMask));
      const painted = mask.reduce((a, b) => a + b, 0);
      assert.ok(painted > 0 && painted < S * S / 2, `the stroke painted ${painted} of ${S * S} pixels`);
      const wantInpaint = await pipe.inpaint({ prompt: 'a red circle', negativePrompt: 'blue', guidance: 4, steps: 4, seed: 3, image, mask: { data: mask, shape: [1, S, S] } });
      assert.ok(maxDiff(wantInpaint.data, inpainted) < 1e-4, `inpaint: max difference ${maxDiff(wantInpaint.data, inpainted)}`);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });

  it("inspects a dropped image with the folder's model on the server", async () => {
    const png = await sharp({ create: { width: pipe.defaultSize, height: pipe.defaultSize, channels: 3, background: '#808080' } }).png().toBuffer();
    const res = await fetch(new URL('/api/inspect', studio.url), { method: 'POST', body: new Uint8Array(png), headers: { 'X-File-Name': 'grey.png' } });
    assert.equal(res.status, 200);
    const answer = (await res.json()) as { report: { file: string; verdict?: { summary: string } } };
    assert.equal(answer.report.file, 'grey.png');
    assert.ok(answer.report.verdict, 'a verdict');
  });

  it('refuses a folder that is not a model, naming what is missing, before serving anything', async () => {
    await assert.rejects(startStudio({ model: path.join(root, 'nope'), port: 0 }), /nope: no such model folder/);
    const empty = path.join(root, 'empty');
    mkdirSync(empty);
    await assert.rejects(startStudio({ model: empty, port: 0 }), /empty[/\\]model_index\.json: no such file/);
    await assert.rejects(startStudio({ model: dir, port: 0, inspect: { geometric: true } }), /geometric search is for runs/);
  });

  it("runs a float16 export in the browser as diffusers' reference does, and refuses WebGPU without float16 shaders", async () => {
    // The fixture's four networks as Optimum's --dtype fp16 export has them; the reference run is diffusers' (expected.json).
    const half = tinyModel(path.join(root, 'fp16'), { randomVae: true });
    for (const part of ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']) cpSync(path.join(fixtures, 'tiny-sd', 'fp16', part, 'model.onnx'), path.join(half, part, 'model.onnx'));
    const expected = JSON.parse(readFileSync(path.join(fixtures, 'tiny-sd', 'expected.json'), 'utf8')) as { fp16: { cases: { prompt: string; negativePrompt: string; guidance: number; steps: number; seed: number; width: number; height: number; image: string }[] } };
    const c = expected.fp16.cases[0];
    const want = new Float32Array(Uint8Array.from(Buffer.from(c.image, 'base64')).buffer);
    const halfStudio = await startStudio({ model: half, port: 0 });
    // With SwiftShader's WebGPU adapter, which has no shader-f16.
    const { browser, page, errors } = await openStudio(halfStudio.url, WEBGPU_FLAGS);
    try {
      await page.fill('#prompt', c.prompt);
      await page.fill('#negative', c.negativePrompt);
      await page.fill('#guidance', String(c.guidance));
      await page.fill('#steps', String(c.steps));
      await page.fill('#seed', String(c.seed));
      await page.fill('#width', String(c.width));
      await page.fill('#height', String(c.height));
      const got = await generateInPage(page);
      // Looser than float32's 1e-4: onnxruntime-web's text encoder and decoder in Chromium round some
      // half-precision values one step (ulp) away from onnxruntime-node's (2.4e-4 and 4.9e-4 seen,
      // ad hoc; the U-Net's step was identical), and guidance 7.5 over four steps grows that to 0.008.
      assert.ok(maxDiff(want, got) < 2e-2, `browser float16 vs diffusers: max difference ${maxDiff(want, got)}`);
      // WebGPU without float16 shaders would compile nothing and read garbage: refused in words instead.
      await page.selectOption('#backend', 'webgpu');
      await page.waitForFunction(() => /^error/.test(document.getElementById('status')?.textContent ?? ''), null, { timeout: 60_000 });
      assert.match((await page.textContent('#status')) ?? '', /this model is float16, and the WebGPU adapter \(.*\) has no float16 shaders \(shader-f16\): use wasm/);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      await halfStudio.stop();
    }
  });

  it("runs the model on the studio's server when asked (or when the U-Net is too large for the browser), streaming each step", async () => {
    const { browser, page, errors } = await openStudio(studio.url);
    try {
      await page.selectOption('#backend', 'server');
      await page.waitForFunction(() => /studio's server/.test(document.getElementById('status')?.textContent ?? ''));
      await page.fill('#prompt', 'a green square');
      await page.fill('#negative', 'red');
      await page.fill('#guidance', '3');
      await page.fill('#steps', '5');
      await page.fill('#seed', '9');
      await page.selectOption('#scheduler', 'euler_a');
      const got = await generateInPage(page);
      const want = await pipe.generate({ prompt: 'a green square', negativePrompt: 'red', guidance: 3, steps: 5, seed: 9, scheduler: pipe.schedulerNamed('euler_a') });
      assert.equal(maxDiff(want.data, got), 0, 'the same code on the same runtime: the same image');
      const steps = await page.evaluate(() => (window as unknown as { studioStepMs: number[] }).studioStepMs.length);
      assert.equal(steps, 5, 'every step was streamed and drawn');
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });

  it('checks /api/generate requests before running anything, one at a time, and stops a run whose page left', async () => {
    const api = new URL('/api/generate', studio.url);
    const post = (body: unknown, headers: Record<string, string> = {}) => fetch(api, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers });
    const ok = { prompt: 'x', guidance: 1, steps: 2, seed: 0, width: pipe.defaultSize, height: pipe.defaultSize };
    const bad: [unknown, RegExp][] = [
      ['{not json', /not valid JSON/],
      [[1, 2], /not a JSON object/],
      [{ ...ok, steps: 1e9 }, /steps must be a whole number from 1 to 500/],
      [{ ...ok, width: pipe.defaultSize + 3 }, /width must be a multiple of/],
      [{ ...ok, width: 1 << 20 }, /width must be a whole number from/],
      [{ ...ok, scheduler: 'rm -rf' }, /scheduler must be '' \(the folder's\) or one of/],
      [{ ...ok, prompt: 7 }, /prompt must be a string/],
      [{ ...ok, mode: 'img2img' }, /img2img needs the source image/],
      [{ ...ok, mode: 'img2img', image: 'AAAA' }, /image has 3 bytes, expected/],
      [{ ...ok, mode: 'inpaint', image: Buffer.alloc(12 * ok.width * ok.height).toString('base64'), mask: Buffer.alloc(4 * ok.width * ok.height, 0xff).toString('base64') }, /mask holds a value that is not a finite number/],
    ];
    for (const [body, error] of bad) {
      const r = await post(body);
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
      assert.match(((await r.json()) as { error: string }).error, error);
    }
    assert.equal((await fetch(api)).status, 405);
    assert.equal((await post(ok, { Origin: 'http://evil.example' })).status, 403);
    // A long run holds the server; a second request meanwhile is told to wait; leaving the first stops
    // it (the studio says after how many steps), and the server is free again.
    const said: string[] = [];
    const own = await startStudio({ model: dir, port: 0, onProgress: (m) => said.push(m) });
    try {
      const controller = new AbortController();
      const long = await fetch(new URL('/api/generate', own.url), { method: 'POST', body: JSON.stringify({ ...ok, steps: 500, guidance: 7, width: 2048, height: 2048 }), signal: controller.signal });
      const reader = (long.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      const second = await fetch(new URL('/api/generate', own.url), { method: 'POST', body: JSON.stringify(ok) });
      assert.equal(second.status, 503);
      assert.match(((await second.json()) as { error: string }).error, /already generating/);
      controller.abort();
      let free = 0;
      while (free !== 200) {
        await new Promise((r) => setTimeout(r, 100));
        const r = await fetch(new URL('/api/generate', own.url), { method: 'POST', body: JSON.stringify(ok) });
        free = r.status;
        await r.text();
      }
      const stopped = said.find((m) => m.startsWith('generation stopped')) ?? '';
      const m = /^generation stopped after (\d+) of 500 steps: the page left$/.exec(stopped);
      assert.ok(m && Number(m[1]) < 500, `the run stopped early: ${JSON.stringify(said)}`);
    } finally {
      await own.stop();
    }
  });
});
