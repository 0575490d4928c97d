import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { DiffusionPipeline, train } from '../../src/index.js';
import { Studio, startStudio } from '../../src/studio/studio.js';
import { blobs, tinyConfig } from '../train/helpers.js';

// A real browser: Debian's Chromium (.ci/run installs it). Missing, the test fails rather than skips.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const root = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-'));
const run = path.join(root, 'run');
let studio: Studio;
after(async () => {
  await studio?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe('diffuse studio in Chromium', () => {
  before(async () => {
    await train(run, tinyConfig(), blobs(), { sampleEvery: 0, sampleCount: 4, logEvery: 100, maxSteps: 30 });
    studio = await startStudio({ run, port: 0 });
  });

  it('draws the forward process and generates the image diffuse sample makes, with onnxruntime-web', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'] });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(studio.url);
      await page.waitForFunction(() => (window as unknown as { studioReady?: boolean }).studioReady === true, null, { timeout: 60_000 });
      assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'COOP/COEP make the page cross-origin isolated');
      // Forward: moving t changes the reported alpha_bar, as the closed form says.
      await page.fill('#t', '50');
      await page.dispatchEvent('#t', 'input');
      assert.match((await page.textContent('#forward-info')) ?? '', /^t = 50 +alpha_bar\(t\) = 0\.\d{4}/);
      await page.click('#tab-generate');
      await page.fill('#steps', '6');
      await page.fill('#eta', '0');
      await page.fill('#seed', '3');
      await page.click('#generate');
      await page.waitForFunction(() => Array.isArray((window as unknown as { studioLast?: number[] }).studioLast), null, { timeout: 60_000 });
      const got = await page.evaluate(() => (window as unknown as { studioLast: number[] }).studioLast);
      assert.match((await page.textContent('#step')) ?? '', /^step 6\/6 /);
      assert.deepEqual(errors, []);
      const pipe = await DiffusionPipeline.fromRun(run);
      const want = await pipe.generate({ count: 1, seed: 3, steps: 6, scheduler: 'ddim', eta: 0 });
      await pipe.release();
      const diff = Math.max(...Array.from(want.data, (v, i) => Math.abs(v - got[i])));
      assert.ok(diff < 1e-4, `browser vs diffuse sample: max difference ${diff}`);
    } finally {
      await browser.close();
    }
  });
});
