/**
 * The watermark with a Stable Diffusion folder: written into the latent x_T by `generate`
 * (`sample --model --key`) and found again through the folder's encoder and DDIM inversion
 * (`detectWatermark`, `watermark detect --model`, `inspect --model`). The tiny fixture's random
 * autoencoder does not give back what it decoded, as Stable Diffusion's does on its own images,
 * so these tests swap in test/fixtures/tiny-sd/invertible-vae (made by make_invertible_vae.py):
 * encode(decode(z)) = z up to 8-bit rounding. The U-Net stays random, so the inversion is only
 * approximate: the p-values here say the arithmetic holds, not how a real model fares.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ImageBatch, StableDiffusionPipeline, TorchGenerator, WatermarkKey, detectWatermark, gaussianShading } from '../../src/index.js';
import { imageBytes, imageFromBytes, quantize8, turnAngles } from '../../src/forensics/index.js';
import { cropLatticeSize } from '../../src/forensics/crop-search.js';
import { cli } from '../cli/helpers.js';
import { tinyModel } from './helpers.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'diffuse-sd-watermark-'));
const model = tinyModel(path.join(tmp, 'model'));
/** A fixed key, so that every run of the test sees the same p-values. */
const key: WatermarkKey = { format: 'diffuse-watermark-key-1', scheme: 'gaussian-shading', secret: Buffer.alloc(32, 7).toString('base64'), created: '2026-12-07T00:00:00.000Z' };
const keyFile = path.join(tmp, 'key.json');

describe('the watermark with a Stable Diffusion folder', () => {
  let pipe: StableDiffusionPipeline;
  before(async () => {
    pipe = await StableDiffusionPipeline.fromPretrained(model);
    await writeFile(keyFile, JSON.stringify(key));
  });
  after(async () => {
    await pipe.release();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('draws x_T from the watermark with the seed\'s generator', async () => {
    const o = { prompt: ['a cat', 'a dog'], guidance: 7.5, steps: 4, seed: 5 };
    const marked = await pipe.generate({ ...o, watermark: gaussianShading(key, 77) });
    const latents = gaussianShading(key, 77).draw(2, 4 * 8 * 8, new TorchGenerator(5));
    const byHand = await pipe.generate({ ...o, latents });
    assert.deepEqual(marked.latents, byHand.latents);
    await assert.rejects(pipe.generate({ ...o, latents, watermark: gaussianShading(key, 77) }), /latents or watermark, not both/);
  });

  it('finds the mark in 8-bit images made with the key, and not in images made without it', async () => {
    const o = { prompt: ['a cat', 'a dog'], guidance: 7.5, steps: 20, seed: 3 };
    const marked = quantize8(await pipe.generate({ ...o, watermark: gaussianShading(key, 1234) }));
    const clean = quantize8(await pipe.generate(o));
    const found = await detectWatermark(marked, pipe, key, { steps: 20 });
    const none = await detectWatermark(clean, pipe, key, { steps: 20 });
    for (const d of found) assert.ok(d.detected && d.pValue < 1e-4, `marked: p = ${d.pValue}`);
    for (const d of none) assert.ok(!d.detected && d.pValue > 0.01, `clean: p = ${d.pValue}`);
    // Another key does not find it either.
    const other = { ...key, secret: Buffer.alloc(32, 8).toString('base64') };
    for (const d of await detectWatermark(marked, pipe, other, { steps: 20 })) assert.ok(!d.detected, `other key: p = ${d.pValue}`);
  });

  it('finds the mark in an image turned by any angle through the turn search, paying for the angles it tries', async () => {
    const o = { prompt: ['a cat', 'a dog'], guidance: 7.5, steps: 20, seed: 3 };
    const marked = quantize8(await pipe.generate({ ...o, watermark: gaussianShading(key, 99) }));
    const clean = quantize8(await pipe.generate({ ...o, seed: 4 }));
    // Turned clockwise by 90 degrees: a lossless turn, which the search's turn back by 90 undoes exactly.
    const turn = async (b: ImageBatch) => {
      const out = new Float32Array(b.data.length);
      const per = b.data.length / b.count;
      for (let k = 0; k < b.count; k++) {
        const { data, info } = await sharp(imageBytes(b, k), { raw: { width: 64, height: 64, channels: 3 } }).rotate(90).raw().toBuffer({ resolveWithObject: true });
        out.set(imageFromBytes(data, info.channels, b.shape), k * per);
      }
      return { ...b, data: out };
    };
    const turned = await turn(marked);
    const plain = await detectWatermark(turned, pipe, key, { steps: 20 });
    assert.ok(plain.every((d) => !d.detected), `unsearched: p = ${plain.map((d) => d.pValue).join(', ')}`);
    const found = await detectWatermark(turned, pipe, key, { steps: 20, geometric: true });
    const unturned = await detectWatermark(marked, pipe, key, { steps: 20 });
    for (const [k, d] of found.entries()) {
      assert.ok(d.detected, `turned image ${k}: p = ${d.pValue}`);
      assert.equal(d.map.degrees, 90);
      // The same test as unturned, paid for the search: 2 x (119 turns + every crop keeping 60% of the area).
      const G = turnAngles().length + cropLatticeSize(64, 64, 0.6);
      assert.ok(Math.abs(d.log10P - Math.min(0, unturned[k].log10P + Math.log10(2 * G))) < 1e-9, `${d.log10P} vs ${unturned[k].log10P}`);
    }
    for (const d of await detectWatermark(await turn(clean), pipe, key, { steps: 20, geometric: true })) assert.ok(!d.detected, `clean, searched: p = ${d.pValue}`);
    await assert.rejects(detectWatermark(turned, pipe, key, { maxRotation: 5 }), /searched for turns by `geometric` \(any angle\), not `maxRotation`/);
  });

  it('sample --model --key, then watermark detect --model and inspect --model', async () => {
    const each = path.join(tmp, 'each');
    const clean = path.join(tmp, 'clean');
    const made = await cli('sample', '--model', model, '--prompt', 'a cat|a dog', '--key', keyFile, '--payload', '77', '--steps', '20', '--out', path.join(tmp, 'g.png'), '--images', each);
    assert.equal(made.code, 0, made.err);
    assert.match(made.err, /watermarked with payload 77/);
    assert.equal((await cli('sample', '--model', model, '--prompt', 'a cat|a dog', '--steps', '20', '--out', path.join(tmp, 'c.png'), '--images', clean)).code, 0);
    const files = [path.join(each, '0000.png'), path.join(each, '0001.png'), path.join(clean, '0000.png'), path.join(clean, '0001.png')];
    const detect = await cli('watermark', 'detect', ...files, '--model', model, '--key', keyFile, '--steps', '20', '--json');
    assert.equal(detect.code, 0, detect.err);
    const records = detect.out.trim().split('\n').map((l) => JSON.parse(l) as { detected: boolean; pValue: number; width: number });
    assert.deepEqual(records.map((r) => r.detected), [true, true, false, false]);
    assert.equal(records[0].width, 64);

    const inspect = await cli('inspect', files[0], files[2], '--model', model, '--key', keyFile, '--steps', '20', '--json');
    assert.equal(inspect.code, 0, inspect.err);
    const [marked, plain] = inspect.out.trim().split('\n').map((l) => JSON.parse(l) as { watermark: { status: string; detected?: boolean }; detector: { status: string; reason?: string }; verdict: { restsOn: string } });
    assert.equal(marked.watermark.status, 'checked');
    assert.equal(marked.watermark.detected, true);
    assert.equal(marked.verdict.restsOn, 'watermark');
    assert.equal(plain.watermark.detected, false);
    assert.match(plain.detector.reason ?? '', /no detector calibration .*diffuse detector calibrate --model/);
  });

  it('refuses what does not apply, in one line, and skips images of another size with the reason', async () => {
    const odd = path.join(tmp, 'odd.png');
    await sharp({ create: { width: 68, height: 64, channels: 3, background: '#808080' } }).png().toFile(odd);
    const inspect = await cli('inspect', odd, '--model', model, '--key', keyFile, '--json');
    assert.equal(inspect.code, 0, inspect.err);
    assert.match((JSON.parse(inspect.out) as { watermark: { reason: string } }).watermark.reason, /68x64; a Stable Diffusion folder makes sides that are multiples of 8/);
    const detect = await cli('watermark', 'detect', odd, '--model', model, '--key', keyFile);
    assert.equal(detect.code, 1);
    assert.match(detect.err, /is 68x64; .*multiples of 8.*--width and --height/);
    const resized = await cli('watermark', 'detect', odd, '--model', model, '--key', keyFile, '--width', '64', '--height', '64', '--steps', '2', '--json');
    assert.equal(resized.code, 0, resized.err);
    assert.equal((JSON.parse(resized.out) as { width: number }).width, 64);
    for (const [args, message] of [
      [['img2img', '--model', model, '--image', odd, '--prompt', 'x', '--key', keyFile, '--out', path.join(tmp, 'x.png')], /--key and --payload apply to text to image/],
      [['watermark', 'detect', odd, '--model', model, '--key', keyFile, '--geometric'], /--geometric applies to --run/],
      [['watermark', 'detect', odd, '--model', model, '--run', tmp, '--key', keyFile], /give --run or --model, not both/],
      [['inspect', odd, '--model', model, '--key', keyFile, '--max-rotation', '5'], /--max-rotation applies to --run/],
      [['inspect', odd, '--model', model, '--run', tmp], /give --run or --model, not both/],
    ] as [string[], RegExp][]) {
      const r = await cli(...args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, message);
      assert.doesNotMatch(r.err, /\n\s+at /);
    }
    const warned = await cli('sample', '--model', model, '--prompt', 'x', '--key', keyFile, '--scheduler', 'euler_a', '--steps', '2', '--out', path.join(tmp, 'y.png'));
    assert.equal(warned.code, 0, warned.err);
    assert.match(warned.err, /warning: euler_a adds fresh noise at every step/);
  });
});
