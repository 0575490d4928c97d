/**
 * A Stable Diffusion folder in Optimum's ONNX layout, run end to end: the tiny random-weight model
 * of test/fixtures/tiny-sd (made by the script there) against its reference run (diffusers'
 * pipeline written out in PyTorch: transformers' CLIP tokenizer, onnxruntime, torch's seeded
 * noise, DDIM as diffusers computes it).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { StableDiffusionPipeline, TorchGenerator } from '../../src/index.js';
import { cli } from '../cli/helpers.js';

const fixtures = path.join(import.meta.dirname, '..', 'fixtures');
const expected = JSON.parse(readFileSync(path.join(fixtures, 'tiny-sd', 'expected.json'), 'utf8')) as {
  cases: { prompt: string; negativePrompt: string; guidance: number; steps: number; seed: number; height: number; width: number; timesteps: number[]; latents: string; image: string }[];
  img2img: { source: string; shape: [number, number, number]; cases: EditCase[] };
  inpaint: { mask: string; cases: EditCase[] };
  fp16: { cases: { prompt: string; negativePrompt: string; guidance: number; steps: number; seed: number; timesteps: number[]; latents: string; image: string }[]; img2img: EditCase };
};
interface EditCase {
  prompt: string;
  negativePrompt: string;
  guidance: number;
  steps: number;
  strength: number;
  seed: number;
  timesteps: number[];
  latents: string;
  image: string;
}
const floats = (b64: string) => new Float32Array(Uint8Array.from(Buffer.from(b64, 'base64')).buffer);
const tmp = mkdtempSync(path.join(tmpdir(), 'diffuse-tiny-sd-'));

/** The fixture model with CLIP's tokenizer folder added, optionally with files replaced. */
function tinyModel(name: string, replace: Record<string, string | Buffer> = {}): string {
  const dir = path.join(tmp, name);
  cpSync(path.join(fixtures, 'tiny-sd', 'model'), dir, { recursive: true });
  cpSync(path.join(fixtures, 'clip-tokenizer', 'tokenizer'), path.join(dir, 'tokenizer'), { recursive: true });
  for (const [f, content] of Object.entries(replace)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), content);
  }
  return dir;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('a Stable Diffusion folder in Optimum\'s ONNX layout', () => {
  let pipe: StableDiffusionPipeline;
  before(async () => {
    pipe = await StableDiffusionPipeline.fromPretrained(tinyModel('model'));
  });
  after(async () => {
    await pipe?.release();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('reads the folder: scaling factor, autoencoder factor, default size, the folder\'s scheduler', () => {
    assert.equal(pipe.scalingFactor, 0.18215);
    assert.equal(pipe.vaeScale, 8);
    assert.equal(pipe.defaultSize, 64);
    const s = pipe.makeScheduler();
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [751, 501, 251, 1]);
  });

  for (const c of expected.cases) {
    it(`generates the reference's latents and image: "${c.prompt}", negative "${c.negativePrompt}", guidance ${c.guidance}`, async () => {
      const steps: number[] = [];
      const out = await pipe.generate({ prompt: c.prompt, negativePrompt: c.negativePrompt, guidance: c.guidance, steps: c.steps, seed: c.seed, width: c.width, height: c.height, onStep: ({ timestep }) => void steps.push(timestep) });
      assert.deepEqual(steps, c.timesteps);
      assert.deepEqual(out.shape, [3, c.height, c.width]);
      // The same arithmetic in float32; ONNX Runtime's kernels are the same library on both sides.
      const dl = maxDiff(out.latents, floats(c.latents));
      const di = maxDiff(out.data, floats(c.image));
      assert.ok(dl < 1e-4 && di < 1e-4, `latents differ by ${dl}, image by ${di}`);
      if (process.env.DIFFUSE_VERBOSE) console.log(`latents differ by ${dl}, image by ${di}`);
    });
  }

  for (const c of expected.img2img.cases) {
    it(`img2img gives the reference's latents and image: "${c.prompt}", strength ${c.strength}, ${c.steps} steps, guidance ${c.guidance}`, async () => {
      const steps: number[] = [];
      const image = { data: floats(expected.img2img.source), count: 1, shape: expected.img2img.shape };
      const out = await pipe.img2img({ image, prompt: c.prompt, negativePrompt: c.negativePrompt, guidance: c.guidance, steps: c.steps, strength: c.strength, seed: c.seed, onStep: ({ timestep }) => void steps.push(timestep) });
      assert.deepEqual(steps, c.timesteps);
      assert.deepEqual(out.shape, expected.img2img.shape);
      const dl = maxDiff(out.latents, floats(c.latents));
      const di = maxDiff(out.data, floats(c.image));
      assert.ok(dl < 1e-4 && di < 1e-4, `latents differ by ${dl}, image by ${di}`);
      if (process.env.DIFFUSE_VERBOSE) console.log(`img2img: latents differ by ${dl}, image by ${di}`);
    });
  }

  for (const c of expected.inpaint.cases) {
    it(`inpaints as diffusers does with a 4-channel U-Net: "${c.prompt}", strength ${c.strength}, ${c.steps} steps, guidance ${c.guidance}`, async () => {
      const steps: number[] = [];
      const image = { data: floats(expected.img2img.source), count: 1, shape: expected.img2img.shape };
      const mask = { data: floats(expected.inpaint.mask), shape: [1, 48, 64] as const };
      const out = await pipe.inpaint({ image, mask, prompt: c.prompt, negativePrompt: c.negativePrompt, guidance: c.guidance, steps: c.steps, strength: c.strength, seed: c.seed, onStep: ({ timestep }) => void steps.push(timestep) });
      assert.deepEqual(steps, c.timesteps);
      const dl = maxDiff(out.latents, floats(c.latents));
      const di = maxDiff(out.data, floats(c.image));
      assert.ok(dl < 1e-4 && di < 1e-4, `latents differ by ${dl}, image by ${di}`);
      if (process.env.DIFFUSE_VERBOSE) console.log(`inpaint: latents differ by ${dl}, image by ${di}`);
      // The kept cells (columns 0-3: the mask's value at x = 0, 8, 16, 24 is 0) end as the encoded
      // image's own latents (the seed's first draw is its posterior's); the others do not.
      const encoded = await pipe.encode(image.data, 1, 48, 64, new TorchGenerator(c.seed));
      for (let i = 0; i < encoded.length; i++) if (i % 8 < 4) assert.equal(out.latents[i], encoded[i], `latent ${i}`);
      assert.ok(out.latents.some((v, i) => i % 8 >= 4 && Math.abs(v - encoded[i]) > 1e-3));
    });
  }

  describe('an inpainting U-Net (9 input channels: latents, mask, masked image latents)', () => {
    const inpaint9 = JSON.parse(readFileSync(path.join(fixtures, 'tiny-sd', 'inpaint', 'expected.json'), 'utf8')) as { source: string; shape: [number, number, number]; mask: string; cases: EditCase[] };
    let pipe9: StableDiffusionPipeline;
    let dir = '';
    before(async () => {
      dir = tinyModel('inpaint9');
      cpSync(path.join(fixtures, 'tiny-sd', 'inpaint'), dir, { recursive: true });
      rmSync(path.join(dir, 'expected.json'));
      pipe9 = await StableDiffusionPipeline.fromPretrained(dir);
    });
    after(() => pipe9.release());

    for (const c of inpaint9.cases) {
      it(`inpaints as diffusers does: "${c.prompt}", strength ${c.strength}, ${c.steps} steps, guidance ${c.guidance}`, async () => {
        assert.equal(pipe9.inpainting, true);
        const steps: number[] = [];
        const image = { data: floats(inpaint9.source), count: 1, shape: inpaint9.shape };
        const mask = { data: floats(inpaint9.mask), shape: [1, 48, 64] as const };
        const out = await pipe9.inpaint({ image, mask, prompt: c.prompt, negativePrompt: c.negativePrompt, guidance: c.guidance, steps: c.steps, strength: c.strength, seed: c.seed, onStep: ({ timestep }) => void steps.push(timestep) });
        assert.deepEqual(steps, c.timesteps);
        const dl = maxDiff(out.latents, floats(c.latents));
        const di = maxDiff(out.data, floats(c.image));
        assert.ok(dl < 1e-4 && di < 1e-4, `latents differ by ${dl}, image by ${di}`);
        if (process.env.DIFFUSE_VERBOSE) console.log(`inpaint, 9 channels: latents differ by ${dl}, image by ${di}`);
      });
    }

    it('diffuse inpaint --model runs it; diffuse sample --model says why not, in one line', async () => {
      const input = path.join(tmp, 'in9.png');
      const maskFile = path.join(tmp, 'mask9.png');
      await sharp({ create: { width: 32, height: 24, channels: 3, background: { r: 40, g: 160, b: 220 } } }).png().toFile(input);
      await sharp({ create: { width: 32, height: 24, channels: 3, background: '#ffffff' } }).png().toFile(maskFile);
      let r = await cli('inpaint', '--model', dir, '--image', input, '--mask', maskFile, '--prompt', 'a red apple', '--steps', '3', '--out', path.join(tmp, 'out9.png'));
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, /wrote .*out9\.png \(1 image\(s\) of 32x24, inpaint/);
      r = await cli('sample', '--model', dir, '--prompt', 'x', '--out', path.join(tmp, 's9.png'));
      assert.equal(r.code, 1);
      assert.match(r.err.trim(), /^diffuse sample: .*unet: an inpainting U-Net \(9 input channels\) only inpaints; text to image needs a folder with an ordinary 4-channel U-Net$/m);
      assert.doesNotMatch(r.err, /\n\s+at /);
    });

    it('refuses text to image, img2img and inversion, which need an ordinary U-Net', async () => {
      const image = { data: floats(inpaint9.source), count: 1, shape: inpaint9.shape };
      for (const p of [pipe9.generate({ prompt: 'x' }), pipe9.img2img({ image, prompt: 'x' }), pipe9.invert({ image })]) {
        await assert.rejects(p, /an inpainting U-Net \(9 input channels\) only inpaints; .* needs a folder with an ordinary 4-channel U-Net/);
      }
    });
  });

  it('DDIM inversion through the encoder: generating from the inverted latents returns to the image\'s latents', async () => {
    const image = { data: floats(expected.img2img.source), count: 1, shape: expected.img2img.shape };
    const target = await pipe.encode(image.data, 1, 48, 64, undefined);
    const rms = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((acc, v, i) => acc + (v - b[i]) ** 2, 0) / a.length);
    const roundTrip = async (steps: number, refine: number) => {
      const inv = await pipe.invert({ image, prompt: 'a red apple', steps, refine });
      assert.deepEqual(inv.shape, [4, 6, 8]);
      const back = await pipe.generate({ prompt: 'a red apple', guidance: 1, steps, width: 64, height: 48, latents: inv.latents });
      return rms(back.latents, target);
    };
    // Measured: plain inversion 0.33 at 10 steps, 0.16 at 25 (the latents' RMS is 0.16: this random
    // U-Net is no denoiser); fixed-point refinement solves each step's implicit equation: 0.005
    // with 4 refinements at 10 steps.
    const [plain10, plain25, refined] = [await roundTrip(10, 0), await roundTrip(25, 0), await roundTrip(10, 4)];
    assert.ok(plain25 < plain10 * 0.7, `plain inversion: ${plain10} at 10 steps, ${plain25} at 25`);
    assert.ok(refined < 0.02, `refined: ${refined}`);
    await assert.rejects(pipe.invert({ image, prompt: ['a', 'b'] }), /2 prompts for 1 images/);
    await assert.rejects(pipe.generate({ prompt: 'x', width: 64, height: 48, latents: new Float32Array(5) }), /latents has 5 values, expected 192/);
  });

  it('img2img: one image for several prompts, and bad input refused in one line', async () => {
    const image = { data: floats(expected.img2img.source), count: 1, shape: expected.img2img.shape };
    const two = await pipe.img2img({ image, prompt: ['a red apple', 'a green pear'], steps: 4, strength: 0.5 });
    assert.equal(two.count, 2);
    await assert.rejects(pipe.img2img({ image, prompt: 'x', strength: 1.5 }), /strength must be in \[0, 1\], got 1\.5/);
    await assert.rejects(pipe.img2img({ image, prompt: 'x', steps: 2, strength: 0.2 }), /leaves no step to run/);
    await assert.rejects(pipe.img2img({ image: { data: new Float32Array(3 * 30 * 32), count: 1, shape: [3, 30, 32] }, prompt: 'x' }), /height must be a positive multiple of 8 pixels, got 30/);
    await assert.rejects(pipe.img2img({ image: { ...image, count: 2 }, prompt: 'x' }), /values for 2 image\(s\)/);
    const noEncoder = tinyModel('no-encoder');
    rmSync(path.join(noEncoder, 'vae_encoder'), { recursive: true });
    const p = await StableDiffusionPipeline.fromPretrained(noEncoder);
    try {
      await assert.rejects(p.img2img({ image, prompt: 'x' }), /vae_encoder\/model\.onnx: no such file \(img2img, inversion and the detector need the folder's vae_encoder\)/);
    } finally {
      await p.release();
    }
  });

  it('is deterministic for a seed, and the seed, the prompt and the guidance each change the image', async () => {
    const base = { prompt: 'a red apple', steps: 3, width: 32, height: 48 };
    const a = await pipe.generate(base);
    const b = await pipe.generate(base);
    assert.deepEqual(a.data, b.data);
    assert.deepEqual(a.shape, [3, 48, 32]);
    for (const change of [{ seed: 1 }, { prompt: 'a green pear' }, { guidance: 2 }]) {
      const c = await pipe.generate({ ...base, ...change });
      assert.ok(maxDiff(a.data, c.data) > 1e-3, JSON.stringify(change));
    }
    // Several prompts at once: x_T is one draw for the batch (as diffusers draws it), so the first
    // image is the one its prompt gives alone; the second differs.
    const two = await pipe.generate({ ...base, prompt: ['a red apple', 'a green pear'] });
    assert.equal(two.count, 2);
    const per = a.data.length;
    assert.ok(maxDiff(two.data.subarray(0, per), a.data) < 1e-6);
    assert.ok(maxDiff(two.data.subarray(per), a.data) > 1e-3);
  });

  it('refuses bad options in one line', async () => {
    await assert.rejects(pipe.generate({ prompt: 'x', width: 30 }), /width must be a positive multiple of 8 pixels, got 30/);
    await assert.rejects(pipe.generate({ prompt: 'x', steps: 0 }), /steps must be a whole number >= 1/);
    await assert.rejects(pipe.generate({ prompt: [] }), /at least one prompt/);
    await assert.rejects(pipe.generate({ prompt: ['a', 'b'], negativePrompt: ['c'] }), /1 negative prompts for 2 prompts/);
  });

  it('runs the older exports too: int32 input_ids and an int64 timestep of shape [1]', async () => {
    const legacy = path.join(fixtures, 'tiny-sd', 'legacy');
    const dir = tinyModel('legacy', { 'text_encoder/model.onnx': readFileSync(path.join(legacy, 'text_encoder', 'model.onnx')), 'unet/model.onnx': readFileSync(path.join(legacy, 'unet', 'model.onnx')) });
    const old = await StableDiffusionPipeline.fromPretrained(dir);
    try {
      const c = expected.cases[0];
      const out = await old.generate({ prompt: c.prompt, negativePrompt: c.negativePrompt, guidance: c.guidance, steps: c.steps, seed: c.seed });
      assert.ok(maxDiff(out.data, floats(c.image)) < 1e-4);
    } finally {
      await old.release();
    }
  });

  it('diffuse sample --model: a grid (one row per prompt), each image, the folder\'s or a named scheduler', async () => {
    const dir = tinyModel('cli');
    const out = path.join(tmp, 'cli-out', 'grid.png');
    const each = path.join(tmp, 'cli-out', 'each');
    let r = await cli('sample', '--model', dir, '--prompt', 'a red apple|a green pear', '--count', '2', '--steps', '3', '--width', '32', '--height', '24', '--out', out, '--images', each);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /wrote .*grid\.png \(4 image\(s\) of 32x24, text to image, DDIMScheduler, 3 steps, guidance 7\.5, seed 0/);
    const grid = await sharp(out).metadata();
    assert.deepEqual([grid.width, grid.height], [2 * 32 + 3 * 2, 2 * 24 + 3 * 2]);
    // The first file is the library's image for the same prompt and seed (count 2: its own noise draw).
    const lib = await pipe.generate({ prompt: ['a red apple', 'a red apple', 'a green pear', 'a green pear'], steps: 3, width: 32, height: 24 });
    const { data } = await sharp(path.join(each, '0000.png')).raw().toBuffer({ resolveWithObject: true });
    const want = Array.from({ length: 32 * 24 * 3 }, (_, k) => {
      const [y, x, c] = [Math.floor(k / 96), Math.floor(k / 3) % 32, k % 3];
      return Math.round(Math.min(1, Math.max(-1, lib.data[c * 32 * 24 + y * 32 + x])) * 127.5 + 127.5);
    });
    assert.ok(want.every((v, k) => Math.abs(v - data[k]) <= 1));
    r = await cli('sample', '--model', dir, '--prompt', 'a red apple', '--scheduler', 'euler', '--steps', '2', '--width', '16', '--height', '16', '--out', out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /euler, 2 steps/);
  });

  it('diffuse img2img --model: the input at its size rounded down to a multiple of 8, the library\'s result', async () => {
    const dir = tinyModel('cli-img2img');
    const input = path.join(tmp, 'cli-img2img', 'in.png');
    // 37x29: read as 32x24 (resized down to multiples of 8, as diffusers' image processor does).
    await sharp({ create: { width: 37, height: 29, channels: 3, background: { r: 200, g: 90, b: 30 } } }).png().toFile(input);
    const out = path.join(tmp, 'cli-img2img', 'out.png');
    let r = await cli('img2img', '--model', dir, '--image', input, '--prompt', 'a red apple', '--strength', '0.5', '--steps', '4', '--out', out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /wrote .*out\.png \(1 image\(s\) of 32x24, img2img, strength 0\.5, DDIMScheduler, 4 steps/);
    // The grid of one image: the image inside a 2-pixel border.
    const got = await sharp(out).extract({ left: 2, top: 2, width: 32, height: 24 }).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([got.info.width, got.info.height], [32, 24]);
    const flat = Float32Array.from({ length: 3 * 24 * 32 }, (_, k) => [200, 90, 30][Math.floor(k / (24 * 32))] / 127.5 - 1);
    const lib = await pipe.img2img({ image: { data: flat, count: 1, shape: [3, 24, 32] }, prompt: 'a red apple', strength: 0.5, steps: 4 });
    const want = Array.from({ length: 32 * 24 * 3 }, (_, k) => Math.round(Math.min(1, Math.max(-1, lib.data[(k % 3) * 32 * 24 + Math.floor(k / 3)])) * 127.5 + 127.5));
    assert.ok(want.every((v, k) => Math.abs(v - got.data[k]) <= 1));
    r = await cli('img2img', '--model', dir, '--image', input, '--prompt', 'x', '--width', '16', '--out', out);
    assert.match(r.err, /give both --width and --height, or neither/);
    r = await cli('img2img', '--model', dir, '--image', input, '--prompt', 'x', '--strength', '0.1', '--steps', '5', '--out', out);
    assert.match(r.err, /--strength 0\.1 with --steps 5 leaves no step to run/);
  });

  it('diffuse inpaint --model: the mask stretched to the image, white generated, the library\'s result', async () => {
    const dir = tinyModel('cli-inpaint');
    const input = path.join(tmp, 'cli-inpaint', 'in.png');
    const maskFile = path.join(tmp, 'cli-inpaint', 'mask.png');
    await sharp({ create: { width: 32, height: 24, channels: 3, background: { r: 40, g: 160, b: 220 } } }).png().toFile(input);
    // A 16x12 mask, white on its right half: stretched to 32x24.
    const m = Buffer.alloc(16 * 12, 0).map((_, k) => (k % 16 >= 8 ? 255 : 0));
    await sharp(m, { raw: { width: 16, height: 12, channels: 1 } }).png().toFile(maskFile);
    const out = path.join(tmp, 'cli-inpaint', 'out.png');
    let r = await cli('inpaint', '--model', dir, '--image', input, '--mask', maskFile, '--prompt', 'a red apple', '--steps', '4', '--out', out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /wrote .*out\.png \(1 image\(s\) of 32x24, inpaint, DDIMScheduler, 4 steps/);
    const got = await sharp(out).extract({ left: 2, top: 2, width: 32, height: 24 }).raw().toBuffer({ resolveWithObject: true });
    const flat = Float32Array.from({ length: 3 * 24 * 32 }, (_, k) => [40, 160, 220][Math.floor(k / (24 * 32))] / 127.5 - 1);
    const mask = Float32Array.from({ length: 24 * 32 }, (_, k) => (k % 32 >= 16 ? 1 : 0));
    const lib = await pipe.inpaint({ image: { data: flat, count: 1, shape: [3, 24, 32] }, mask: { data: mask, shape: [1, 24, 32] }, prompt: 'a red apple', steps: 4 });
    const want = Array.from({ length: 32 * 24 * 3 }, (_, k) => Math.round(Math.min(1, Math.max(-1, lib.data[(k % 3) * 32 * 24 + Math.floor(k / 3)])) * 127.5 + 127.5));
    assert.ok(want.every((v, k) => Math.abs(v - got.data[k]) <= 1));
    r = await cli('inpaint', '--model', dir, '--image', input, '--mask', maskFile, '--prompt', 'x', '--jump-repeats', '2', '--out', out);
    assert.match(r.err, /--jump-repeats applies to --run only/);
    r = await cli('inpaint', '--run', dir, '--image', input, '--mask', maskFile, '--strength', '0.5', '--out', out);
    assert.match(r.err, /--strength applies to --model only/);
  });

  it('diffuse sample --model refuses what it cannot do in one line', async () => {
    const dir = tinyModel('cli-errors');
    const cases: [string[], RegExp][] = [
      [['--run', dir], /give --run DIR \(a Diffuse run\) or --model DIR \(a Stable Diffusion folder\), not both/],
      [['--frames', 'f.png'], /--frames applies to --run only/],
      [['--eta', '1'], /--eta applies to --run only/],
      [['--karras'], /--karras and --spacing apply with --scheduler NAME/],
      [['--width', '30'], /width must be a positive multiple of 8 pixels, got 30/],
      [['--out', 'x.jpg'], /--out must be a \.png file/],
    ];
    for (const [extra, re] of cases) {
      const r = await cli('sample', '--model', dir, '--prompt', 'x', '--steps', '1', '--out', path.join(tmp, 'e.png'), ...extra);
      assert.equal(r.code, 1, extra.join(' '));
      assert.match(r.err, re);
      // One line for the error (after, at most, the note that the images would be unsigned); no stack.
      const lines = r.err.trim().split('\n').filter((l) => l.trim() && !/^note: the images are unsigned/.test(l));
      assert.equal(lines.length, 1, r.err);
    }
    const r = await cli('sample', '--model', dir, '--out', path.join(tmp, 'e.png'));
    assert.match(r.err, /--model needs --prompt/);
  });

  it('signs what --model writes with content credentials, which inspect reads back as declared AI-generated', async () => {
    const dir = tinyModel('cli-c2pa');
    const c2pa = path.join(tmp, 'c2pa-chain');
    let r = await cli('keygen', '--c2pa', '--out', c2pa, '--name', 'Test Lab');
    assert.equal(r.code, 0, r.err);
    const out = path.join(tmp, 'signed', 'grid.png');
    const each = path.join(tmp, 'signed', 'each');
    r = await cli('sample', '--model', dir, '--prompt', 'a red apple', '--count', '2', '--steps', '2', '--width', '16', '--height', '16', '--out', out, '--images', each, '--c2pa', c2pa);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /signed 3 PNG file\(s\) with content credentials/);
    r = await cli('inspect', path.join(each, '0001.png'), '--trust', path.join(c2pa, 'c2pa-root.pem'), '--json', '--metadata-only');
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(r.out.trim()) as { credentials: { state: string; claims?: { diffuse?: Record<string, unknown> } }; verdict: { restsOn: string; summary: string } };
    assert.equal(report.credentials.state, 'trusted');
    assert.equal(report.verdict.restsOn, 'credentials');
    assert.match(report.verdict.summary, /^declared AI-GENERATED \(trainedAlgorithmicMedia\) by Diffuse/);
    const record = report.credentials.claims?.diffuse ?? {};
    assert.equal(record.run, 'cli-c2pa');
    assert.equal(record.prompt, 'a red apple');
    assert.equal(record.index, 1);
    assert.equal(record.modelHash, await pipe.modelHash());
    assert.match(String(record.modelHash), /^[0-9a-f]{64}$/);
    const input = path.join(tmp, 'signed', 'in.png');
    await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 9, g: 99, b: 199 } } }).png().toFile(input);
    r = await cli('img2img', '--model', dir, '--image', input, '--prompt', 'x', '--steps', '2', '--strength', '0.5', '--out', path.join(tmp, 'signed', 'edit.png'), '--c2pa', c2pa);
    assert.equal(r.code, 0, r.err);
    r = await cli('inspect', path.join(tmp, 'signed', 'edit.png'), '--trust', path.join(c2pa, 'c2pa-root.pem'), '--json', '--metadata-only');
    const edited = JSON.parse(r.out.trim()) as { credentials: { claims?: { diffuse?: Record<string, unknown>; ingredients?: { title?: string }[] } } };
    assert.equal(edited.credentials.claims?.diffuse?.operation, 'img2img');
    assert.equal(edited.credentials.claims?.diffuse?.strength, 0.5);
  });

  it('runs float16 exports (float16 weights, inputs and outputs; latents and scheduler in float32) as the reference does', async () => {
    const fp16 = path.join(fixtures, 'tiny-sd', 'fp16');
    const parts = ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder'];
    const dir = tinyModel('fp16', Object.fromEntries(parts.map((p) => [`${p}/model.onnx`, readFileSync(path.join(fp16, p, 'model.onnx'))])));
    const half = await StableDiffusionPipeline.fromPretrained(dir);
    try {
      const c = expected.fp16.cases[0];
      const out = await half.generate({ prompt: c.prompt, negativePrompt: c.negativePrompt, guidance: c.guidance, steps: c.steps, seed: c.seed });
      const [dl, di] = [maxDiff(out.latents, floats(c.latents)), maxDiff(out.data, floats(c.image))];
      if (process.env.DIFFUSE_VERBOSE) console.log(`fp16: latents differ by ${dl}, image by ${di}`);
      assert.ok(dl < 1e-3 && di < 1e-3, `latents differ by ${dl}, image by ${di}`);
      // Half precision shows: the float32 model's image differs by more than the conversions' error.
      assert.ok(maxDiff(out.data, floats(expected.cases[0].image)) > 1e-4);
      const e = expected.fp16.img2img;
      const edited = await half.img2img({ image: { data: floats(expected.img2img.source), count: 1, shape: expected.img2img.shape }, prompt: e.prompt, guidance: e.guidance, steps: e.steps, strength: e.strength, seed: e.seed });
      const de = maxDiff(edited.data, floats(e.image));
      if (process.env.DIFFUSE_VERBOSE) console.log(`fp16 img2img: image differs by ${de}`);
      assert.ok(de < 1e-3, `img2img differs by ${de}`);
    } finally {
      await half.release();
    }
  });

  it('refuses folders it cannot run, naming the file', async () => {
    const index = (cls: string) => JSON.stringify({ _class_name: cls });
    await assert.rejects(StableDiffusionPipeline.fromPretrained(path.join(tmp, 'nothing')), /no such model folder/);
    await assert.rejects(StableDiffusionPipeline.fromPretrained(tinyModel('xl', { 'model_index.json': index('StableDiffusionXLPipeline') })), /StableDiffusionXLPipeline \(two text encoders, extra U-Net inputs\) is not supported yet/);
    await assert.rejects(StableDiffusionPipeline.fromPretrained(tinyModel('flux', { 'model_index.json': index('FluxPipeline') })), /a FluxPipeline; Stable Diffusion pipelines only/);
    const torchDir = tinyModel('torch', { 'unet/diffusion_pytorch_model.safetensors': 'x' });
    rmSync(path.join(torchDir, 'unet', 'model.onnx'));
    await assert.rejects(StableDiffusionPipeline.fromPretrained(torchDir), /unet\/model\.onnx: no such file \(this is a PyTorch folder: export it to ONNX first/);
    await assert.rejects(StableDiffusionPipeline.fromPretrained(tinyModel('lms', { 'scheduler/scheduler_config.json': index('LMSDiscreteScheduler') })), /scheduler_config\.json: LMSDiscreteScheduler is not supported/);
    await assert.rejects(StableDiffusionPipeline.fromPretrained(tinyModel('badunet', { 'unet/model.onnx': 'not onnx' })), /unet\/model\.onnx: ONNX Runtime cannot load it/);
    const swapped = readFileSync(path.join(fixtures, 'tiny-sd', 'model', 'vae_decoder', 'model.onnx'));
    await assert.rejects(StableDiffusionPipeline.fromPretrained(tinyModel('swapped', { 'unet/model.onnx': swapped })), /unet\/model\.onnx: has no input 'sample', input 'timestep', input 'encoder_hidden_states', output 'out_sample'/);
    await assert.rejects(StableDiffusionPipeline.fromPretrained(tinyModel('sevenchannels', { 'unet/config.json': JSON.stringify({ in_channels: 7 }) })), /in_channels 7; the autoencoder's 4 latent channels need a U-Net of 4 \(or 9 for inpainting\)/);
  });
});
