/**
 * `diffuse eval`: generate samples from a run and score them against held-out
 * real images in the evaluator classifier's feature space.
 */
import { createGenerator, GeneratorKind } from '../diffusion/index.js';
import { ImageDataset, loadDataset } from '../data/index.js';
import { RuntimeOptions } from '../engine/index.js';
import { SchedulerName, makeScheduler } from '../samplers/registry.js';
import { generate } from '../samplers/pipeline.js';
import { RunConfig, schedulerConfigOf } from '../train/config.js';
import { loadSamplingWeights, makeDenoiser } from '../train/run.js';
import { Classifier, FEATURE_DIM } from './classifier.js';
import { confidence, frechetDistance, precisionRecall } from './metrics.js';

export interface EvalOptions {
  count: number;
  scheduler: SchedulerName;
  karras?: boolean;
  steps: number;
  eta: number;
  seed: number;
  generator?: GeneratorKind;
  runtime?: RuntimeOptions;
  log?: (s: string) => void;
}

export interface Scores {
  /** Fréchet distance in the classifier's 128-d feature space (not Inception FID). */
  frechet: number;
  precision: number;
  recall: number;
  /** Fraction classified with top probability >= 0.9. */
  confident: number;
  histogram: number[];
}

export interface EvalReport {
  samples: Scores;
  /** Held-out real images scored the same way against other held-out real images. */
  realFloor: Scores;
  count: number;
  sampler: string;
  seconds: number;
}

async function score(cls: Classifier, a: Float32Array, na: number, b: Float32Array, nb: number): Promise<Scores> {
  const fa = await cls.apply(a, na);
  const fb = await cls.apply(b, nb);
  const { confident, histogram } = confidence(fa.probs, na, cls.classes);
  const pr = precisionRecall(fb.features, nb, fa.features, na, FEATURE_DIM);
  return { frechet: frechetDistance(fa.features, na, fb.features, nb, FEATURE_DIM), ...pr, confident, histogram };
}

export async function evaluateRun(runDir: string, config: RunConfig, o: EvalOptions): Promise<EvalReport> {
  const log = o.log ?? (() => {});
  const source = config.data.source;
  // The classifier learns from the same training images as the model (and is cached per set).
  const train: ImageDataset = await loadDataset(source, 'train', { size: config.data.size, channels: config.data.channels, limit: config.data.limit });
  const test = await loadDataset(source, 'test');
  if (test.count < 2 * o.count) throw new Error(`--count ${o.count} needs ${2 * o.count} held-out images for the floor; ${source} has ${test.count}`);
  const cls = await Classifier.forDataset(train, { runtime: o.runtime, log });

  const started = Date.now();
  const weights = await loadSamplingWeights(runDir, config);
  const denoise = makeDenoiser(config, weights, o.runtime);
  const m = config.model;
  const shape = [m.inChannels, m.imageSize, m.imageSize];
  const per = shape.reduce((a, b) => a * b, 1);
  const schedulerConfig = schedulerConfigOf(config);
  const gen = createGenerator(o.generator ?? 'torch', o.seed);
  const samples = new Float32Array(o.count * per);
  const chunk = 250;
  for (let at = 0; at < o.count; at += chunk) {
    const n = Math.min(chunk, o.count - at);
    const scheduler = makeScheduler(o.scheduler, schedulerConfig, { karras: o.karras });
    const x = await generate({
      denoise,
      scheduler,
      count: n,
      shape,
      steps: o.steps,
      eta: o.eta,
      generator: gen,
      onStep: (i) => {
        if (i % 10 === 0) log(`sampling ${at + n}/${o.count} with ${o.scheduler} (${o.steps} steps): step ${i + 1}`);
      },
    });
    samples.set(x, at * per);
  }
  await denoise.release();
  // Real floor: first half of the held-out split against the second half; samples against the second half.
  const realA = test.images.subarray(0, o.count * per);
  const realB = test.images.subarray(o.count * per, 2 * o.count * per);
  log('scoring');
  const report: EvalReport = {
    samples: await score(cls, samples, o.count, realB, o.count),
    realFloor: await score(cls, realA, o.count, realB, o.count),
    count: o.count,
    sampler: `${o.scheduler}${o.karras ? ' (Karras sigmas)' : ''}, ${o.steps} steps${o.scheduler === 'ddim' ? `, eta ${o.eta}` : ''}, seed ${o.seed}`,
    seconds: (Date.now() - started) / 1000,
  };
  await cls.release();
  return report;
}
