import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DiffusionPipeline, train, unetPreset } from '../../src/index.js';
import { BpeTokenizer } from '../../src/text/index.js';
import { Studio, startStudio } from '../../src/studio/studio.js';
import { captionedLevels, tinyConfig, writeFrozenEncoder } from '../train/helpers.js';
import { generateInPage, maxDiff, openStudio } from './browser.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-studio-text-'));
const run = path.join(root, 'run');
let studio: Studio;
after(async () => {
  await studio?.stop();
  rmSync(root, { recursive: true, force: true });
});


describe('diffuse studio: a text-conditional run', () => {
  before(async () => {
    const tokenizer = BpeTokenizer.train(captionedLevels().captions as string[]);
    const cfg = tinyConfig({
      model: { ...unetPreset('tiny'), contextDim: 16, crossAttentionResolutions: [4] },
      text: { encoder: { kind: 'transformer', maxLength: tokenizer.maxLength, vocabSize: tokenizer.vocabSize, width: 16, layers: 1, heads: 2 }, pUncond: 0.2 },
    });
    await train(run, cfg, captionedLevels(), { sampleEvery: 0, sampleCount: 4, logEvery: 100, maxSteps: 30 });
    studio = await startStudio({ run, port: 0 });
  });

  it("tokenizes prompts in the page, warns of unseen words, and gives diffuse sample's image for a prompt, a negative prompt and guidance", async () => {
    const { browser, page, errors } = await openStudio(studio.url);
    try {
      await page.click('#tab-generate');
      assert.equal(await page.isVisible('#cond-class'), false);
      await page.fill('#prompt', 'a zebra square');
      await page.dispatchEvent('#prompt', 'input');
      assert.match((await page.textContent('#prompt-warnings')) ?? '', /'zebra' never occurs in the training captions/);
      await page.fill('#prompt', 'a white square');
      await page.fill('#negative', 'black');
      await page.dispatchEvent('#negative', 'input');
      assert.equal(await page.textContent('#prompt-warnings'), '');
      await page.fill('#guidance', '4');
      await page.fill('#steps', '5');
      await page.fill('#seed', '2');
      const got = await generateInPage(page);
      const pipe = await DiffusionPipeline.fromRun(run);
      const want = await pipe.generate({ count: 1, seed: 2, steps: 5, scheduler: 'ddim', eta: 0, prompt: 'a white square', negativePrompt: 'black', guidance: 4 });
      const plain = await pipe.generate({ count: 1, seed: 2, steps: 5, scheduler: 'ddim', eta: 0, prompt: 'a white square', guidance: 4 });
      await pipe.release();
      assert.ok(maxDiff(want.data, got) < 1e-4, `browser vs diffuse sample: max difference ${maxDiff(want.data, got)}`);
      assert.ok(maxDiff(plain.data, got) > 1e-3, 'the negative prompt changed the image');
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});

describe('diffuse studio: a run on a frozen ONNX text encoder', () => {
  const frozenRun = path.join(root, 'frozen');
  let frozenStudio: Studio;
  after(async () => frozenStudio?.stop());
  before(async () => {
    const tokenizer = BpeTokenizer.train(captionedLevels().captions as string[]);
    const file = path.join(root, 'frozen.onnx');
    await writeFrozenEncoder(file, tokenizer);
    const cfg = tinyConfig({
      model: { ...unetPreset('tiny'), contextDim: 12, crossAttentionResolutions: [4] },
      // No pooled output: the page takes the masked mean of the states, as Node does.
      text: { encoder: { kind: 'onnx', file, maxLength: tokenizer.maxLength }, pUncond: 0.2 },
    });
    await train(frozenRun, cfg, captionedLevels(), { sampleEvery: 0, sampleCount: 4, logEvery: 100, maxSteps: 10, tokenizer });
    frozenStudio = await startStudio({ run: frozenRun, port: 0 });
  });

  it("encodes the prompt with the run's encoder file in the page and gives diffuse sample's image", async () => {
    const { browser, page, errors } = await openStudio(frozenStudio.url);
    try {
      await page.click('#tab-generate');
      await page.fill('#prompt', 'a white square');
      await page.fill('#guidance', '3');
      await page.fill('#steps', '4');
      await page.fill('#seed', '5');
      const got = await generateInPage(page);
      const pipe = await DiffusionPipeline.fromRun(frozenRun);
      const want = await pipe.generate({ count: 1, seed: 5, steps: 4, scheduler: 'ddim', eta: 0, prompt: 'a white square', guidance: 3 });
      await pipe.release();
      assert.ok(maxDiff(want.data, got) < 1e-4, `browser vs diffuse sample: max difference ${maxDiff(want.data, got)}`);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});
