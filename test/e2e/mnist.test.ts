/**
 * End to end on real data (slow; runs when DIFFUSE_SLOW=1, as `npm test` and CI do):
 * train the MNIST preset for a few minutes, then check that samples got measurably
 * better by the evaluator (a classifier trained on MNIST): the Fréchet distance to
 * held-out digits falls far below that of the untrained model's samples.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { DDIMScheduler, RunConfig, TRAIN_DEFAULTS, TorchGenerator, train, unet, unetPreset } from '../../src/index.js';
import { Classifier, FEATURE_DIM, confidence, frechetDistance } from '../../src/eval/index.js';
import { ParamScope, ParamStore, input } from '../../src/engine/index.js';
import { runReverseProcess } from '../../src/samplers/index.js';
import { loadMnist } from '../../src/data/index.js';
import { makeDenoiser } from '../../src/pipelines/index.js';
import { loadSamplingWeights } from '../../src/run/index.js';
import { main } from '../../src/cli/main.js';

const slow = process.env.DIFFUSE_SLOW === '1';
const STEPS = 600;
const root = mkdtempSync(path.join(tmpdir(), 'diffuse-e2e-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('MNIST end to end', { skip: !slow && 'set DIFFUSE_SLOW=1 (npm test does)' }, () => {
  it('training makes samples measurably closer to real digits', { timeout: 15 * 60_000 }, async () => {
    process.env.DIFFUSE_CACHE = path.join(root, 'cache');
    const data = loadMnist('train', 20_000);
    const test = loadMnist('test', 400);
    const config: RunConfig = {
      format: 'diffuse-run-1',
      data: { source: 'mnist', flip: false, limit: 20_000 },
      preset: 'mnist',
      model: unetPreset('mnist'),
      schedule: { ...TRAIN_DEFAULTS.schedule, betaSchedule: 'squaredcos_cap_v2' },
      predictionType: 'epsilon',
      lossWeighting: 'min_snr',
      minSnrGamma: 5,
      batchSize: 64,
      lr: 2e-3,
      warmupSteps: 50,
      lrDecay: { steps: STEPS, minRatio: 0 },
      weightDecay: 0,
      clipGradNorm: 1,
      emaDecay: 0.99,
      seed: 1,
    };
    const cls = await Classifier.forDataset(data, { epochs: 8 });
    const real = await cls.apply(test.images, 400);
    const realConfidence = confidence(real.probs, 400, 10).confident;
    assert.ok(realConfidence > 0.9, `classifier too weak: ${realConfidence} of real test digits confident`);

    const score = async (weights: ReadonlyMap<string, Float32Array>) => {
      const denoise = makeDenoiser(config, weights);
      const x = await runReverseProcess({ denoise, scheduler: new DDIMScheduler(), count: 200, shape: [1, 28, 28], steps: 25, generator: new TorchGenerator(5) });
      await denoise.release();
      const f = await cls.apply(x, 200);
      return { fd: frechetDistance(f.features, 200, real.features, 400, FEATURE_DIM), confident: confidence(f.probs, 200, 10).confident };
    };
    const init = new ParamStore(config.seed);
    unet(new ParamScope(init), config.model, input('x', [1, 1, 28, 28]), input('t', [1]));
    const before = await score(init.values());

    const run = path.join(root, 'run');
    const result = await train(run, config, data, { maxSteps: STEPS, sampleEvery: 0, sampleCount: 16 });
    assert.ok(result.finalLoss < 0.08, `final loss ${result.finalLoss}`);
    const afterTraining = await score(await loadSamplingWeights(run, config));
    console.log(`e2e: Fréchet ${before.fd.toFixed(2)} -> ${afterTraining.fd.toFixed(2)}, confident ${before.confident} -> ${afterTraining.confident}`);
    // measured (classifier-2, 600 steps): Fréchet 710 -> 465, confident 0 -> 0.09 of 200 samples
    assert.ok(afterTraining.fd < 0.8 * before.fd, `Fréchet distance ${before.fd} -> ${afterTraining.fd}`);
    assert.ok(afterTraining.confident > before.confident + 0.04, `confident fraction ${before.confident} -> ${afterTraining.confident}`);

    // The same through the command line (reusing the cached classifier).
    const evalCli = async (...flags: string[]) => {
      const printed: string[] = [];
      const log = console.log;
      console.log = (...a: unknown[]) => void printed.push(a.join(' '));
      const json = path.join(root, 'eval.json');
      try {
        assert.equal(await main(['eval', '--run', run, '--count', '100', '--steps', '20', '--json', json, ...flags]), 0);
      } finally {
        console.log = log;
      }
      const report = JSON.parse(readFileSync(json, 'utf8')) as { samples: { frechet: number; confident: number }; realFloor: { frechet: number }; diverged: number; sampler: string };
      return { text: printed.join('\n'), report };
    };
    const ddim = await evalCli();
    assert.match(ddim.text, /\| samples .*\n\| held-out real \(floor\)/);
    assert.ok(ddim.report.realFloor.frechet < ddim.report.samples.frechet, 'real images score better than samples');
    assert.equal(ddim.report.diverged, 0);
    assert.doesNotMatch(ddim.text, /WARNING/);

    // Euler from t = 999 of the cosine schedule (sigma 20,291) diverges, and the report says so;
    // by default it starts at t = 980 (leading spacing) and does not (measured: Fréchet 202 against 370).
    const linspace = await evalCli('--scheduler', 'euler', '--spacing', 'linspace');
    assert.ok(linspace.report.diverged > 0.5, `diverged ${linspace.report.diverged}`);
    assert.match(linspace.text, /WARNING: .*% of the sample values lay beyond \+-2/);
    const auto = await evalCli('--scheduler', 'euler');
    assert.match(auto.report.sampler, /leading spacing/);
    assert.ok(auto.report.diverged < 0.001, `diverged ${auto.report.diverged}`);
    // diffuse sample says so too.
    const said: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => said.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      assert.equal(await main(['sample', '--run', run, '--scheduler', 'euler', '--spacing', 'linspace', '--steps', '20', '--count', '8', '--out', path.join(root, 'euler.png')]), 0);
    } finally {
      process.stderr.write = write;
    }
    assert.match(said.join(''), /WARNING: .*the sampler diverged/);
    assert.ok(auto.report.samples.frechet < 0.75 * linspace.report.samples.frechet, `Fréchet ${auto.report.samples.frechet} (leading) vs ${linspace.report.samples.frechet} (linspace)`);
  });
});
