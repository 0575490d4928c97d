import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DiffusionPipeline, ImageDataset, encodeDataset, train, trainAutoencoder } from '../../src/index.js';
import { AUTOENCODER_DEFAULTS, AutoencoderNetwork, readExportFolder } from '../../src/run/index.js';
import * as nn from '../../src/nn/index.js';
import { scalingFactorOf } from '../../src/train/index.js';
import { Studio, startStudio } from '../../src/studio/studio.js';
import { cli } from '../cli/helpers.js';
import { tinyConfig } from '../train/helpers.js';
import { generateInPage, maxDiff, openStudio } from './browser.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-latent-'));
const run = path.join(root, 'run');
let studio: Studio;
after(async () => {
  await studio?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** 48 RGB 8x8 images: a coloured 3x3 square at one of 4 places on a dark ground. */
function squares(count = 48): ImageDataset {
  const per = 3 * 64;
  const images = new Float32Array(count * per).fill(-0.8);
  for (let k = 0; k < count; k++) {
    const [oy, ox] = [((k >> 1) & 1) * 4 + 1, (k & 1) * 4 + 1];
    const colour = [Math.sin(k), Math.cos(k), Math.sin(2 * k)];
    for (let c = 0; c < 3; c++) for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) images[k * per + c * 64 + (oy + y) * 8 + ox + x] = colour[c];
  }
  return { name: 'squares', images, count, channels: 3, height: 8, width: 8 };
}

describe('diffuse studio: a latent run (its autoencoder exported beside the denoiser)', () => {
  before(async () => {
    const data = squares();
    const aeDir = path.join(root, 'ae');
    await trainAutoencoder(aeDir, { format: 'diffuse-autoencoder-1', data: { source: 'squares', flip: false }, preset: 'tiny', model: nn.autoencoderPreset('tiny'), imageSize: 8, ...AUTOENCODER_DEFAULTS, batchSize: 16, lr: 3e-3, warmupSteps: 5, emaDecay: 0.9, seed: 1 }, data, { sampleEvery: 0, sampleCount: 4, logEvery: 100, maxSteps: 20 });
    const ae = await AutoencoderNetwork.open(aeDir);
    const cache = await encodeDataset(ae, data, { flip: false });
    const cfg = tinyConfig({ data: { source: 'squares', flip: false }, latent: { scalingFactor: scalingFactorOf(cache), source: aeDir }, model: { ...tinyConfig().model, inChannels: 4, outChannels: 4, imageSize: 4, attentionResolutions: [] } });
    await train(run, cfg, data, { sampleEvery: 0, sampleCount: 4, logEvery: 100, maxSteps: 10, latent: { autoencoder: ae, cache } });
    await ae.release();
    studio = await startStudio({ run, port: 0 });
  });

  it('diffuse export writes the encoder and decoder beside the denoiser, and says so', async () => {
    const out = path.join(root, 'export');
    const r = await cli('export', '--run', run, '--out', out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /vae_encoder\/ and vae_decoder\/ \(the autoencoder: images are the decoder's output for latents \/ [\d.]+\)/);
    for (const f of ['unet/model.onnx', 'vae_encoder/model.onnx', 'vae_decoder/model.onnx', 'vae_decoder/config.json']) assert.ok(existsSync(path.join(out, f)), f);
    const manifest = readExportFolder(out);
    assert.deepEqual(manifest.latent?.imageShape, [3, 8, 8]);
    assert.deepEqual(manifest.latent?.latentShape, [4, 4, 4]);
    const vae = JSON.parse(readFileSync(path.join(out, 'vae_decoder', 'config.json'), 'utf8')) as { scaling_factor: number };
    assert.equal(vae.scaling_factor, manifest.latent?.scalingFactor);
    // Loaded back: the run's images (the codec is the export's encoder and decoder).
    const pipe = await DiffusionPipeline.fromRun(run);
    const exported = await DiffusionPipeline.fromPretrained(out);
    try {
      assert.equal(exported.modelHash, pipe.modelHash);
      const want = await pipe.generate({ count: 3, seed: 4, steps: 6, scheduler: 'ddim', eta: 0 });
      const got = await exported.generate({ count: 3, seed: 4, steps: 6, scheduler: 'ddim', eta: 0 });
      assert.ok(maxDiff(want.data, got.data) < 1e-4, `generate: max difference ${maxDiff(want.data, got.data)}`);
      const wantEdit = await pipe.img2img({ image: want.data.subarray(0, 3 * 64), strength: 0.5, steps: 6, seed: 4, count: 2 });
      const gotEdit = await exported.img2img({ image: want.data.subarray(0, 3 * 64), strength: 0.5, steps: 6, seed: 4, count: 2 });
      assert.ok(maxDiff(wantEdit.data, gotEdit.data) < 1e-4, `img2img: max difference ${maxDiff(wantEdit.data, gotEdit.data)}`);
    } finally {
      await pipe.release();
      await exported.release();
    }
  });

  it("gives DiffusionPipeline's images: generation decoded by the exported decoder, img2img through the exported encoder", async () => {
    const { browser, page, errors } = await openStudio(studio.url);
    const pipe = await DiffusionPipeline.fromRun(run);
    try {
      assert.equal(await page.isVisible('#tab-forward'), false, 'no Forward tab for a latent model');
      await page.fill('#steps', '6');
      await page.fill('#seed', '4');
      await page.selectOption('#scheduler', 'ddim');
      await page.fill('#eta', '0');
      const got = await generateInPage(page);
      const want = await pipe.generate({ count: 1, seed: 4, steps: 6, scheduler: 'ddim', eta: 0 });
      assert.equal(got.length, 3 * 8 * 8, 'an image, not latents');
      assert.ok(maxDiff(want.data, got) < 1e-4, `generate: max difference ${maxDiff(want.data, got)}`);
      const source = Float32Array.from(await page.evaluate(() => fetch('/studio.json').then((r) => r.json()).then((i: { images: number[][] }) => i.images[0])));
      await page.selectOption('#mode', 'img2img');
      await page.fill('#strength', '0.5');
      await page.fill('#eta', '0');
      const edited = await generateInPage(page);
      const wantEdit = await pipe.img2img({ image: source, strength: 0.5, steps: 6, seed: 4, scheduler: 'ddim', eta: 0 });
      assert.ok(maxDiff(wantEdit.data, edited) < 1e-4, `img2img: max difference ${maxDiff(wantEdit.data, edited)}`);
      assert.deepEqual(errors, []);
    } finally {
      await pipe.release();
      await browser.close();
    }
  });

  it('serves an export given as the model folder as it is, and the page gives the same images', async () => {
    const out = path.join(root, 'export');
    const served = await startStudio({ model: out, port: 0 });
    const { browser, page, errors } = await openStudio(served.url);
    const pipe = await DiffusionPipeline.fromPretrained(out);
    try {
      const info = (await page.evaluate(() => fetch('/studio.json').then((r) => r.json()))) as { kind: string; files: Record<string, string[]> };
      assert.equal(info.kind, 'run');
      assert.deepEqual(info.files.unet, ['config.json', 'model.onnx', 'weights.safetensors']);
      await page.fill('#steps', '5');
      await page.fill('#seed', '7');
      await page.selectOption('#scheduler', 'ddim');
      await page.fill('#eta', '0');
      const got = await generateInPage(page);
      const want = await pipe.generate({ count: 1, seed: 7, steps: 5, scheduler: 'ddim', eta: 0 });
      assert.ok(maxDiff(want.data, got) < 1e-4, `max difference ${maxDiff(want.data, got)}`);
      assert.deepEqual(errors, []);
    } finally {
      await pipe.release();
      await browser.close();
      await served.stop();
    }
  });
});
