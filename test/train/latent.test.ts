import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { AutoencoderRunConfig, calibrateDetector, detectSynthetic, DiffusionPipeline, ImageDataset, SamplingPipeline, encodeDataset, readRunConfig, train, trainAutoencoder } from '../../src/index.js';
import * as nn from '../../src/nn/index.js';
import { AUTOENCODER_DEFAULTS, AutoencoderNetwork, RunNetwork, latentCodec, loadSamplingWeights, runPaths, validateAutoencoderRunConfig, weightsHash } from '../../src/run/index.js';
import { AutoencoderBatchMaker, BatchMaker, LatentCache, mirrorImages, reconstructionQuality, scalingFactorOf } from '../../src/train/index.js';
import { checkCalibration, featureCount, syntheticFeatures } from '../../src/forensics/index.js';
import { loadSafetensors } from '../../src/engine/index.js';
import { tinyConfig } from './helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-latent-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = { sampleEvery: 0, sampleCount: 4, logEvery: 1 };

/** 64 RGB 8x8 images: a coloured 3x3 square at one of 4 places on a dark ground. */
function squares(count = 64): ImageDataset {
  const per = 3 * 64;
  const images = new Float32Array(count * per).fill(-0.8);
  for (let k = 0; k < count; k++) {
    const [oy, ox] = [((k >> 1) & 1) * 4 + 1, (k & 1) * 4 + (k % 3)];
    const colour = [Math.sin(k), Math.cos(k), Math.sin(2 * k)];
    for (let c = 0; c < 3; c++) for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) images[k * per + c * 64 + (oy + y) * 8 + Math.min(7, ox + x)] = colour[c];
  }
  return { name: 'squares', images, count, channels: 3, height: 8, width: 8 };
}

function aeConfig(over: Partial<AutoencoderRunConfig> = {}): AutoencoderRunConfig {
  return { format: 'diffuse-autoencoder-1', data: { source: 'squares', flip: false }, preset: 'tiny', model: nn.autoencoderPreset('tiny'), imageSize: 8, ...AUTOENCODER_DEFAULTS, batchSize: 16, lr: 3e-3, warmupSteps: 5, emaDecay: 0.9, seed: 1, ...over };
}

describe('autoencoder training (train-vae)', () => {
  it('batches are a pure function of (seed, step), and flips mirror the image', () => {
    const data = squares();
    const a = new AutoencoderBatchMaker(data, aeConfig({ data: { source: 'squares', flip: true } }));
    const b = new AutoencoderBatchMaker(data, aeConfig({ data: { source: 'squares', flip: true } }));
    assert.deepEqual(a.make(5), b.make(5));
    assert.notDeepEqual(a.make(5).eps, a.make(6).eps);
    assert.equal(a.make(5).eps.length, 16 * 4 * 4 * 4);
    // Every image of a flipping batch is a training image or its mirror, and both kinds occur over a few steps.
    const per = 3 * 64;
    const plain = new Set<string>();
    const mirrored = new Set<string>();
    for (let k = 0; k < data.count; k++) {
      const img = data.images.subarray(k * per, (k + 1) * per);
      plain.add(img.join(','));
      mirrored.add(mirrorImages(img, 1, [3, 8, 8]).join(','));
    }
    let flips = 0;
    for (let s = 0; s < 4; s++) {
      const { x } = a.make(s);
      for (let k = 0; k < 16; k++) {
        const key = x.subarray(k * per, (k + 1) * per).join(',');
        assert.ok(plain.has(key) || mirrored.has(key), `step ${s} image ${k} is neither a training image nor a mirror of one`);
        if (!plain.has(key)) flips++;
      }
    }
    assert.ok(flips > 10 && flips < 54, `${flips} of 64 flipped`);
  });

  it('learns to reconstruct, and a resumed run ends bit-identical to an uninterrupted one', async () => {
    const data = squares();
    const straight = path.join(root, 'ae-straight');
    const split = path.join(root, 'ae-split');
    const r = await trainAutoencoder(straight, aeConfig(), data, { ...quiet, maxSteps: 40 });
    await trainAutoencoder(split, aeConfig(), data, { ...quiet, maxSteps: 25 });
    await trainAutoencoder(split, aeConfig(), data, { ...quiet, maxSteps: 40, resume: true });
    const a = (await loadSafetensors(runPaths(straight).checkpoint)).tensors;
    const b = (await loadSafetensors(runPaths(split).checkpoint)).tensors;
    assert.equal(a.size, b.size);
    for (const [name, t] of a) assert.deepEqual(b.get(name)!.data, t.data, name);
    // The loss falls, and the EMA autoencoder reconstructs better than the untrained one.
    const log = readFileSync(runPaths(straight).log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number });
    assert.ok(log.slice(-5).reduce((s, l) => s + l.loss, 0) < 0.8 * log.slice(0, 5).reduce((s, l) => s + l.loss, 0), `loss ${log[0].loss} -> ${log[log.length - 1].loss}`);
    const trained = await AutoencoderNetwork.open(straight);
    const q = await reconstructionQuality(trained, data);
    await trained.release();
    assert.equal(q.psnr, r.quality.psnr);
    assert.ok(r.quality.l1 < 0.5, `mean |error| ${r.quality.l1}`);
  });

  it('refuses data of another size and a folder that already holds a run, naming them', async () => {
    await assert.rejects(trainAutoencoder(path.join(root, 'ae-size'), aeConfig({ imageSize: 16 }), squares(), { ...quiet, maxSteps: 1 }), /data is 3x8x8 .* 3x16x16/);
    const busy = path.join(root, 'ae-busy');
    mkdirSync(busy);
    writeFileSync(path.join(busy, 'notes.txt'), 'mine');
    await assert.rejects(trainAutoencoder(busy, aeConfig(), squares(), { ...quiet, maxSteps: 1 }), /already holds a run/);
    await assert.rejects(AutoencoderNetwork.open(path.join(root, 'nowhere')), /not an autoencoder folder/);
    assert.throws(() => validateAutoencoderRunConfig(aeConfig({ imageSize: 9 })), /autoencoder config: imageSize must be a positive multiple of the downsampling factor 2, got 9/);
    assert.throws(() => validateAutoencoderRunConfig(aeConfig({ klWeight: -1 })), /klWeight must be >= 0/);
    assert.throws(() => validateAutoencoderRunConfig(aeConfig({ lr: 2 })), /autoencoder config: lr must be in \(0, 1\)/);
  });
});

describe('latent runs (train --vae)', () => {
  it('scalingFactorOf is 1 / the standard deviation of the posterior draws', () => {
    // std 0: the draws are the means themselves, whose standard deviation is known exactly.
    const mean = Float32Array.from({ length: 4000 }, (_, i) => ((i % 10) - 4.5) * 0.3);
    const m = mean.reduce((s, v) => s + v, 0) / mean.length;
    const sd = Math.sqrt(mean.reduce((s, v) => s + (v - m) ** 2, 0) / (mean.length - 1));
    const cache: LatentCache = { count: 1000, shape: [4, 1, 1], mean, std: new Float32Array(4000) };
    assert.ok(Math.abs(scalingFactorOf(cache) - 1 / sd) < 1e-9 / sd);
    // Means 0, std 2: the factor estimates 1/2 to within sampling error (4000 draws: relative SE about 1.1%).
    const noisy: LatentCache = { ...cache, mean: new Float32Array(4000), std: new Float32Array(4000).fill(2) };
    assert.ok(Math.abs(scalingFactorOf(noisy) - 0.5) < 0.5 * 0.05, String(scalingFactorOf(noisy)));
  });

  it('a batch is the scaled posterior draw of each image (its mirror image when flipped)', () => {
    const data = squares();
    const per = 16;
    const cache: LatentCache = {
      count: 64,
      shape: [4, 2, 2],
      mean: Float32Array.from({ length: 64 * per }, (_, i) => Math.floor(i / per)),
      std: new Float32Array(64 * per),
      flipped: { mean: Float32Array.from({ length: 64 * per }, (_, i) => -Math.floor(i / per) - 1), std: new Float32Array(64 * per) },
    };
    const cfg = tinyConfig({ data: { source: 'squares', flip: true }, predictionType: 'sample', latent: { scalingFactor: 0.5, source: 'test' }, model: { ...tinyConfig().model, inChannels: 4, outChannels: 4, imageSize: 2, attentionResolutions: [] } });
    const { target } = new BatchMaker(data, cfg, cache).make(3);
    let flipped = 0;
    for (let k = 0; k < 16; k++) {
      const v = target.subarray(k * per, (k + 1) * per);
      assert.ok(v.every((x) => x === v[0]), 'std 0: every value of a latent is its mean');
      if (v[0] < 0) flipped++;
      assert.ok(Number.isInteger(Math.abs(v[0]) / 0.5), `scaled by 0.5: ${v[0]}`);
    }
    assert.ok(flipped > 0 && flipped < 16);
    assert.throws(() => new BatchMaker(data, cfg), /needs its encoded data set/);
    assert.throws(() => new BatchMaker(data, cfg, { ...cache, flipped: undefined }), /mirrored images/);
  });

  it('trains on the cached latents, resumes exactly, and samples, edits and inverts through the autoencoder', async () => {
    const data = squares();
    const aeDir = path.join(root, 'ae-straight');
    const ae = await AutoencoderNetwork.open(aeDir);
    const cache = await encodeDataset(ae, data, { flip: true });
    const cfg = tinyConfig({
      data: { source: 'squares', flip: true },
      latent: { scalingFactor: scalingFactorOf(cache), source: aeDir },
      model: { ...tinyConfig().model, inChannels: 4, outChannels: 4, imageSize: 4, attentionResolutions: [2] },
    });
    const straight = path.join(root, 'latent-straight');
    const split = path.join(root, 'latent-split');
    await train(straight, cfg, data, { ...quiet, maxSteps: 12, latent: { autoencoder: ae, cache } });
    await train(split, cfg, data, { ...quiet, maxSteps: 6, latent: { autoencoder: ae, cache } });
    await ae.release();
    // The resumed half reads the run's own autoencoder copy and latent cache.
    await train(split, cfg, data, { ...quiet, maxSteps: 12, resume: true });
    const a = (await loadSafetensors(runPaths(straight).checkpoint)).tensors;
    const b = (await loadSafetensors(runPaths(split).checkpoint)).tensors;
    for (const [name, t] of a) assert.deepEqual(b.get(name)!.data, t.data, name);

    // generate = the latent reverse process, then the decoder (checked against the parts run by hand).
    const pipe = await DiffusionPipeline.fromRun(straight);
    assert.deepEqual(pipe.imageShape, [3, 8, 8]);
    assert.deepEqual(pipe.latentShape, [4, 4, 4]);
    const images = await pipe.generate({ count: 3, steps: 8, seed: 5, eta: 0 });
    assert.deepEqual(images.shape, [3, 8, 8]);
    const config = readRunConfig(straight);
    const copy = await AutoencoderNetwork.open(runPaths(straight).autoencoder);
    const network = new RunNetwork(config, await loadSamplingWeights(straight, config));
    const bare = new SamplingPipeline(config, network);
    const latents = await bare.generate({ count: 3, steps: 8, seed: 5, eta: 0 });
    assert.deepEqual(latents.shape, [4, 4, 4]);
    const decoded = await copy.decode(latents.data.map((v) => v / config.latent!.scalingFactor), 3);
    assert.deepEqual(images.data, decoded);

    // img2img and invert start from the scaled posterior mean of the image.
    const image = data.images.subarray(0, 3 * 64);
    const codec = latentCodec(copy, config.latent!.scalingFactor);
    const z = await codec.encode(image, 1);
    const edited = await pipe.img2img({ image, strength: 0.5, steps: 8, seed: 2, eta: 0 });
    const editedByHand = await bare.img2img({ image: z, strength: 0.5, steps: 8, seed: 2, eta: 0 });
    assert.deepEqual(edited.data, await codec.decode(editedByHand.data, 1));
    const xT = await pipe.invert({ image, steps: 8 });
    assert.deepEqual(xT.shape, [4, 4, 4]);
    assert.deepEqual(xT.data, (await bare.invert({ image: z, steps: 8 })).data);
    // inpaint: RePaint on the latent grid, where the mask's pixel (2i, 2j) says whether cell (i, j) is generated.
    const mask = Float32Array.from({ length: 64 }, (_, p) => (Math.floor(p / 8) < 4 && p % 8 >= 2 ? 1 : 0)); // top half, x >= 2
    const cells = Float32Array.from({ length: 4 * 16 }, (_, q) => (Math.floor((q % 16) / 4) < 2 && q % 4 >= 1 ? 1 : 0));
    const filled = await pipe.inpaint({ image, mask, steps: 8, seed: 4, jumpRepeats: 1 });
    const filledByHand = await bare.inpaint({ image: z, mask: cells, steps: 8, seed: 4, jumpRepeats: 1 });
    assert.deepEqual(filled.shape, [3, 8, 8]);
    assert.deepEqual(filled.data, await codec.decode(filledByHand.data, 1));
    assert.notDeepEqual((await bare.inpaint({ image: z, mask: new Float32Array(64).fill(1), steps: 8, seed: 4, jumpRepeats: 1 })).data, filledByHand.data);
    await assert.rejects(pipe.img2img({ image: z }), /has 64 values; the model's images have 192/);
    await copy.release();
    await network.release();
    await pipe.release();
  });

  it("the detector on a latent run reads AEROBLADE's reconstruction error and the latent denoiser, as computed by hand; calibrates and scores", async () => {
    const run = path.join(root, 'latent-straight');
    const pipe = await DiffusionPipeline.fromRun(run);
    const config = readRunConfig(run);
    const copy = await AutoencoderNetwork.open(runPaths(run).autoencoder);
    const codec = latentCodec(copy, config.latent!.scalingFactor);
    const network = new RunNetwork(config, await loadSamplingWeights(run, config));
    const bare = new SamplingPipeline(config, network);
    // The model hash (in calibrations and content credentials) covers the autoencoder, whose decoder makes the images.
    const unetOnly = weightsHash(await loadSamplingWeights(run, config));
    assert.notEqual(pipe.modelHash, unetOnly);
    assert.equal(pipe.modelHash, weightsHash(new Map([...(await loadSamplingWeights(run, config)), ...[...copy.weights].map(([k, w]) => [`autoencoder/${k}`, w] as const)])));
    const data = squares(6);
    const batch = { data: data.images, count: 6, shape: [3, 8, 8] as [number, number, number] };
    const timesteps = [1, 3];
    const { features, heatMaps } = await syntheticFeatures(batch, pipe, timesteps);
    assert.equal(features[0].length, featureCount('latent', 2));
    assert.equal(features[0].length, 7 + 3 * 2);
    const z = await codec.encode(data.images, 6);
    const back = await codec.decode(z, 6);
    const lmean = (a: number[]) => Math.log(a.reduce((s, v) => s + v, 0) / a.length + 1e-12);
    const topMean = (a: number[]) => {
      const n = Math.ceil(0.05 * a.length);
      return lmean([...a].sort((p, q) => q - p).slice(0, n));
    };
    for (let k = 0; k < 6; k++) {
      const x = Array.from(data.images.subarray(k * 192, (k + 1) * 192));
      const err = x.map((v, i) => Math.abs(v - back[k * 192 + i]));
      const dark = err.filter((_, i) => x[i] < -0.5);
      const bright = err.filter((_, i) => x[i] >= -0.5);
      const want = [lmean(err), lmean(err.map((e) => e * e)), lmean(dark), lmean(dark.map((e) => e * e)), lmean(bright), lmean(bright.map((e) => e * e)), topMean(err)];
      for (let j = 0; j < 7; j++) assert.ok(Math.abs(features[k][j] - want[j]) < 1e-4, `image ${k} reconstruction feature ${j}: ${features[k][j]} vs ${want[j]}`);
      for (let p = 0; p < 64; p++) {
        const m = (err[p] + err[64 + p] + err[128 + p]) / 3;
        assert.ok(Math.abs(heatMaps[k][p] - m) < 1e-5, `heat map ${k} pixel ${p}`);
      }
    }
    for (const [j, t] of timesteps.entries()) {
      const sa = Math.sqrt(pipe.tables.alphasCumprod[t]);
      const eps = (await bare.predictNoise({ sample: { data: z.map((v) => sa * v), count: 6, shape: [4, 4, 4] }, timestep: t })).data;
      for (let k = 0; k < 6; k++) {
        const e = Array.from(eps.subarray(k * 64, (k + 1) * 64), Math.abs);
        const want = [lmean(e), lmean(e.map((v) => v * v)), topMean(e)];
        for (let i = 0; i < 3; i++) assert.ok(Math.abs(features[k][7 + 3 * j + i] - want[i]) < 1e-4, `image ${k} t=${t} feature ${i}`);
      }
    }
    // Calibration on a latent run: its space is recorded, and scoring reads it back.
    const cal = await calibrateDetector(pipe, { real: { data: squares(60).images, count: 60, shape: [3, 8, 8] }, realSource: 'squares', jpegQualities: [75], resizeFactors: [] });
    assert.equal(cal.space, 'latent');
    assert.equal(cal.profiles.lossless.weights.length, featureCount('latent', cal.timesteps.length));
    assert.doesNotThrow(() => checkCalibration(JSON.parse(JSON.stringify(cal)), pipe.modelHash));
    const scored = await detectSynthetic(batch, pipe, cal);
    assert.equal(scored.length, 6);
    assert.ok(scored.every((d) => Number.isFinite(d.score) && d.heatMap.length === 64));
    await assert.rejects(detectSynthetic(batch, pipe, { ...cal, space: 'pixel', profiles: { lossless: { ...cal.profiles.lossless, weights: new Array(7 * cal.timesteps.length).fill(0), mean: new Array(7 * cal.timesteps.length).fill(0), scale: new Array(7 * cal.timesteps.length).fill(1) } } }), /calibrated for a pixel-space model, but this run is a latent run/);
    await copy.release();
    await network.release();
    await pipe.release();
  });
});
