/**
 * `diffuse invert` and `diffuse sample --latents`: x_T written and read back, the round trip
 * through the library's invert and generate (the command must give what they give), and the
 * refusals. With a tiny run trained here and the tiny Stable Diffusion folder (its autoencoder
 * made to give back what it decodes; test/latent/helpers.ts).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { DiffusionPipeline, StableDiffusionPipeline, readImage } from '../../src/index.js';
import { loadSafetensors } from '../../src/engine/index.js';
import { cli } from './helpers.js';
import { tinyModel } from '../latent/helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-invert-'));
const run = path.join(root, 'run');
const model = tinyModel(path.join(root, 'model'));

const rmsLevels = (a: Float32Array, b: Float32Array) => (Math.sqrt(a.reduce((s, v, i) => s + (v - Math.min(1, Math.max(-1, b[i]))) ** 2, 0) / a.length) * 255) / 2;

describe('diffuse invert and sample --latents', () => {
  before(async () => {
    mkdirSync(path.join(root, 'train'));
    for (let i = 0; i < 16; i++) await sharp(Buffer.alloc(64, 16 * i), { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(path.join(root, 'train', `${i}.png`));
    const r = await cli('train', '--data', path.join(root, 'train'), '--size', '8', '--channels', '1', '--preset', 'tiny', '--run', run, '--steps', '20', '--batch', '8', '--sample-every', '0', '--timesteps', '40');
    assert.equal(r.code, 0, r.err);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('with a Stable Diffusion folder: x_T as the library inverts it, and sample --latents gives the image back', async () => {
    const input = path.join(root, 'in.png');
    let r = await cli('sample', '--model', model, '--prompt', 'a cat', '--steps', '10', '--seed', '3', '--out', path.join(root, 'grid.png'), '--images', path.join(root, 'made'));
    assert.equal(r.code, 0, r.err);
    renameSync(path.join(root, 'made', '0000.png'), input);
    const out = path.join(root, 'x.safetensors');
    r = await cli('invert', '--model', model, '--image', input, '--prompt', 'a cat', '--steps', '10', '--out', out, '--check', path.join(root, 'check.png'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /wrote .*x\.safetensors \(x_T of 4x8x8, 10 DDIM steps/);
    assert.match(r.err, /wrote .*check\.png \(the image, then its regeneration from x_T: RMS difference [\d.]+ levels of 255\)/);
    const st = await loadSafetensors(out);
    assert.equal(st.metadata.format, 'diffuse-latents-1');
    assert.equal(st.metadata.prompt, 'a cat');
    const image = await readImage(input, { channels: 3 });
    const pipe = await StableDiffusionPipeline.fromPretrained(model);
    try {
      const lib = await pipe.invert({ image: { data: image.data, count: 1, shape: image.shape }, prompt: 'a cat', steps: 10 });
      assert.deepEqual(st.tensors.get('latents')?.data, lib.latents);
      assert.equal(st.metadata.modelHash, await pipe.modelHash());
    } finally {
      await pipe.release();
    }
    const back = path.join(root, 'back.png');
    r = await cli('sample', '--model', model, '--latents', out, '--prompt', 'a cat', '--steps', '10', '--guidance', '1', '--out', back, '--images', path.join(root, 'back'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /text to image, ddim, 10 steps/);
    const again = await readImage(path.join(root, 'back', '0000.png'), { channels: 3 });
    const err = rmsLevels(image.data, again.data);
    assert.ok(err < 8, `round trip: ${err} levels of 255`);
    // Refusals, in one line each.
    for (const [args, message] of [
      [['sample', '--model', model, '--latents', out, '--prompt', 'a|b', '--out', back], /holds 1 x_T but --prompt and --count ask for 2 image\(s\)/],
      [['sample', '--model', model, '--latents', out, '--prompt', 'x', '--width', '64', '--height', '64', '--out', back], /--width and --height come from .*x\.safetensors/],
      [['sample', '--model', model, '--latents', input, '--prompt', 'x', '--out', back], /in\.png: not a valid \.safetensors file/],
      [['invert', '--model', model, '--image', input, '--out', path.join(root, 'x.bin')], /--out must be a \.safetensors file/],
      [['invert', '--model', model, '--run', run, '--image', input, '--out', out], /give --run DIR .* or --model DIR .*, one of them/],
    ] as [string[], RegExp][]) {
      const e = await cli(...args);
      assert.equal(e.code, 1, `${args.join(' ')}: ${e.err}`);
      assert.match(e.err, message);
      assert.doesNotMatch(e.err, /\n\s+at /);
    }
  });

  it('with a run: x_T as the library inverts it; sample --latents starts from it with eta 0', async () => {
    const input = path.join(root, 'grey.png');
    await sharp(Buffer.alloc(64, 120), { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(input);
    const out = path.join(root, 'r.safetensors');
    let r = await cli('invert', '--run', run, '--image', input, '--steps', '8', '--out', out);
    assert.equal(r.code, 0, r.err);
    const st = await loadSafetensors(out);
    const pipe = await DiffusionPipeline.fromRun(run);
    const image = await readImage(input, { channels: 1, size: 8 });
    const lib = await pipe.invert({ image: { data: image.data, count: 1, shape: image.shape }, steps: 8 });
    const regenerated = await pipe.generate({ count: 1, scheduler: 'ddim', eta: 0, steps: 8, initialNoise: lib.data });
    await pipe.release();
    assert.deepEqual(st.tensors.get('latents')?.data, lib.data);
    const grid = path.join(root, 'rback.png');
    r = await cli('sample', '--run', run, '--latents', out, '--steps', '8', '--out', grid, '--images', path.join(root, 'rback'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /1 images, ddim, 8 steps, eta 0/);
    const got = await readImage(path.join(root, 'rback', '0000.png'), { channels: 1 });
    const want = regenerated.data.map((v) => Math.round((Math.min(1, Math.max(-1, v)) + 1) * 127.5) / 127.5 - 1);
    assert.ok(got.data.every((v, i) => Math.abs(v - want[i]) < 1e-6), 'the command gives the library\'s regeneration');
    for (const [args, message] of [
      [['sample', '--run', run, '--latents', out, '--count', '3', '--steps', '8', '--out', grid], /--count 3, but .*r\.safetensors holds 1 x_T; leave --count out/],
      [['sample', '--run', run, '--latents', path.join(root, 'x.safetensors'), '--steps', '8', '--out', grid], /x_T of 4x8x8, but this run starts from 1x8x8/],
      [['invert', '--run', run, '--image', input, '--prompt', 'x', '--out', out], /is not text-conditional: --prompt does not apply/],
    ] as [string[], RegExp][]) {
      const e = await cli(...args);
      assert.equal(e.code, 1, `${args.join(' ')}: ${e.err}`);
      assert.match(e.err, message);
    }
    // Hostile --latents: a FIFO and a device are refused at once, not read for ever.
    execFileSync('mkfifo', [path.join(root, 'pipe.safetensors')]);
    for (const [file, message] of [[path.join(root, 'pipe.safetensors'), /pipe\.safetensors: a FIFO \(named pipe\), not a \.safetensors file$/m], ['/dev/zero', /\/dev\/zero: a device, not a \.safetensors file$/m]] as [string, RegExp][]) {
      const e = await cli('sample', '--run', run, '--latents', file, '--steps', '8', '--out', grid);
      assert.equal(e.code, 1, e.err);
      assert.match(e.err, message);
    }
    writeFileSync(path.join(root, 'other.safetensors'), Buffer.alloc(16));
    const e = await cli('sample', '--run', run, '--latents', path.join(root, 'other.safetensors'), '--steps', '8', '--out', grid);
    assert.equal(e.code, 1);
    assert.match(e.err, /other\.safetensors: not a valid \.safetensors file/);
  });
});
