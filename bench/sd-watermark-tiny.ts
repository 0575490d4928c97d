/**
 * The watermark through a Stable Diffusion folder, on the tiny test model with the autoencoder of
 * test/fixtures/tiny-sd/make_invertible_vae.py (random U-Net: the figures check the arithmetic,
 * not a real model): 64 images with a fixed key and 64 without (16 prompts x 4 seeds, DDIM 20,
 * guidance 7.5), saved to 8 bits and inverted with 20 steps and the empty prompt. The figures of
 * docs/LATENT.md's watermark paragraph:
 *
 *   npm run bench:sd-watermark-tiny
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { StableDiffusionPipeline, detectWatermark, gaussianShading } from '../src/index.js';
import { quantize8 } from '../src/forensics/index.js';
import { log } from './args.js';

const fixtures = path.join(import.meta.dirname, '..', 'test', 'fixtures');
const dir = mkdtempSync(path.join(tmpdir(), 'diffuse-sd-wm-'));
cpSync(path.join(fixtures, 'tiny-sd', 'model'), dir, { recursive: true });
cpSync(path.join(fixtures, 'clip-tokenizer', 'tokenizer'), path.join(dir, 'tokenizer'), { recursive: true });
cpSync(path.join(fixtures, 'tiny-sd', 'invertible-vae'), dir, { recursive: true });
const pipe = await StableDiffusionPipeline.fromPretrained(dir);
const key = { format: 'diffuse-watermark-key-1', scheme: 'gaussian-shading', secret: Buffer.alloc(32, 7).toString('base64'), created: '' } as const;
const prompts = Array.from({ length: 16 }, (_, i) => `prompt ${i}`);
const marked: Awaited<ReturnType<typeof detectWatermark>> = [];
const clean: typeof marked = [];
for (let s = 0; s < 4; s++) {
  const o = { prompt: prompts, guidance: 7.5, steps: 20, seed: 100 + s };
  marked.push(...(await detectWatermark(quantize8(await pipe.generate({ ...o, watermark: gaussianShading(key, 1234) })), pipe, key, { steps: 20 })));
  clean.push(...(await detectWatermark(quantize8(await pipe.generate(o)), pipe, key, { steps: 20 })));
}
await pipe.release();
rmSync(dir, { recursive: true, force: true });
const sorted = marked.map((d) => d.log10P).sort((a, b) => a - b);
log(`watermarked, 64: found at p < 1% ${marked.filter((d) => d.pValue < 0.01).length}, at p < 0.1% ${marked.filter((d) => d.pValue < 0.001).length}, median log10 p ${sorted[32].toFixed(1)}; payload right in ${marked.filter((d) => d.payload === 1234).length}`);
log(`clean, 64: at p < 1% ${clean.filter((d) => d.pValue < 0.01).length}; smallest p ${Math.min(...clean.map((d) => d.pValue)).toFixed(3)}`);
