import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import sharp from 'sharp';
import { errorLine } from '../../src/cli/main.js';
import { OptionError } from '../../src/engine/errors.js';
import { cli } from './helpers.js';
import { BpeTokenizer, exportTextEncoder, transformerTextEncoder } from '../../src/text/index.js';
import { ParamScope, ParamStore, input } from '../../src/engine/index.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function png(file: string, w: number, h: number, value: number): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  await sharp(Buffer.alloc(w * h * 3, value), { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
}

describe('CLI errors are one line with a non-zero exit code', () => {
  before(async () => {
    for (let i = 0; i < 4; i++) await png(path.join(root, 'ok', i % 2 ? 'cats' : 'dogs', `${i}.png`), 8, 8, 40 * i);
    await png(path.join(root, 'mixed', 'a.png'), 8, 8, 10);
    await png(path.join(root, 'mixed', 'b.png'), 12, 8, 10);
    mkdirSync(path.join(root, 'corrupt'), { recursive: true });
    await png(path.join(root, 'corrupt', 'a.png'), 8, 8, 10);
    writeFileSync(path.join(root, 'corrupt', 'b.png'), 'not a png');
    mkdirSync(path.join(root, 'empty'), { recursive: true });
    writeFileSync(path.join(root, 'empty', 'notes.txt'), 'no images here');
    // A run folder whose config.json is a FIFO: reading it would block for ever.
    mkdirSync(path.join(root, 'fifo-run'));
    execFileSync('mkfifo', [path.join(root, 'fifo-run', 'config.json')]);
    mkdirSync(path.join(root, 'json-run'));
    writeFileSync(path.join(root, 'json-run', 'config.json'), '{oops');
  });

  const cases: [string, string[], RegExp][] = [
    ['unknown command', ['fly'], /unknown command 'fly' \(commands: train, train-vae, sample, img2img, inpaint, invert, noise, schedule, eval, keygen, watermark, inspect, detector, scan, worker, export, studio\)/],
    ['unknown flag', ['train', '--stpes', '3'], /Unknown option '--stpes'.*see 'diffuse train --help'/],
    ['no stopping rule', ['train', '--data', 'mnist'], /give --steps N or --minutes M/],
    ['lr decay without steps', ['train', '--minutes', '1', '--lr-decay', 'cosine'], /--lr-decay cosine decays over the run: give --steps N/],
    ['unknown lr decay', ['train', '--steps', '1', '--lr-decay', 'step'], /--lr-decay must be one of constant, cosine, got 'step'/],
    ['bad number', ['train', '--steps', 'many'], /--steps must be an integer >= 1, got 'many'/],
    ['unknown schedule', ['train', '--steps', '1', '--schedule', 'fancy'], /--schedule must be one of linear, scaled_linear, squaredcos_cap_v2, sigmoid or cosine, got 'fancy'/],
    ['unknown preset', ['train', '--steps', '1', '--preset', 'huge'], /unknown model preset 'huge' \(known: tiny, mnist, color32, reference, color64\)/],
    ['missing folder', ['train', '--steps', '1', '--data', '/nonexistent/images'], /\/nonexistent\/images: no such folder/],
    ['folder without images', ['train', '--steps', '1', '--data', path.join(root, 'empty')], /empty: no images found/],
    ['mixed sizes', ['train', '--steps', '1', '--data', path.join(root, 'mixed')], /b\.png is 12x8 but .*a\.png is 8x8; pass --size N/],
    ['corrupt image', ['train', '--steps', '1', '--data', path.join(root, 'corrupt'), '--size', '8'], /b\.png: cannot decode image .*remove or replace the file/],
    ['model does not fit data', ['train', '--steps', '1', '--data', path.join(root, 'ok'), '--size', '10', '--preset', 'mnist', '--run', path.join(root, 'r-fit')], /UNet config: imageSize 10 is not divisible by 2\^2/],
    ['attention at a missing level', ['train', '--steps', '1', '--data', path.join(root, 'ok'), '--size', '8', '--preset', 'tiny', '--attention', '5', '--run', path.join(root, 'r-attn')], /UNet config: attentionResolutions 5 is not a resolution of this model \(levels: 8, 4\)/],
    ['bad snr gamma', ['train', '--steps', '1', '--snr-gamma', '0'], /--snr-gamma must be a number > 0, got '0'/],
    ['bad timestep sampling', ['train', '--steps', '1', '--t-sampling', 'sobol'], /--t-sampling must be one of uniform, stratified, got 'sobol'/],
    ['bad channel mults', ['train', '--steps', '1', '--channel-mults', '1,two'], /--channel-mults must be comma-separated positive integers, got '1,two'/],
    ['batch larger than data', ['train', '--steps', '1', '--data', path.join(root, 'ok'), '--preset', 'tiny', '--run', path.join(root, 'r-batch')], /batch size 64 is larger than the 4 training images; lower --batch/],
    ['unknown scheduler', ['sample', '--run', path.join(root, 'run'), '--scheduler', 'plms'], /--scheduler must be one of ddpm, ddim, pndm, euler, euler_a, heun, dpm\+\+2m, dpm\+\+1, got 'plms'/],
    ['sample without run', ['sample'], /--run DIR \(a folder written by diffuse train\) or --model DIR \(a Stable Diffusion folder of ONNX components\) is required/],
    ['bad clip-sample', ['sample', '--run', path.join(root, 'run'), '--clip-sample', 'maybe'], /--clip-sample must be one of auto, on, off, got 'maybe'/],
    ['bad spacing', ['sample', '--run', path.join(root, 'run'), '--spacing', 'even'], /--spacing must be one of auto, leading, trailing, linspace, got 'even'/],
    ['bad eta', ['sample', '--run', path.join(root, 'run'), '--eta', 'lots'], /--eta must be a number >= 0 or auto, got 'lots'/],
    ['not a run folder', ['sample', '--run', root], /not a run folder \(no config\.json\)/],
    ['config.json not JSON', ['sample', '--run', path.join(root, 'json-run')], /json-run\/config\.json: not valid JSON/],
    ['config.json is a FIFO', ['sample', '--run', path.join(root, 'fifo-run')], /fifo-run\/config\.json: a FIFO \(named pipe\), not a settings file/],
    ['key is a device', ['watermark', 'detect', '/dev/null', '--run', path.join(root, 'fifo-run'), '--key', '/dev/zero'], /\/dev\/zero: a device, not a settings file/],
    ['trust list is a FIFO', ['inspect', '/dev/null', '--trust', path.join(root, 'fifo-run', 'config.json')], /fifo-run\/config\.json: a FIFO \(named pipe\), not a settings file/],
    ['allowed list is a device', ['inspect', '/dev/null', '--trust-allowed', '/dev/zero'], /\/dev\/zero: a device, not a settings file/],
    ['noise without image', ['noise'], /give one image: a file path or mnist:INDEX/],
    ['noise with missing file', ['noise', '/nonexistent.png'], /\/nonexistent\.png: no such file/],
  ];
  for (const [name, args, re] of cases) {
    it(name, async () => {
      const r = await cli(...args);
      assert.equal(r.code, 1, `exit code for ${args.join(' ')}: ${r.err}`);
      assert.match(r.err, re);
      assert.ok(!/\n\s+at /.test(r.err), `no stack trace: ${r.err}`);
    });
  }
});

describe('CLI end to end on a tiny folder data set', () => {
  it('trains, resumes, samples with DDPM and DDIM, writes strips and GIFs', async () => {
    const run = path.join(root, 'run');
    let r = await cli('train', '--data', path.join(root, 'ok'), '--size', '8', '--channels', '1', '--preset', 'tiny', '--run', run, '--steps', '3', '--batch', '2', '--sample-every', '0', '--timesteps', '20');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /Stopped by steps at step 3/);
    r = await cli('train', '--data', path.join(root, 'ok'), '--run', run, '--steps', '3');
    assert.equal(r.code, 1);
    assert.match(r.err, /already holds a run; set --resume to continue it, or choose another --run$/m);
    r = await cli('train', '--run', run, '--resume', '--steps', '5');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /at step 5/);
    for (const [sched, steps, frames] of [['ddpm', '20', 'strip.png'], ['ddim', '5', 'anim.gif'], ['dpm++2m', '4', 'dpm.png'], ['heun', '3', 'heun.gif'], ['euler_a', '4', 'ea.png']]) {
      const out = path.join(root, `${sched}.png`);
      r = await cli('sample', '--run', run, '--scheduler', sched, '--steps', steps, '--count', '4', '--out', out, '--frames', path.join(root, frames), '--frame-count', '3');
      assert.equal(r.code, 0, r.err);
      assert.ok(existsSync(out) && existsSync(path.join(root, frames)));
    }
    const meta = await sharp(path.join(root, 'strip.png')).metadata();
    assert.equal(meta.width, 2 * (3 * 8 + 4 * 2)); // 3 frames of 8 px, 2 px padding, scale 2
    r = await cli('sample', '--run', run, '--steps', '21', '--out', path.join(root, 'x.png'));
    assert.match(r.err, /--steps 21 exceeds the run's 20 training timesteps/);
  });

  it('trains an autoencoder and a latent model on its latents, samples and edits through it, and refuses misuse', async () => {
    const vae = path.join(root, 'vae');
    let r = await cli('train-vae', '--data', path.join(root, 'ok'), '--size', '8', '--preset', 'tiny', '--run', vae, '--steps', '3', '--batch', '2', '--sample-every', '0');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /latents 4x4x4/);
    assert.match(r.err, /Reconstruction of 4 training images: PSNR -?\d+\.\d+ dB/);
    assert.ok(existsSync(path.join(vae, 'samples', 'final.png')));
    r = await cli('train-vae', '--data', path.join(root, 'ok'), '--size', '10', '--preset', 'f4', '--run', path.join(root, 'vae-10'), '--steps', '1');
    assert.match(r.err, /--size 10 is not a multiple of the f4 preset's downsampling factor 4/);
    const latent = path.join(root, 'latent');
    r = await cli('train', '--vae', vae, '--data', path.join(root, 'ok'), '--preset', 'tiny', '--attention', 'none', '--run', latent, '--steps', '3', '--batch', '2', '--sample-every', '0', '--timesteps', '20', '--flip');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /Latents 4x4x4 of 4 images and their mirror images .*scaling factor \d/);
    assert.ok(existsSync(path.join(latent, 'autoencoder', 'weights.safetensors')) && existsSync(path.join(latent, 'latents.safetensors')));
    r = await cli('train', '--run', latent, '--resume', '--steps', '4');
    assert.equal(r.code, 0, r.err);
    const out = path.join(root, 'latent.png');
    r = await cli('sample', '--run', latent, '--steps', '5', '--count', '2', '--out', out);
    assert.equal(r.code, 0, r.err);
    const meta = await sharp(out).metadata();
    assert.ok(meta.width! >= 16 && meta.height! >= 8, 'two decoded 8x8 images');
    const colour = path.join(root, 'latent-in.png');
    await sharp(Buffer.from(Array.from({ length: 192 }, (_, i) => (i % 3) * 100 + (i % 7))), { raw: { width: 8, height: 8, channels: 3 } }).png().toFile(colour);
    r = await cli('img2img', '--run', latent, '--image', colour, '--steps', '5', '--out', path.join(root, 'latent-edit.png'));
    assert.equal(r.code, 0, r.err);
    r = await cli('inpaint', '--run', latent, '--image', colour, '--mask', path.join(root, 'ok', 'dogs', '2.png'), '--steps', '5', '--out', path.join(root, 'latent-fill.png'));
    assert.equal(r.code, 0, r.err);
    assert.ok(existsSync(path.join(root, 'latent-fill.png')));
    // The detector and inspect work on a latent run (AEROBLADE's reconstruction error among its features).
    const real = path.join(root, 'latent-real');
    mkdirSync(real);
    for (let i = 0; i < 50; i++) await sharp(Buffer.from(Array.from({ length: 192 }, (_, j) => (j * (i + 3) * 37) % 251)), { raw: { width: 8, height: 8, channels: 3 } }).png().toFile(path.join(real, `${i}.png`));
    r = await cli('detector', 'calibrate', '--run', latent, '--real', real);
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(readFileSync(path.join(latent, 'detector.json'), 'utf8')) as { space: string }).space, 'latent');
    r = await cli('inspect', colour, '--run', latent, '--steps', '4', '--json');
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(r.out) as { detector?: { status: string; probability?: number }; watermark?: { status: string } };
    assert.equal(report.detector?.status, 'checked', r.out);
    assert.ok(report.detector!.probability! >= 0 && report.detector!.probability! <= 1);
    for (const [args, re] of [
      [['train', '--vae', vae, '--run', latent, '--resume', '--steps', '5'], /--vae starts a latent run; a resumed run uses the autoencoder in its own folder/],
      [['train', '--vae', vae, '--data', path.join(root, 'ok'), '--run', latent, '--steps', '5'], /already holds a run/],
      [['train', '--vae', latent, '--data', path.join(root, 'ok'), '--run', path.join(root, 'latent-2'), '--steps', '5'], /not an autoencoder config .*this is a U-Net run/],
      [['train', '--vae', path.join(root, 'nowhere'), '--data', path.join(root, 'ok'), '--run', path.join(root, 'latent-3'), '--steps', '5'], /not an autoencoder folder \(no config\.json\)/],
      [['inspect', colour, '--run', latent, '--max-rotation', '5'], /is a latent run: it is searched for turns with --geometric \(any angle; about 120 inversions per image\), not --max-rotation/],
    ] as [string[], RegExp][]) {
      r = await cli(...args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, re);
      assert.ok(!/\n\s+at /.test(r.err), `no stack trace: ${r.err}`);
    }
  });

  it('records model and sampling changes to the preset in config.json', async () => {
    const run = path.join(root, 'run-flags');
    const r = await cli('train', '--data', path.join(root, 'ok'), '--size', '8', '--channels', '1', '--preset', 'tiny', '--run', run, '--steps', '2', '--batch', '2', '--sample-every', '0', '--timesteps', '20', '--zero-init', '--scale-shift-norm', '--t-sampling', 'stratified', '--loss', 'min_snr', '--snr-gamma', '2');
    assert.equal(r.code, 0, r.err);
    const config = JSON.parse(readFileSync(path.join(run, 'config.json'), 'utf8')) as { model: { zeroInit?: boolean; scaleShiftNorm?: boolean }; timestepSampling?: string; minSnrGamma: number };
    assert.equal(config.model.zeroInit, true);
    assert.equal(config.model.scaleShiftNorm, true);
    assert.equal(config.timestepSampling, 'stratified');
    assert.equal(config.minSnrGamma, 2);
  });

  it('says when a time limit stopped the learning-rate decay short, and how to finish it', async () => {
    const run = path.join(root, 'run-cut');
    let r = await cli('train', '--data', path.join(root, 'ok'), '--size', '8', '--channels', '1', '--preset', 'tiny', '--run', run, '--steps', '1000', '--minutes', '0.0001', '--lr-decay', 'cosine', '--warmup', '0', '--batch', '2', '--sample-every', '0', '--timesteps', '20');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /Stopped by time at step (\d+)/);
    assert.match(r.err, new RegExp(`note: the learning rate was still decaying \\(step \\d+ of 1000\\); 'diffuse train --run ${run.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} --resume --steps 1000' finishes the run`));
    r = await cli('train', '--data', path.join(root, 'ok'), '--size', '8', '--channels', '1', '--preset', 'tiny', '--run', path.join(root, 'run-whole'), '--steps', '3', '--lr-decay', 'cosine', '--warmup', '0', '--batch', '2', '--sample-every', '0', '--timesteps', '20');
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.err, /still decaying/);
  });

  it('refuses an output path it cannot write, in one line, without losing the run', async () => {
    // Paths that no user, root included, can write: a folder inside /proc, a file in /proc, a folder under a file.
    const asFolder = path.join(root, 'a-file');
    writeFileSync(asFolder, 'x');
    for (const [args, re] of [
      [['schedule', '--out', '/proc/diffuse-test/x.png'], /\/proc\/diffuse-test\/x\.png: cannot write to folder \/proc\/diffuse-test; choose another --out path/],
      [['noise', 'mnist:0', '--out', '/proc/x.png'], /\/proc\/x\.png: cannot write the image \(.*\); choose another --out path/],
      [['sample', '--run', path.join(root, 'run'), '--steps', '2', '--count', '2', '--out', path.join(asFolder, 'x.png')], /a-file is not a folder; choose another --out path/],
    ] as [string[], RegExp][]) {
      const r = await cli(...args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, re);
      assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
    }
    assert.ok(readdirSync(path.join(root, 'run', 'checkpoints')).includes('latest.safetensors'));
  });

  it('edits images with img2img and inpaint, and refuses bad input without writing anything', async () => {
    const run = path.join(root, 'run');
    const input = path.join(root, 'colour.png'); // 8x8 colour: the run takes 8x8 grey
    await sharp(Buffer.from(Array.from({ length: 192 }, (_, i) => (i % 3) * 100)), { raw: { width: 8, height: 8, channels: 3 } }).png().toFile(input);
    const grey = path.join(root, 'grey.png');
    await sharp(Buffer.alloc(64, 200), { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(grey);
    const mask = path.join(root, 'mask.png');
    await sharp(Buffer.from(Array.from({ length: 64 }, (_, i) => (i >= 32 ? 255 : 0))), { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(mask);
    const big = path.join(root, 'big.png');
    await sharp(Buffer.alloc(16 * 16, 9), { raw: { width: 16, height: 16, channels: 1 } }).png().toFile(big);
    let r = await cli('img2img', '--run', run, '--image', grey, '--strength', '0.5', '--steps', '4', '--count', '3', '--out', path.join(root, 'i2i.png'), '--compare', path.join(root, 'i2i-side.png'));
    assert.equal(r.code, 0, r.err);
    assert.equal((await sharp(path.join(root, 'i2i-side.png')).metadata()).width, 2 * (4 * 8 + 5 * 2)); // input + 3 results
    r = await cli('inpaint', '--run', run, '--image', grey, '--mask', mask, '--steps', '4', '--jump-length', '2', '--jump-repeats', '2', '--count', '2', '--out', path.join(root, 'inp.png'), '--compare', path.join(root, 'inp-side.png'));
    assert.equal(r.code, 0, r.err);
    assert.equal((await sharp(path.join(root, 'inp-side.png')).metadata()).width, 2 * (4 * 8 + 5 * 2)); // input + mask + 2 results
    const out = path.join(root, 'never.png');
    const bad: [string[], RegExp][] = [
      [['img2img', '--run', run, '--image', '/nonexistent.png', '--out', out], /\/nonexistent\.png: no such file/],
      [['img2img', '--run', run, '--image', path.join(root, 'corrupt', 'b.png'), '--out', out], /b\.png: cannot decode image/],
      [['img2img', '--run', run, '--image', input, '--out', out], /colour\.png is a colour image but the model takes greyscale images/],
      [['img2img', '--run', run, '--image', big, '--out', out], /big\.png is 16x16 but the model takes 8x8 images/],
      [['img2img', '--run', run, '--image', grey, '--strength', '1.5', '--out', out], /--strength must be a number >= 0 <= 1, got '1\.5'/],
      [['img2img', '--run', run, '--image', grey, '--prompt', 'a cat', '--out', out], /--prompt needs a text-conditional run/],
      [['img2img', '--run', run, '--out', out], /--image FILE is required/],
      [['inpaint', '--run', run, '--image', grey, '--out', out], /--mask FILE is required/],
      [['inpaint', '--run', run, '--image', grey, '--mask', big, '--out', out], /big\.png: the mask must have the image's size, 8x8/],
      [['inpaint', '--run', run, '--image', grey, '--mask', mask, '--scheduler', 'euler', '--out', out], /inpainting runs RePaint's resampling on ddim or ddpm steps; --scheduler euler is not supported$/],
    ];
    for (const [args, re] of bad) {
      r = await cli(...args, '--steps', '4');
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, re);
      assert.ok(!/\n\s+at /.test(r.err), `no stack trace: ${r.err}`);
    }
    assert.ok(!existsSync(out), 'nothing written');
    r = await cli('img2img', '--run', run, '--image', big, '--resize', '--steps', '2', '--out', out);
    assert.equal(r.code, 0, r.err);
  });

  it('makes a key, watermarks samples, checks images one line each, and names bad keys and files', async () => {
    const run = path.join(root, 'run');
    const key = path.join(root, 'wm', 'key.json');
    let r = await cli('keygen', '--out', key);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /Keep it secret/);
    r = await cli('keygen', '--out', key);
    assert.equal(r.code, 1);
    assert.match(r.err, /key\.json exists; a new key there would orphan the images made with the old one \(pass --force/);
    const dir = path.join(root, 'wm', 'images');
    r = await cli('sample', '--run', run, '--key', key, '--payload', '77', '--count', '2', '--steps', '4', '--out', path.join(root, 'wm', 'grid.png'), '--images', dir);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /eta 0, .*watermarked with payload 77/);
    assert.deepEqual(readdirSync(dir).sort(), ['0000.png', '0001.png']);
    assert.deepEqual((await sharp(path.join(dir, '0000.png')).metadata()).width, 8, 'each image at the model size');
    r = await cli('sample', '--run', run, '--key', key, '--eta', '1', '--count', '1', '--steps', '2', '--out', path.join(root, 'wm', 'g2.png'));
    assert.match(r.err, /warning: --eta 1 adds fresh noise at every step, which washes out the watermark/);
    // Edits carry it too: img2img in the noise the input is noised with, inpaint in x_T without resampling.
    const edits = path.join(root, 'wm', 'edits');
    r = await cli('img2img', '--run', run, '--image', path.join(dir, '0000.png'), '--key', key, '--payload', '78', '--strength', '0.8', '--steps', '5', '--count', '1', '--out', path.join(edits, 'i2i.png'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /img2img, strength 0\.8, watermarked with payload 78/);
    const half = path.join(edits, 'half.png');
    await sharp(Buffer.from(Array.from({ length: 64 }, (_, i) => (i >= 32 ? 255 : 0))), { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(half);
    r = await cli('inpaint', '--run', run, '--image', path.join(dir, '0000.png'), '--mask', half, '--key', key, '--steps', '4', '--count', '1', '--out', path.join(edits, 'inp.png'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /with --key: no resampling \(--jump-repeats 1\) and eta 0/);
    assert.match(r.err, /jump length 5 x 1, watermarked with payload 0/);
    r = await cli('inpaint', '--run', run, '--image', path.join(dir, '0000.png'), '--mask', half, '--key', key, '--jump-repeats', '3', '--steps', '4', '--count', '1', '--out', path.join(edits, 'inp3.png'));
    assert.match(r.err, /warning: --jump-repeats 3 adds fresh noise at every jump, which washes out the watermark/);
    r = await cli('img2img', '--run', run, '--image', path.join(dir, '0000.png'), '--payload', '5', '--steps', '4', '--out', path.join(edits, 'x.png'));
    assert.equal(r.code, 1);
    assert.match(r.err, /--payload needs --key/);
    r = await cli('watermark', 'detect', path.join(dir, '0000.png'), path.join(root, 'corrupt', 'b.png'), path.join(dir, '0001.png'), '--run', run, '--key', key, '--steps', '4', '--json');
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l) as { file: string; pValue?: number; detected?: boolean; error?: string });
    assert.equal(lines.length, 3, 'one record per image, the broken one included');
    assert.ok(lines[0].pValue! >= 0 && lines[0].pValue! <= 1 && typeof lines[0].detected === 'boolean');
    assert.match(lines[1].error!, /b\.png: cannot decode image/);
    r = await cli('watermark', 'detect', path.join(dir, '0000.png'), '--run', run, '--key', key, '--steps', '4', '--max-rotation', '3', '--json');
    assert.equal(r.code, 0, r.err);
    const searched = JSON.parse(r.out) as { maxRotation: number; rotation: number; pValue: number };
    assert.equal(searched.maxRotation, 3);
    assert.ok(Number.isInteger(searched.rotation) && Math.abs(searched.rotation) <= 3, `rotation ${searched.rotation}`);
    assert.ok(searched.pValue >= 0 && searched.pValue <= 1);
    // Two images: their searches run on worker threads, which load the TypeScript source themselves.
    r = await cli('watermark', 'detect', path.join(dir, '0000.png'), path.join(dir, '0001.png'), '--run', run, '--key', key, '--steps', '4', '--geometric', '--json');
    assert.equal(r.code, 0, r.err);
    const moved = r.out.trim().split('\n').map((l) => JSON.parse(l) as { file: string; geometric: boolean; map: { degrees: number; scale: number; dx: number; dy: number }; pValue: number });
    assert.deepEqual(moved.map((m) => path.basename(m.file)), ['0000.png', '0001.png']);
    for (const m of moved) {
      assert.equal(m.geometric, true);
      assert.ok(Number.isFinite(m.map.degrees) && m.map.scale >= 1 && Number.isFinite(m.map.dx), JSON.stringify(m.map));
      assert.ok(m.pValue >= 0 && m.pValue <= 1);
    }
    const bad: [string[], RegExp][] = [
      [['watermark', 'detect', path.join(dir, '0000.png'), '--run', run, '--key', key, '--max-rotation', '90'], /--max-rotation must be an integer >= 0 <= 45, got '90'/],
      [['watermark', 'detect', path.join(dir, '0000.png'), '--run', run, '--key', key, '--max-rotation', '5', '--geometric'], /choose --geometric or --max-rotation/],
      [['watermark', 'detect', path.join(dir, '0000.png'), '--run', run, '--key', path.join(root, 'nokey.json')], /nokey\.json: no such key file/],
      [['watermark', 'detect', path.join(dir, '0000.png'), '--run', run, '--key', path.join(root, 'corrupt', 'b.png')], /b\.png: not a Diffuse watermark key \(not valid JSON\)/],
      [['watermark', 'find', path.join(dir, '0000.png'), '--run', run, '--key', key], /unknown subcommand 'find'/],
      [['watermark', 'detect', '--run', run, '--key', key], /give one or more images to check/],
      [['watermark', 'detect', path.join(root, 'corrupt', 'b.png'), '--run', run, '--key', key, '--steps', '2'], /no image could be checked/],
      [['sample', '--run', run, '--steps', '2', '--payload', '5', '--out', path.join(root, 'wm', 'x.png')], /--payload needs --key/],
      [['sample', '--run', run, '--steps', '2', '--key', key, '--payload', '4294967296', '--out', path.join(root, 'wm', 'x.png')], /--payload must be an integer >= 0 <= 4294967295/],
      [['keygen', '--out', path.join(root, 'wm', 'k7.json'), '--payload-bits', '7'], /--payload-bits must be one of 0, 1, 2, 4, 8, 16, 32/],
    ];
    for (const [args, re] of bad) {
      r = await cli(...args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, re);
    }
    // A key of 8 payload bits: its payloads are 0..255, and detection reports its size.
    const key8 = path.join(root, 'wm', 'key8.json');
    r = await cli('keygen', '--out', key8, '--payload-bits', '8');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /a payload of 8 bits/);
    assert.equal(JSON.parse(readFileSync(key8, 'utf8')).format, 'diffuse-watermark-key-2');
    r = await cli('sample', '--run', run, '--steps', '2', '--key', key8, '--payload', '256', '--out', path.join(root, 'wm', 'x.png'));
    assert.equal(r.code, 1);
    assert.match(r.err, /key8\.json carries 8 payload bits, so the payload must be in 0\.\.255, got 256/);
    const dir8 = path.join(root, 'wm', 'images8');
    r = await cli('sample', '--run', run, '--key', key8, '--payload', '200', '--count', '1', '--steps', '4', '--out', path.join(root, 'wm', 'g8.png'), '--images', dir8);
    assert.equal(r.code, 0, r.err);
    r = await cli('watermark', 'detect', path.join(dir8, '0000.png'), '--run', run, '--key', key8, '--steps', '4', '--json');
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as { payloadBits: number }).payloadBits, 8);
  });

  it("labels a bug inside Diffuse as an internal error, not as the user's", () => {
    const bug = (() => {
      try {
        (undefined as unknown as { x: number }).x;
      } catch (e) {
        return e;
      }
    })();
    assert.match(errorLine('sample', bug), /^diffuse sample: internal error: Cannot read properties of undefined .*DIFFUSE_DEBUG=1 prints the stack; please report it\)$/);
    assert.match(errorLine('sample', new RangeError('Invalid array length')), /internal error: Invalid array length/);
    assert.equal(errorLine('sample', new Error('runs/x: not a run folder\nsecond line')), 'diffuse sample: runs/x: not a run folder');
  });

  it('says library options as flags: an OptionError names `batchSize`, the CLI --batch', () => {
    const e = new OptionError('batch size 64 is larger than the 4 training images; lower `batchSize` (or `data.size`, `sendBytes`, `strength`)');
    assert.deepEqual(e.options, ['batchSize', 'data.size', 'sendBytes', 'strength']);
    assert.equal(e.code, 'DIFFUSE_BAD_OPTION');
    assert.equal(errorLine('train', e), 'diffuse train: batch size 64 is larger than the 4 training images; lower --batch (or --size, --send-bytes, --strength)');
    // Other errors keep their words: a file name in backticks is not an option.
    assert.equal(errorLine('train', new Error('`weird`.png: no such file')), 'diffuse train: `weird`.png: no such file');
  });

  it('draws the forward process and schedules', async () => {
    let r = await cli('noise', 'mnist:3', '--schedule', 'cosine', '--steps', '5', '--out', path.join(root, 'noise.png'));
    assert.equal(r.code, 0, r.err);
    r = await cli('schedule', '--schedule', 'linear,cosine,sigmoid', '--zero-snr', '--out', path.join(root, 'sched.png'));
    assert.equal(r.code, 0, r.err);
    const m = await sharp(path.join(root, 'sched.png')).metadata();
    assert.ok(m.width! > 500 && m.height! > 200);
  });
});

describe('CLI text conditioning', () => {
  const data = path.join(root, 'captioned');
  before(async () => {
    for (let i = 0; i < 4; i++) {
      await png(path.join(data, `${i}.png`), 8, 8, i % 2 ? 230 : 20);
      writeFileSync(path.join(data, `${i}.txt`), i % 2 ? 'a white square' : 'a black square');
    }
  });

  it('trains with --text, samples with prompts, reports unknown words, rejects misuse', async () => {
    const run = path.join(root, 'text-run');
    let r = await cli('train', '--data', data, '--text', '--channels', '1', '--preset', 'tiny', '--run', run, '--steps', '2', '--batch', '2', '--sample-every', '0', '--timesteps', '20', '--text-width', '8', '--text-heads', '2', '--text-layers', '1');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /Text: \d+-token BPE vocabulary from 2 distinct captions/);
    assert.ok(existsSync(path.join(run, 'tokenizer.json')));
    const out = path.join(root, 'text.png');
    r = await cli('sample', '--run', run, '--prompt', 'a white square|a zebra', '--negative-prompt', 'a black square', '--count', '4', '--steps', '2', '--out', out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /warning: "a zebra": 'zebra' never occurs in the training captions/);
    assert.ok(existsSync(out));
    r = await cli('sample', '--run', run, '--count', '2', '--steps', '2', '--out', out);
    assert.match(r.err, /this run is text-conditional: give --prompt/);
    r = await cli('sample', '--run', run, '--class', '1', '--prompt', 'x', '--count', '2', '--steps', '2', '--out', out);
    assert.match(r.err, /--class needs a class-conditional run/);
    r = await cli('sample', '--run', path.join(root, 'run'), '--prompt', 'a cat', '--steps', '2', '--out', out);
    assert.match(r.err, /--prompt needs a text-conditional run \(train with --text\)/);
    r = await cli('train', '--data', path.join(root, 'ok'), '--text', '--steps', '1', '--run', path.join(root, 'no-captions'));
    assert.equal(r.code, 1);
    assert.match(r.err, /cats\/1\.png: no caption \(expected 1\.txt beside it/);
    r = await cli('train', '--data', data, '--text', '--class-cond', '--steps', '1', '--run', path.join(root, 'both'));
    assert.match(r.err, /choose one condition: --text or --class-cond/);
    r = await cli('train', '--data', data, '--text', '--preset', 'tiny', '--cross-attention', '5', '--steps', '1', '--run', path.join(root, 'bad-cross'));
    assert.match(r.err, /--cross-attention: 5 is not a resolution of this model \(levels: 8, 4\)/);
    r = await cli('eval', '--run', path.join(root, 'run'), '--adherence', '--count', '10');
    assert.match(r.err, /adherence needs a run trained with --text or --class-cond$/m);
    r = await cli('eval', '--run', path.join(root, 'run'), '--guidance', '3', '--count', '10');
    assert.equal(r.code, 1);
    assert.match(r.err, /--guidance needs a run trained with --text or --class-cond$/m);
  });

  it("trains on a frozen ONNX encoder with the encoder's own Hugging Face tokenizer", async () => {
    // A 'pretrained' encoder and its tokenizer, as a publisher ships them: encoder.onnx, tokenizer.json, tokenizer_config.json.
    const pub = path.join(root, 'published');
    mkdirSync(pub, { recursive: true });
    const tok = BpeTokenizer.train(['a white square', 'a black square', 'a grey circle', 'a white circle']);
    const enc = { kind: 'transformer' as const, maxLength: tok.maxLength, vocabSize: tok.vocabSize, width: 8, layers: 1, heads: 2 };
    const store = new ParamStore(4);
    transformerTextEncoder(new ParamScope(store), enc, input('ids', [1, enc.maxLength], 'int64'));
    await exportTextEncoder(enc, store.values(), path.join(pub, 'encoder.onnx'));
    writeFileSync(path.join(pub, 'tokenizer.json'), JSON.stringify(tok.toHuggingFace()));
    writeFileSync(path.join(pub, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast', model_max_length: tok.maxLength }));
    const run = path.join(root, 'frozen-run');
    const common = ['--data', data, '--text', '--channels', '1', '--preset', 'tiny', '--steps', '2', '--batch', '2', '--sample-every', '0', '--timesteps', '20'];
    let r = await cli('train', ...common, '--run', run, '--text-encoder', path.join(pub, 'encoder.onnx'));
    assert.equal(r.code, 1);
    assert.match(r.err, /--text-encoder needs the encoder's own tokenizer: --tokenizer tokenizer\.json/);
    r = await cli('train', ...common, '--run', run, '--text-encoder', path.join(pub, 'encoder.onnx'), '--tokenizer', path.join(pub, 'tokenizer.json'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /the encoder's own tokenizer \(\d+ tokens\)/);
    // The run keeps the publisher's files as they were.
    assert.deepEqual(JSON.parse(readFileSync(path.join(run, 'tokenizer.json'), 'utf8')), tok.toHuggingFace());
    r = await cli('sample', '--run', run, '--prompt', 'a white square', '--count', '2', '--steps', '2', '--out', path.join(root, 'frozen.png'));
    assert.equal(r.code, 0, r.err);
    r = await cli('train', ...common, '--run', path.join(root, 'tok-alone'), '--tokenizer', path.join(pub, 'tokenizer.json'));
    assert.match(r.err, /--tokenizer goes with --text-encoder/);
  });
});
