/**
 * The autoencoder detector of a Stable Diffusion folder (AEROBLADE's reconstruction error):
 * `detector calibrate --model` on real images and images the folder made, then `inspect --model`
 * on images neither set held. The tiny fixture with the autoencoder of make_invertible_vae.py,
 * which gives back exactly what it decoded, so the folder's own images reconstruct to 8-bit
 * rounding and emoji (the real images here) do not: the test checks the plumbing (crops,
 * profiles, thresholds, refusals), not how well the signal does on a real autoencoder.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { emojiCatalogue } from '../../src/data/emoji.js';
import { StableDiffusionPipeline, calibrateAutoencoderDetector } from '../../src/index.js';
import { reconstructionFeatures } from '../../src/forensics/index.js';
import { cli } from '../cli/helpers.js';
import { tinyModel } from './helpers.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'diffuse-sd-detector-'));
const model = tinyModel(path.join(tmp, 'model'));
const dirs = Object.fromEntries(['real', 'generated', 'real-test', 'generated-test', 'jpeg'].map((d) => [d, path.join(tmp, d)]));

type Report = { file: string; detector: { status: string; flagged?: boolean; profile?: string; reason?: string } };
const reports = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l) as Report);

describe("a Stable Diffusion folder's autoencoder detector", () => {
  before(async () => {
    // Real: 60 emoji to calibrate and 10 others to test, as the PNG files the data set ships.
    const emoji = emojiCatalogue().filter((e) => e.split === 'train');
    for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
    emoji.slice(0, 60).forEach((e, k) => copyFileSync(e.file, path.join(dirs.real, `${k}.png`)));
    emoji.slice(60, 70).forEach((e, k) => copyFileSync(e.file, path.join(dirs['real-test'], `${k}.png`)));
    // Hostile entries in a calibration folder are left out and named, not fatal (and never waited on).
    execFileSync('mkfifo', [path.join(dirs.real, 'zz-pipe.png')]);
    writeFileSync(path.join(dirs.real, 'zz-junk.png'), 'not a png');
    // Generated: 60 to calibrate (seed 1) and 10 to test (seed 2), DDIM 10 steps.
    for (const [dir, seed, count] of [[dirs.generated, '1', '20'], [dirs['generated-test'], '2', '5']]) {
      const r = await cli('sample', '--model', model, '--prompt', 'a cat|a red car|a house', '--count', count, '--seed', seed, '--steps', '10', '--out', path.join(tmp, 'grid.png'), '--images', dir);
      assert.equal(r.code, 0, r.err);
    }
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('reads the reconstruction error x - D(E(x)) as its features', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(model);
    try {
      // The autoencoder's own output comes back to float rounding; a flat grey image, which is
      // not a mix of its four patterns, does not.
      const z = Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => Math.sin(i) * 0.8);
      const own = await pipe.decode(z, 1, 8, 8);
      const grey = new Float32Array(3 * 64 * 64).fill(0.3);
      const { features } = await reconstructionFeatures({ data: Float32Array.from([...own, ...grey]), count: 2, shape: [3, 64, 64] }, pipe);
      // features[k][0] is log mean |x - D(E(x))|.
      assert.ok(Math.exp(features[0][0]) < 1e-5, `own: ${Math.exp(features[0][0])}`);
      assert.ok(Math.exp(features[1][0]) > 0.1, `grey: ${Math.exp(features[1][0])}`);
      await assert.rejects(calibrateAutoencoderDetector(pipe, { real: { data: grey, count: 1, shape: [3, 64, 64] }, generated: { data: grey, count: 1, shape: [3, 64, 64] }, realSource: 'x', generatedSource: 'y' }), /at least 50 real images/);
    } finally {
      await pipe.release();
    }
  });

  it('detector calibrate --model, then inspect --model flags the folder\'s images and not real ones', async () => {
    const r = await cli('detector', 'calibrate', '--model', model, '--real', dirs.real, '--generated', dirs.generated, '--crop', '64', '--jpeg', '90');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /wrote .*detector\.json \(calibrated on real \(60 images\) and generated \(60 images\), 64x64 squares/);
    assert.match(r.err, /note: left out .*zz-pipe\.png: a FIFO \(named pipe\), not an image file$/m);
    assert.match(r.err, /note: left out .*zz-junk\.png: cannot decode image/);
    const cal = JSON.parse(readFileSync(path.join(model, 'detector.json'), 'utf8')) as { space: string; crop: number; profiles: Record<string, unknown> };
    assert.equal(cal.space, 'autoencoder');
    assert.equal(cal.crop, 64);
    assert.deepEqual(Object.keys(cal.profiles).sort(), ['jpeg90', 'lossless']);

    const gen = readdirSync(dirs['generated-test']).map((f) => path.join(dirs['generated-test'], f));
    const real = readdirSync(dirs['real-test']).map((f) => path.join(dirs['real-test'], f));
    for (const [k, f] of gen.slice(0, 3).entries()) await sharp(f).jpeg({ quality: 90 }).toFile(path.join(dirs.jpeg, `${k}.jpg`));
    const inspect = await cli('inspect', ...gen, ...real, dirs.jpeg, '--model', model, '--json');
    assert.equal(inspect.code, 0, inspect.err);
    const all = reports(inspect.out);
    const byDir = (d: string) => all.filter((x) => path.dirname(x.file) === d);
    assert.equal(byDir(dirs['generated-test']).length, 15);
    for (const x of byDir(dirs['generated-test'])) assert.deepEqual([x.detector.status, x.detector.flagged, x.detector.profile], ['checked', true, 'lossless'], x.file);
    const flaggedReal = byDir(dirs['real-test']).filter((x) => x.detector.flagged).length;
    assert.ok(flaggedReal <= 1, `${flaggedReal} of 10 real images flagged`);
    for (const x of byDir(dirs.jpeg)) assert.deepEqual([x.detector.flagged, x.detector.profile], [true, 'jpeg90'], x.file);
  });

  it('refuses mixed formats and says why a detector is off', async () => {
    const mixed = path.join(tmp, 'mixed');
    mkdirSync(mixed);
    const files = readdirSync(dirs.generated);
    for (const f of files) await sharp(path.join(dirs.generated, f)).jpeg({ quality: 90 }).toFile(path.join(mixed, f.replace('.png', '.jpg')));
    let r = await cli('detector', 'calibrate', '--model', model, '--real', dirs.real, '--generated', mixed, '--crop', '64', '--out', path.join(tmp, 'x.json'));
    assert.equal(r.code, 1);
    assert.match(r.err, /0% of the real images are JPEG files but 100% of the generated ones: a detector fitted on them would learn the file format/);
    r = await cli('detector', 'calibrate', '--model', model, '--real', dirs.real, '--generated', dirs.generated, '--crop', '128');
    assert.equal(r.code, 1);
    assert.match(r.err, /0 real images of at least 128x128 \(60 smaller left out\); calibration needs at least 50/);
    r = await cli('detector', 'calibrate', '--model', model, '--real', dirs.real);
    assert.match(r.err, /--model needs --real FOLDER .* and --generated FOLDER/);
    r = await cli('detector', 'calibrate', '--run', model, '--generated', dirs.generated);
    assert.match(r.err, /--generated applies with --model/);

    // Another autoencoder (the fixture's random one) does not take this calibration.
    const other = tinyModel(path.join(tmp, 'other'), { randomVae: true });
    copyFileSync(path.join(model, 'detector.json'), path.join(other, 'detector.json'));
    const small = path.join(tmp, 'small.png');
    await sharp({ create: { width: 32, height: 40, channels: 3, background: '#336699' } }).png().toFile(small);
    const [a] = reports((await cli('inspect', small, '--model', other, '--json')).out);
    assert.match(a.detector.reason ?? '', /detector\.json: the detector was calibrated for a different autoencoder \(its hash differs\)/);
    const [b] = reports((await cli('inspect', small, '--model', model, '--json')).out);
    assert.match(b.detector.reason ?? '', /the image is 32x40, smaller than the 64x64 square the detector was calibrated on/);
  });
});
