import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { DDIMScheduler, FastGenerator, validateRunConfig, TorchGenerator, readRunConfig, train, unetPreset } from '../../src/index.js';
import { BatchMaker, drawTimesteps } from '../../src/train/index.js';
import { learningRate, loadSamplingWeights } from '../../src/run/index.js';
import { runReverseProcess } from '../../src/samplers/index.js';
import { loadSafetensors } from '../../src/engine/index.js';
import { makeDenoiser } from '../../src/pipelines/index.js';
import { LEVELS, blobs, levels, tinyConfig } from './helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-trainer-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = { sampleEvery: 0, sampleCount: 4, logEvery: 1 };

const losses = (dir: string) =>
  readFileSync(path.join(dir, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const r = JSON.parse(l) as { step: number; loss: number; grad_norm: number };
      return { step: r.step, loss: r.loss, grad_norm: r.grad_norm }; // timings differ between runs
    });

/** Trains `total` steps straight, and `at` steps then a resume to `total`, in two fresh folders. */
async function straightAndResumed(name: string, cfg: ReturnType<typeof tinyConfig>, total: number, at: number): Promise<[string, string]> {
  const straight = path.join(root, `${name}-straight`);
  const split = path.join(root, `${name}-split`);
  await train(straight, cfg, blobs(), { ...quiet, maxSteps: total });
  await train(split, cfg, blobs(), { ...quiet, maxSteps: at });
  await train(split, cfg, blobs(), { ...quiet, maxSteps: total, resume: true });
  return [straight, split];
}

describe('training runs', () => {
  it('batches are a pure function of (seed, step)', () => {
    const a = new BatchMaker(blobs(), tinyConfig());
    const b = new BatchMaker(blobs(), tinyConfig());
    assert.deepEqual(a.make(7), b.make(7));
    assert.notDeepEqual(a.make(7).x, a.make(8).x);
  });

  it('stratified timesteps: one in each 1/B slice of [0, T), uniform over many batches, and the same noise as uniform', () => {
    const T = 1000;
    const B = 16;
    const g = new FastGenerator(3);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 500; i++) {
      const ts = drawTimesteps(g.rand(B), T, 'stratified');
      ts.forEach((t, k) => {
        assert.ok(t >= Math.floor((k * T) / B) && t < Math.ceil(((k + 1) * T) / B), `t ${t} outside slice ${k}`);
        counts[Math.floor(t / 100)]++;
      });
    }
    // 8,000 draws, 800 expected per tenth of [0, T): each within 4 standard deviations.
    for (const c of counts) assert.ok(Math.abs(c - 800) < 4 * Math.sqrt(800 * 0.9), `counts per tenth ${counts.join(', ')}`);
    const u = Float32Array.of(0, 0.5, 0.999999);
    assert.deepEqual(drawTimesteps(u, T, 'uniform'), [0, 500, 999]);
    assert.deepEqual(drawTimesteps(u, T, 'stratified'), [0, 500, 999]);
    const uni = new BatchMaker(blobs(), tinyConfig()).make(3);
    const strat = new BatchMaker(blobs(), { ...tinyConfig(), timestepSampling: 'stratified' }).make(3);
    assert.notDeepEqual(strat.t, uni.t);
    assert.deepEqual(strat.target, uni.target, 'the noise (the epsilon target) is drawn as before');
    assert.deepEqual([...strat.t].map((t, k) => Math.floor((t * strat.t.length) / tinyConfig().schedule.numTrainTimesteps)), [...strat.t.keys()]);
  });

  it('resumes exactly: 4 + 4 steps give the losses and weights of 8 straight steps', async () => {
    const [straight, split] = await straightAndResumed('plain', tinyConfig(), 8, 4);
    assert.deepEqual(losses(split), losses(straight));
    const a = await loadSafetensors(path.join(straight, 'checkpoints', 'latest.safetensors'));
    const b = await loadSafetensors(path.join(split, 'checkpoints', 'latest.safetensors'));
    for (const [k, t] of a.tensors) assert.deepEqual(b.tensors.get(k)!.data, t.data, k);
    assert.equal(b.metadata['diffuse.step'], '8');
    assert.ok(existsSync(path.join(split, 'samples', 'final.png')));
    assert.deepEqual(readdirSync(path.join(split, 'checkpoints')), ['latest.safetensors'], 'no temporary files left');
  });

  it('learns: the loss falls on real (synthetic) images', async () => {
    const dir = path.join(root, 'learn');
    await train(dir, tinyConfig(), blobs(), { ...quiet, maxSteps: 120 });
    const l = losses(dir).map((r) => r.loss);
    const first = l.slice(0, 10).reduce((a, b) => a + b) / 10;
    const last = l.slice(-10).reduce((a, b) => a + b) / 10;
    assert.ok(last < 0.6 * first, `loss ${first} -> ${last}`);
  });

  it('v-prediction with min-SNR weighting and dropout learns, and resumes exactly', async () => {
    const cfg = tinyConfig({ predictionType: 'v_prediction', lossWeighting: 'min_snr', model: { ...unetPreset('tiny'), dropout: 0.1 } });
    const [a, b] = await straightAndResumed('v', cfg, 6, 3);
    assert.deepEqual(losses(b), losses(a));
    const c = path.join(root, 'v-learn');
    await train(c, cfg, blobs(), { ...quiet, maxSteps: 100 });
    const l = losses(c).map((r) => r.loss);
    const first = l.slice(0, 10).reduce((x, y) => x + y) / 10;
    const last = l.slice(-10).reduce((x, y) => x + y) / 10;
    assert.ok(last < 0.7 * first, `loss ${first} -> ${last}`);
  });

  it('cosine learning-rate decay: warm-up, then the half cosine, and exact resumption', async () => {
    const cfg = tinyConfig({ lr: 1e-2, warmupSteps: 2, lrDecay: { steps: 8, minRatio: 0.1 } });
    // warm-up (s + 1) / 2, then 0.1 + 0.9 (1 + cos(pi (s - 2) / 6)) / 2: full at 2, halfway at 5, the floor at 8
    const points: [number, number][] = [[0, 0.5], [1, 1], [2, 1], [5, 0.55], [8, 0.1]];
    for (const [s, f] of points) assert.ok(Math.abs(learningRate(cfg, s) - 1e-2 * f) < 1e-12, `step ${s}: ${learningRate(cfg, s)} vs ${1e-2 * f}`);
    for (let s = 2; s < 8; s++) assert.ok(learningRate(cfg, s + 1) < learningRate(cfg, s), `decreasing at ${s}`);
    assert.equal(learningRate(cfg, 100), 1e-3, 'stays at lr * minRatio after the decay');
    assert.throws(() => validateRunConfig(tinyConfig({ warmupSteps: 10, lrDecay: { steps: 10, minRatio: 0 } })), /config: lrDecay\.steps must be an integer above warmupSteps \(10\), got 10/);

    const [a, b] = await straightAndResumed('decay', cfg, 8, 5);
    assert.deepEqual(losses(b), losses(a));
    const lrs = readFileSync(path.join(a, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { lr: number }).lr);
    assert.deepEqual(lrs, Array.from({ length: 8 }, (_, s) => learningRate(cfg, s)));
  });

  it('stops on divergence with the last good state saved', async () => {
    const dir = path.join(root, 'diverge');
    const bad = blobs();
    bad.images[5] = Number.NaN; // one corrupt pixel: the first batch that holds it diverges
    await assert.rejects(train(dir, tinyConfig(), bad, { ...quiet, maxSteps: 50 }), /training diverged at step \d+.*last good state is in .*latest\.safetensors; resume with a lower `lr`/);
    const saved = await loadSafetensors(path.join(dir, 'checkpoints', 'latest.safetensors'));
    for (const [, t] of saved.tensors) assert.ok((t.data as Float32Array).every(Number.isFinite));
  });

  it('stops on an abort signal with a checkpoint', async () => {
    const dir = path.join(root, 'abort');
    const ac = new AbortController();
    const r = await train(dir, tinyConfig(), blobs(), { ...quiet, maxSteps: 1000, onProgress: (p) => p.step === 3 && ac.abort(), signal: ac.signal });
    assert.equal(r.stoppedBy, 'signal');
    assert.equal(r.steps, 3);
    assert.equal((await loadSafetensors(r.checkpoint)).metadata['diffuse.step'], '3');
  });

  it('refuses what would lose or mix work, with messages that say what to do', async () => {
    const dir = path.join(root, 'plain-straight');
    await assert.rejects(train(dir, tinyConfig(), blobs(), quiet), /already holds a run; set `resume` to continue it, or choose another `runDir`/);
    const other = tinyConfig({ model: { ...unetPreset('tiny'), baseChannels: 16 } });
    await assert.rejects(train(dir, other, blobs(), { ...quiet, resume: true }), /trained with another model config/);
    const wrongData = { ...blobs(), height: 4, width: 16 };
    await assert.rejects(train(path.join(root, 'x'), tinyConfig(), wrongData, quiet), /data is 1x4x16 but the model expects 1x8x8/);
    await assert.rejects(train(path.join(root, 'empty'), tinyConfig(), blobs(), { ...quiet, resume: true }), /not a run folder \(no config\.json\)/);
    // A checkpoint whose weights do not fit the config
    const cfg = readRunConfig(dir);
    await assert.rejects(loadSamplingWeights(dir, { ...cfg, model: { ...cfg.model, baseChannels: 16 } }), /weight '.*' is \[.*\] but config\.json's model needs/);
    assert.throws(() => new BatchMaker(blobs(8), tinyConfig()), /batch size 16 is larger than the 8 training images/);
  });
});

describe('class-conditional training and classifier-free guidance', () => {
  it('samples of class k come out at grey level k, with and without guidance', { timeout: 120_000 }, async () => {
    const cfg = tinyConfig({ model: { ...unetPreset('tiny'), numClasses: 4 }, classConditioning: { pUncond: 0.2 }, classNames: ['black', 'dark', 'light', 'white'] });
    const dir = path.join(root, 'cond');
    await train(dir, cfg, levels(), { ...quiet, logEvery: 50, maxSteps: 800 });
    const weights = await loadSamplingWeights(dir, cfg);
    const n = 32;
    const labels = Int32Array.from({ length: n }, (_, i) => i % 4);
    const means = async (scale: number) => {
      const denoise = makeDenoiser(cfg, weights, {}, { labels, scale });
      const x = await runReverseProcess({ denoise, scheduler: new DDIMScheduler({ ...cfg.schedule }), count: n, shape: [1, 8, 8], steps: 20, generator: new TorchGenerator(1) });
      await denoise.release();
      return Array.from({ length: n }, (_, i) => x.subarray(i * 64, (i + 1) * 64).reduce((a, b) => a + b) / 64);
    };
    const nearestLevel = (m: number) => LEVELS.map((l) => Math.abs(l - m)).reduce((best, d, k, all) => (d < all[best] ? k : best), 0);
    const plain = await means(1);
    const hits = plain.filter((m, i) => nearestLevel(m) === labels[i]).length / n;
    assert.ok(hits >= 0.85, `conditional sampling: ${hits} of samples at their class's level`);
    // Guided (w = 3): every class's samples are brighter than the class below.
    const guided = await means(3);
    const perClass = [0, 1, 2, 3].map((k) => guided.filter((_, i) => labels[i] === k));
    for (let k = 1; k < 4; k++) assert.ok(Math.min(...perClass[k]) > Math.max(...perClass[k - 1]), `guided class ${k} overlaps class ${k - 1}`);
    assert.throws(() => makeDenoiser(tinyConfig(), weights, {}, { scale: 3 }), /this run is unconditional: it takes no `classLabel`, `prompt` or `guidance`/);
  });
});
