import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DiffusionPipeline, train } from '../../src/index.js';
import { Studio, startStudio } from '../../src/studio/studio.js';
import { blobs, tinyConfig } from '../train/helpers.js';
import { WEBGPU_FLAGS, generateInPage, maxDiff, openStudio } from './browser.js';

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
    // WebGPU as Chromium offers it here: a software adapter (SwiftShader), behind a flag.
    const { browser, page, errors } = await openStudio(studio.url, WEBGPU_FLAGS);
    try {
      assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'COOP/COEP make the page cross-origin isolated');
      // Forward: moving t changes the reported alpha_bar, as the closed form says.
      await page.fill('#t', '50');
      await page.dispatchEvent('#t', 'input');
      assert.match((await page.textContent('#forward-info')) ?? '', /^t = 50 +alpha_bar\(t\) = 0\.\d{4}/);
      // A file that is not an image, dropped on the Forward tab: said next to the drop zone.
      await page.setInputFiles('#forward-drop-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
      await page.waitForFunction(() => (document.getElementById('forward-drop-status')?.textContent ?? '') !== '');
      assert.match((await page.textContent('#forward-drop-status')) ?? '', /notes\.txt is not an image the page can read/);
      await page.click('#tab-generate');
      assert.equal(await page.isVisible('#guidance'), false, 'an unconditional run offers no guidance');
      await page.fill('#steps', '6');
      await page.fill('#eta', '0');
      await page.fill('#seed', '3');
      const got = await generateInPage(page);
      assert.match((await page.textContent('#step')) ?? '', /^step 6\/6 /);
      assert.deepEqual(errors, []);
      const pipe = await DiffusionPipeline.fromRun(run);
      const want = await pipe.generate({ count: 1, seed: 3, steps: 6, scheduler: 'ddim', eta: 0 });
      await pipe.release();
      const diff = maxDiff(want.data, got);
      assert.ok(diff < 1e-4, `browser vs diffuse sample: max difference ${diff}`);

      // WebGPU: offered, never the default; where the browser has an adapter, the same image to GPU float tolerance.
      assert.equal(await page.inputValue('#backend'), 'wasm');
      const gpu = await page.$eval('#backend option[value=webgpu]', (o) => ({ disabled: (o as HTMLOptionElement).disabled, label: o.textContent ?? '' }));
      if (gpu.disabled) assert.match(gpu.label, /^WebGPU \((this browser has no WebGPU|no WebGPU adapter|WebGPU adapter request failed)\)$/);
      else {
        assert.match(gpu.label, /^WebGPU \(.+\)$/);
        await page.selectOption('#backend', 'webgpu');
        await page.waitForFunction(() => (window as unknown as { studioBackend?: string; studioReady?: boolean }).studioBackend === 'webgpu' && (window as unknown as { studioReady?: boolean }).studioReady === true, null, { timeout: 60_000 });
        const onGpu = await generateInPage(page);
        assert.ok(maxDiff(want.data, onGpu) < 1e-3, `WebGPU vs diffuse sample: max difference ${maxDiff(want.data, onGpu)}`);
      }
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});
