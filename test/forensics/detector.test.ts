import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DiffusionPipeline, FastGenerator, ImageBatch, calibrateDetector, detectSynthetic, train } from '../../src/index.js';
import { averagePrecision, rocAuc } from '../../src/eval/index.js';
import { chooseProfile, estimateJpegQuality, ijgLumaTable, jpegLumaTable, checkCalibration, crossValidatedLogistic, fitLogistic, jpegRoundTrip, logistic, logit, quantize8, resizeRoundTrip } from '../../src/forensics/index.js';
import { loadSamplingWeights } from '../../src/run/index.js';
import { makeDenoiser } from '../../src/pipelines/index.js';
import { blobs, tinyConfig } from '../train/helpers.js';

describe('ranking metrics', () => {
  // Scores on a coarse grid, so that ties occur.
  const g = new FastGenerator(5);
  const pos = Array.from(g.rand(300), (u) => Math.round(u * 20 + 4));
  const neg = Array.from(g.rand(400), (u) => Math.round(u * 20));

  it('rocAuc equals the pairwise count (ties half)', () => {
    let s = 0;
    for (const p of pos) for (const n of neg) s += p > n ? 1 : p === n ? 0.5 : 0;
    assert.ok(Math.abs(rocAuc(pos, neg) - s / (pos.length * neg.length)) < 1e-12);
    assert.equal(rocAuc([2, 3], [0, 1]), 1);
    assert.equal(rocAuc([0, 1], [2, 3]), 0);
  });

  it('averagePrecision equals precision summed over recall steps at each distinct threshold', () => {
    const thresholds = [...new Set([...pos, ...neg])].sort((a, b) => b - a);
    let prevRecall = 0;
    let want = 0;
    for (const th of thresholds) {
      const tp = pos.filter((v) => v >= th).length;
      const fp = neg.filter((v) => v >= th).length;
      const recall = tp / pos.length;
      want += (recall - prevRecall) * (tp / (tp + fp));
      prevRecall = recall;
    }
    assert.ok(Math.abs(averagePrecision(pos, neg) - want) < 1e-12);
    assert.equal(averagePrecision([5, 6], [1, 2, 3]), 1);
  });
});

describe('logistic calibration', () => {
  it('recovers the weights of data drawn from a known logistic model', () => {
    const g = new FastGenerator(11);
    const n = 20000;
    const x1 = g.randn(n);
    const x2 = g.randn(n);
    const u = g.rand(n);
    const rows = Array.from({ length: n }, (_, i) => [2 * x1[i] + 1, x2[i]]);
    const y = rows.map((r, i) => (u[i] < logistic(0.5 + 1.5 * (r[0] - 1) / 2 - 1 * r[1]) ? 1 : 0));
    const m = fitLogistic(rows, y, { l2: 0 });
    // In the raw units: bias 0.5 - 0.75, weight 0.75 on x[0] and -1 on x[1].
    const raw = m.weights.map((w, j) => w / m.scale[j]);
    const bias = m.bias - raw.reduce((a, w, j) => a + w * m.mean[j], 0);
    assert.ok(Math.abs(raw[0] - 0.75) < 0.06, `w0 ${raw[0]}`);
    assert.ok(Math.abs(raw[1] + 1) < 0.06, `w1 ${raw[1]}`);
    assert.ok(Math.abs(bias + 0.25) < 0.08, `bias ${bias}`);
  });

  it('stops at a zero of the penalised loss (finite differences)', () => {
    const g = new FastGenerator(3);
    const rows = Array.from({ length: 300 }, () => Array.from(g.randn(3)));
    const y = rows.map((r) => (r[0] + 0.3 * r[2] + 0.5 * g.randn(1)[0] > 0 ? 1 : 0));
    const lambda = 0.01;
    const m = fitLogistic(rows, y, { l2: lambda });
    const loss = (w: number[], b: number) => {
      const mm = { ...m, weights: w, bias: b };
      let s = 0;
      rows.forEach((r, i) => {
        const p = logistic(logit(mm, r));
        s -= y[i] ? Math.log(p) : Math.log(1 - p);
      });
      return s / rows.length + (lambda / 2) * w.reduce((a, v) => a + v * v, 0);
    };
    const h = 1e-5;
    for (let j = 0; j < 3; j++) {
      const up = m.weights.map((v, k) => (k === j ? v + h : v));
      const down = m.weights.map((v, k) => (k === j ? v - h : v));
      assert.ok(Math.abs((loss(up, m.bias) - loss(down, m.bias)) / (2 * h)) < 1e-6, `d loss / d w${j}`);
    }
    assert.ok(Math.abs((loss(m.weights, m.bias + h) - loss(m.weights, m.bias - h)) / (2 * h)) < 1e-6, 'd loss / d bias');
  });

  it('cross-validation prefers a strong penalty on features without signal, and scores rows out of fold', () => {
    const g = new FastGenerator(9);
    const rows = Array.from({ length: 200 }, () => Array.from(g.randn(20)));
    const y = rows.map((_, i) => i % 2);
    const cv = crossValidatedLogistic(rows, y, rows.map((_, i) => i));
    assert.equal(cv.lambda, 0.1, `chosen penalty ${cv.lambda}`);
    assert.equal(cv.outOfFold.length, rows.length);
    // In-sample log-odds of noise fit the labels; out-of-fold ones do not.
    const inSample = rows.map((r) => logit(cv.model, r));
    const split = (s: number[]) => rocAuc(s.filter((_, i) => y[i]), s.filter((_, i) => !y[i]));
    assert.ok(split(inSample) > split(cv.outOfFold) + 0.1, `in-sample AUC ${split(inSample)}, out of fold ${split(cv.outOfFold)}`);
  });

  it('refuses one class only or mismatched rows', () => {
    assert.throws(() => fitLogistic([[1], [2]], [1, 1]), /both classes/);
    assert.throws(() => fitLogistic([[1], [2]], [1]), /2 rows and 1 labels/);
  });
});

describe('processing', () => {
  const g = new FastGenerator(2);
  const batch: ImageBatch = { data: g.rand(2 * 64).map((u) => 2 * u - 1), count: 2, shape: [1, 8, 8] };

  it('quantises to the 256 levels of a file', () => {
    for (const v of quantize8(batch).data) assert.ok(Math.abs((v + 1) * 127.5 - Math.round((v + 1) * 127.5)) < 1e-4);
  });

  it('JPEG at quality 100 changes little, at quality 10 much; resizing keeps the size', async () => {
    const q = quantize8(batch);
    const err = (b: ImageBatch) => b.data.reduce((a, v, i) => a + Math.abs(v - q.data[i]), 0) / b.data.length;
    const [hi, lo] = [await jpegRoundTrip(q, 100), await jpegRoundTrip(q, 10)];
    assert.ok(err(hi) < 0.05, `quality 100: ${err(hi)}`);
    assert.ok(err(lo) > 2 * err(hi), `quality 10: ${err(lo)}`);
    const r = await resizeRoundTrip(q, 0.5);
    assert.equal(r.data.length, q.data.length);
    assert.ok(err(r) > 0, 'resizing to half and back loses detail');
    await assert.rejects(jpegRoundTrip(q, 0), /JPEG quality/);
  });
});

describe('JPEG quality estimate', () => {
  it('reads back the quality libjpeg was given, from the quantisation table', async () => {
    const { default: sharp } = await import('sharp');
    const raw = Buffer.from(Array.from({ length: 64 * 64 }, (_, i) => (i * 37) % 256));
    for (const q of [10, 33, 50, 75, 90, 97]) {
      const jpg = await sharp(raw, { raw: { width: 64, height: 64, channels: 1 } }).jpeg({ quality: q }).toBuffer();
      assert.equal(estimateJpegQuality(jpg), q);
      assert.deepEqual(jpegLumaTable(jpg), ijgLumaTable(q));
    }
    // libjpeg's tables at quality 50 are the standard table itself (T.81 Annex K).
    assert.deepEqual(ijgLumaTable(50).slice(0, 8), [16, 11, 10, 16, 24, 40, 51, 61]);
    const png = await sharp(raw, { raw: { width: 64, height: 64, channels: 1 } }).png().toBuffer();
    assert.equal(estimateJpegQuality(png), undefined);
  });
});

describe('detectSynthetic on a tiny trained model', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'diffuse-detector-'));
  const dir = path.join(root, 'blobs');
  after(() => rmSync(root, { recursive: true, force: true }));
  before(async () => {
    await train(dir, tinyConfig(), blobs(), { sampleEvery: 0, sampleCount: 4, logEvery: 100, maxSteps: 300 });
  });
  // "Real" images: blobs in all 9 positions of a 3x3 square, with a little texture the model never saw.
  const real = (count: number, seed: number): ImageBatch => {
    const g = new FastGenerator(seed);
    const data = new Float32Array(count * 64).fill(-1);
    for (let k = 0; k < count; k++) {
      const [oy, ox] = [Math.floor(g.rand(1)[0] * 6), Math.floor(g.rand(1)[0] * 6)];
      for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) data[k * 64 + (oy + y) * 8 + ox + x] = 1 - 0.3 * g.rand(1)[0];
    }
    return { data, count, shape: [1, 8, 8] };
  };

  it('predictNoise is the network output at x_t', async () => {
    const pipe = await DiffusionPipeline.fromRun(dir);
    const x = real(3, 1);
    const got = await pipe.predictNoise({ sample: x, timestep: 40 });
    await pipe.release();
    const cfg = tinyConfig();
    const denoise = makeDenoiser(cfg, await loadSamplingWeights(dir, cfg));
    const want = await denoise(x.data, 40, 3);
    await denoise.release();
    assert.deepEqual(got.data, want);
  });

  it('separates held-out real images from samples, with scores as calibrated', async () => {
    const pipe = await DiffusionPipeline.fromRun(dir);
    const calibration = await calibrateDetector(pipe, { real: real(120, 2), realSource: 'test blobs, seed 2', jpegQualities: [90], resizeFactors: [], samplers: [{ scheduler: 'ddim', steps: 20 }] });
    assert.equal(calibration.modelHash, pipe.modelHash);
    assert.deepEqual(checkCalibration(JSON.parse(JSON.stringify(calibration)), pipe.modelHash), calibration);
    const testReal = quantize8(real(100, 3));
    const testFake = quantize8(await pipe.generate({ count: 100, steps: 20, seed: 77 }));
    const [r, f] = [await detectSynthetic(testReal, pipe, calibration), await detectSynthetic(testFake, pipe, calibration)];
    const auc = rocAuc(f.map((d) => d.score), r.map((d) => d.score));
    assert.ok(auc > 0.9, `AUC ${auc}`);
    for (const d of [...r, ...f]) {
      assert.equal(d.heatMap.length, 64);
      assert.ok(d.heatMap.every((v) => v >= 0 && Number.isFinite(v)));
      assert.ok(Math.abs(d.probability - 1 / (1 + Math.exp(-d.score))) < 1e-12);
      assert.equal(d.flagged, d.score > calibration.profiles.lossless.threshold1pct);
    }
    const fpr = r.filter((d) => d.flagged).length / r.length;
    assert.ok(fpr <= 0.06, `false positives at the 1% threshold: ${fpr}`);
    const jpeg = await detectSynthetic(await jpegRoundTrip(testReal, 90), pipe, calibration, { profile: chooseProfile(calibration, 87) });
    assert.equal(jpeg[0].profile, 'jpeg90');
    assert.equal(chooseProfile(calibration), 'lossless');
    await assert.rejects(detectSynthetic(testReal, pipe, calibration, { profile: 'jpeg40' }), /no profile 'jpeg40'/);
    // Another model's calibration is refused.
    assert.throws(() => checkCalibration({ ...calibration, modelHash: 'f'.repeat(64) }, pipe.modelHash), /different model/);
    assert.throws(() => checkCalibration({ format: 'x' }), /not a Diffuse detector calibration/);
    await pipe.release();
  });
});
