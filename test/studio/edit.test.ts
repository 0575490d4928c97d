import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { DiffusionPipeline, train, unetPreset } from '../../src/index.js';
import { Studio, startStudio } from '../../src/studio/studio.js';
import { blobs, tinyConfig } from '../train/helpers.js';
import { Hooks, generateInPage, maxDiff, openStudio } from './browser.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-edit-'));
const run = path.join(root, 'run');
let studio: Studio;
after(async () => {
  await studio?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe('diffuse studio: a class-conditional run, guidance, img2img and a brush-drawn inpainting mask', () => {
  before(async () => {
    const cfg = tinyConfig({ model: { ...unetPreset('tiny'), numClasses: 4 }, classConditioning: { pUncond: 0.2 }, classNames: ['tl', 'tr', 'bl', 'br'] });
    await train(run, cfg, blobs(), { sampleEvery: 0, sampleCount: 4, logEvery: 100, maxSteps: 30 });
    studio = await startStudio({ run, port: 0 });
  });

  it('gives the images DiffusionPipeline gives for the same class, guidance, source, strength and mask', async () => {
    const { browser, page, errors } = await openStudio(studio.url);
    const pipe = await DiffusionPipeline.fromRun(run);
    try {
      await page.click('#tab-generate');
      // Class 2 with guidance 2.5: the conditional and unconditional predictions combined in the page.
      await page.selectOption('#cond-class', '2');
      await page.fill('#guidance', '2.5');
      await page.fill('#steps', '5');
      await page.fill('#seed', '11');
      await page.selectOption('#scheduler', 'dpm++2m');
      const generated = await generateInPage(page);
      const want = await pipe.generate({ count: 1, seed: 11, steps: 5, scheduler: 'dpm++2m', eta: 0, classLabel: 2, guidance: 2.5 });
      assert.ok(maxDiff(want.data, generated) < 1e-4, `guided generation: max difference ${maxDiff(want.data, generated)}`);

      // img2img of the data set's first image (the page's source list comes from the run's data).
      const source = Float32Array.from(await page.evaluate(() => fetch('/studio.json').then((r) => r.json()).then((i: { images: number[][] }) => i.images[0])));
      await page.selectOption('#mode', 'img2img');
      await page.fill('#strength', '0.6');
      await page.fill('#steps', '10');
      await page.selectOption('#scheduler', 'ddim');
      const edited = await generateInPage(page);
      const wantEdit = await pipe.img2img({ image: source, strength: 0.6, steps: 10, seed: 11, scheduler: 'ddim', eta: 0, classLabel: 2, guidance: 2.5 });
      assert.ok(maxDiff(wantEdit.data, edited) < 1e-4, `img2img: max difference ${maxDiff(wantEdit.data, edited)}`);

      // Inpainting: no mask yet is refused in words; then a brush stroke across the top of the image.
      await page.selectOption('#mode', 'inpaint');
      assert.equal(await page.inputValue('#eta'), '1', 'RePaint adds the posterior noise, as diffuse inpaint does');
      await page.click('#generate');
      await page.waitForFunction(() => /^error: paint the region/.test(document.getElementById('status')?.textContent ?? ''));
      const box = (await page.locator('#source-canvas').boundingBox()) as { x: number; y: number; width: number; height: number };
      await page.fill('#brush', '1');
      await page.mouse.move(box.x + 2, box.y + box.height * 0.2);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width - 2, box.y + box.height * 0.2, { steps: 12 });
      await page.mouse.up();
      await page.fill('#steps', '6');
      const inpainted = await generateInPage(page);
      const mask = Float32Array.from(await page.evaluate(() => (window as unknown as Hooks).studioMask as number[]));
      const painted = mask.reduce((a, b) => a + b, 0);
      assert.ok(painted >= 8 && painted <= 24, `the stroke painted ${painted} of 64 pixels (one row of 8, give or take the brush)`);
      const wantInpaint = await pipe.inpaint({ image: source, mask, steps: 6, seed: 11, scheduler: 'ddim', eta: 1, classLabel: 2, guidance: 2.5 });
      assert.ok(maxDiff(wantInpaint.data, inpainted) < 1e-4, `inpaint: max difference ${maxDiff(wantInpaint.data, inpainted)}`);

      // A dropped image of the wrong size: the page says so next to the drop zone and keeps its source.
      const big = await sharp({ create: { width: 20, height: 12, channels: 3, background: '#808080' } }).png().toBuffer();
      await page.setInputFiles('#edit-drop-file', { name: 'big.png', mimeType: 'image/png', buffer: big });
      await page.waitForFunction(() => (document.getElementById('edit-drop-status')?.textContent ?? '') !== '');
      assert.equal(await page.textContent('#edit-drop-status'), 'big.png is 20x12; this model takes 8x8 images');
      // One of the right size is added as a source.
      const small = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ffffff' } }).png().toBuffer();
      await page.setInputFiles('#edit-drop-file', { name: 'white.png', mimeType: 'image/png', buffer: small });
      await page.waitForFunction(() => document.getElementById('edit-drop-status')?.textContent === 'white.png');
      assert.equal(await page.inputValue('#source'), String((await page.locator('#source option').count()) - 1));
      assert.deepEqual(errors, []);
    } finally {
      await pipe.release();
      await browser.close();
    }
  });
});
