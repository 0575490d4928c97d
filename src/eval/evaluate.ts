/**
 * `diffuse eval`: generate samples from a run and score them against held-out
 * real images in the evaluator classifier's feature space.
 */
import type { GeneratorKind } from '../diffusion/index.js';
import { ImageDataset, classPrompt, loadDataset } from '../data/index.js';
import { RuntimeOptions } from '../engine/index.js';
import type { SchedulerName } from '../samplers/registry.js';
import type { TimestepSpacing } from '../samplers/common.js';
import { DiffusionPipeline, GenerateOptions } from '../pipelines/index.js';
import type { RunConfig } from '../run/config.js';
import { conditioningOf } from '../run/conditioning.js';
import { Classifier, FEATURE_DIM } from './classifier.js';
import { confidence, frechetDistance, precisionRecall } from './metrics.js';
import { OptionError } from '../engine/errors.js';

export interface EvalOptions {
  count: number;
  scheduler: SchedulerName;
  karras?: boolean;
  steps: number;
  eta: number;
  seed: number;
  generator?: GeneratorKind;
  /** DDPM/DDIM: clip the x_0 estimate (default: the run's, see schedulerConfigOf). */
  clipSample?: boolean;
  /** The timesteps of the N steps (default: the scheduler's). */
  timestepSpacing?: TimestepSpacing;
  runtime?: RuntimeOptions;
  log?: (s: string) => void;
}

/** Options of evaluateRun: EvalOptions, and for a conditional run the guidance weight to sample at. */
export interface RunEvalOptions extends EvalOptions {
  /**
   * Class- or text-conditional runs: sample sample i conditioned on the label of the held-out
   * image it is compared with (its class, or the data set's caption of that class), at this
   * classifier-free guidance weight (0 unconditional, 1 conditional without guidance). The
   * samples then hold the classes in the held-out images' shares. Without it, a conditional run
   * is sampled with its null condition (the unconditional model it learnt beside).
   */
  guidance?: number;
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
  /**
   * The evaluator's own check: the fraction of overlays of two held-out images of different
   * classes (pixel-wise maximum) that its classifier reads with confidence >= 0.9. Such an image
   * is no single digit; a classifier that is sure of many of them would make "confident" lax.
   */
  overlayConfident: number;
  /** Fraction of sample values beyond +-2 before they were clipped to [-1, 1] (0 for a sampler that stayed on the data's range). */
  diverged: number;
  count: number;
  sampler: string;
  /** The guidance weight the samples were conditioned at (RunEvalOptions.guidance), if any. */
  guidance?: number;
  seconds: number;
}

async function score(cls: Classifier, a: Float32Array, na: number, b: Float32Array, nb: number): Promise<Scores> {
  const fa = await cls.apply(a, na);
  const fb = await cls.apply(b, nb);
  const { confident, histogram } = confidence(fa.probs, na, cls.classes);
  const pr = precisionRecall(fb.features, nb, fa.features, na, FEATURE_DIM);
  return { frechet: frechetDistance(fa.features, na, fb.features, nb, FEATURE_DIM), ...pr, confident, histogram };
}

/** Data lie in [-1, 1]; a sample value beyond this bound means the sampler diverged. */
const DIVERGED = 2;

/**
 * o.count samples from the pipeline (batches of 250), clipped to [-1, 1] as an image file would
 * hold them, and the fraction of values that lay beyond +-2 before clipping: a classifier can be
 * confident about an image that exploded, so the report says so.
 */
async function sampleMany(pipe: DiffusionPipeline, o: EvalOptions, condition: Pick<GenerateOptions, 'classLabel' | 'prompt' | 'guidance'> = {}): Promise<{ samples: Float32Array; diverged: number }> {
  const { data: samples } = await pipe.generate({
    ...condition,
    count: o.count,
    scheduler: o.scheduler,
    karras: o.karras,
    steps: o.steps,
    eta: o.eta,
    seed: o.seed,
    generatorKind: o.generator ?? 'torch',
    clipSample: o.clipSample,
    spacing: o.timestepSpacing,
    onStep: ({ index, offset, batchCount }) => {
      if (index % 10 === 0) o.log?.(`sampling ${offset + batchCount}/${o.count} with ${o.scheduler} (${o.steps} steps): step ${index + 1}`);
    },
  });
  return { samples, diverged: clipToImageRange(samples) };
}

/** The fraction of values beyond +-2 (or not finite): the mark of a sampler that diverged. */
export function divergedFraction(samples: Float32Array): number {
  let beyond = 0;
  for (const v of samples) if (!(Math.abs(v) <= DIVERGED)) beyond++;
  return samples.length ? beyond / samples.length : 0;
}

/**
 * Clips samples in place to [-1, 1] (NaN to 0), as an image file would hold them, and returns
 * the fraction of values that lay beyond +-2 before (`divergedFraction`).
 */
export function clipToImageRange(samples: Float32Array): number {
  const diverged = divergedFraction(samples);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    samples[i] = v > 1 ? 1 : v < -1 ? -1 : Number.isNaN(v) ? 0 : v;
  }
  return diverged;
}

export interface AdherenceRow {
  guidance: number;
  /** Fraction of samples that the evaluator's classifier assigns to the prompted class. */
  rate: number;
  perClass: number[];
  /** As EvalReport.diverged, for this guidance weight's samples. */
  diverged: number;
}

export interface AdherenceReport {
  rows: AdherenceRow[];
  /** Samples per guidance weight (an equal share per class). */
  count: number;
  /** The condition of class k: its prompt (text runs) or its label. */
  conditions: string[];
  sampler: string;
  seconds: number;
}

/**
 * Prompt adherence: for each guidance weight, generate count / classes samples of every
 * class (prompted by the set's caption template, or by label for class-conditional runs)
 * and count how often the evaluator's classifier, trained separately on the real training
 * images, reads the prompted class.
 */
export async function evaluateAdherence(runDir: string, config: RunConfig, o: EvalOptions & { guidances: readonly number[] }): Promise<AdherenceReport> {
  const log = o.log ?? (() => {});
  if (conditioningOf(config) === 'none') throw new OptionError(`${runDir}: adherence needs a run trained with \`text\` or \`classConditioning\``);
  const train: ImageDataset = await loadDataset(config.data.source, 'train', { size: config.data.size, channels: config.data.channels, limit: config.data.limit });
  if (!train.classNames || !train.labels) throw new Error(`${config.data.source}: adherence needs a labelled set (mnist, fashion-mnist, or class subfolders)`);
  const classNames = train.classNames;
  const K = classNames.length;
  const cls = await Classifier.forDataset(train, { runtime: o.runtime, log });
  const started = Date.now();
  const pipe = await DiffusionPipeline.fromRun(runDir, { runtime: o.runtime });
  // From the config: an export whose text encoder is inside its U-Net has no pipe.text.
  const text = config.text !== undefined;
  const perClass = Math.max(1, Math.floor(o.count / K));
  const count = perClass * K;
  const want = Int32Array.from({ length: count }, (_, i) => Math.floor(i / perClass));
  const conditions = classNames.map((name, k) => (text ? classPrompt(train.name, classNames, k) : name));
  const rows: AdherenceRow[] = [];
  for (const w of o.guidances) {
    const condition = text ? { prompt: Array.from(want, (k) => conditions[k]), guidance: w } : { classLabel: Array.from(want), guidance: w };
    const { samples, diverged } = await sampleMany(pipe, { ...o, count, log: (s) => log(`guidance ${w}: ${s}`) }, condition);
    const { probs } = await cls.apply(samples, count);
    const hits = new Array<number>(K).fill(0);
    for (let i = 0; i < count; i++) {
      let best = 0;
      for (let k = 1; k < K; k++) if (probs[i * K + k] > probs[i * K + best]) best = k;
      if (best === want[i]) hits[want[i]]++;
    }
    rows.push({ guidance: w, rate: hits.reduce((a, b) => a + b, 0) / count, perClass: hits.map((h) => h / perClass), diverged });
  }
  await pipe.release();
  await cls.release();
  return { rows, count, conditions, sampler: samplerName(o), seconds: (Date.now() - started) / 1000 };
}

const samplerName = (o: EvalOptions) =>
  `${o.scheduler}${o.karras ? ' (Karras sigmas)' : ''}, ${o.steps} steps${o.scheduler === 'ddim' ? `, eta ${o.eta}` : ''}${o.timestepSpacing ? `, ${o.timestepSpacing} spacing` : ''}${o.clipSample !== undefined ? `, clip ${o.clipSample ? 'on' : 'off'}` : ''}, seed ${o.seed}`;

/**
 * n overlays of two held-out images with different labels, deterministic: the pixel-wise maximum
 * for light strokes on a dark background (MNIST), the minimum for dark drawings on a light one
 * (emoji on white), so that both pictures stay visible in the overlay.
 */
export function overlays(test: ImageDataset, n: number): Float32Array {
  const labels = test.labels;
  if (!labels) throw new Error(`${test.name}: overlays need labelled images`);
  const per = test.images.length / test.count;
  let sum = 0;
  for (const v of test.images) sum += v;
  const pick = sum > 0 ? Math.min : Math.max;
  const out = new Float32Array(n * per);
  for (let i = 0, made = 0; made < n; i++) {
    const a = i % test.count;
    const b = (i * 7919 + 13) % test.count;
    if (labels[a] === labels[b]) continue;
    for (let q = 0; q < per; q++) out[made * per + q] = pick(test.images[a * per + q], test.images[b * per + q]);
    made++;
  }
  return out;
}

type Condition = Pick<GenerateOptions, 'classLabel' | 'prompt' | 'guidance'>;

/**
 * The condition of each sample of a guided evaluation: sample i takes the label of held-out
 * image i (as a class label, or as the data set's caption of that class for text runs).
 */
export function heldOutConditions(config: RunConfig, set: string, classNames: readonly string[], labels: ArrayLike<number>, guidance: number): Condition {
  const ks = Array.from(labels);
  const kind = conditioningOf(config);
  if (kind === 'text') return { prompt: ks.map((k) => classPrompt(set, classNames, k)), guidance };
  if (kind === 'class') return { classLabel: ks, guidance };
  throw new OptionError(NOT_CONDITIONAL);
}

const NOT_CONDITIONAL = '`guidance` needs a run trained with `text` or `classConditioning`';

export async function evaluateRun(runDir: string, config: RunConfig, o: RunEvalOptions): Promise<EvalReport> {
  // Before any data are read: an unconditional run has no labels to sample on.
  if (o.guidance !== undefined && conditioningOf(config) === 'none') throw new OptionError(NOT_CONDITIONAL);
  const log = o.log ?? (() => {});
  const source = config.data.source;
  // The classifier learns from the same training images as the model (and is cached per set).
  const train: ImageDataset = await loadDataset(source, 'train', { size: config.data.size, channels: config.data.channels, limit: config.data.limit });
  const test = await loadDataset(source, 'test', { size: config.data.size, channels: config.data.channels });
  if (test.count < 2 * o.count) throw new OptionError(`\`count\` ${o.count} needs ${2 * o.count} held-out images for the floor; ${source} has ${test.count} (use a \`count\` of ${Math.floor(test.count / 2)} or less)`);
  let condition: Condition = {};
  if (o.guidance !== undefined) {
    if (!test.labels || !train.classNames) throw new OptionError(`${source}: \`guidance\` needs labelled held-out images (mnist, fashion-mnist, emoji, or class subfolders)`);
    // Samples are compared with the second half of the held-out split: they take its labels.
    condition = heldOutConditions(config, train.name, train.classNames, test.labels.subarray(o.count, 2 * o.count), o.guidance);
  }
  const cls = await Classifier.forDataset(train, { runtime: o.runtime, log });

  const started = Date.now();
  const pipe = await DiffusionPipeline.fromRun(runDir, { runtime: o.runtime });
  let sampled: { samples: Float32Array; diverged: number };
  try {
    sampled = await sampleMany(pipe, o, condition);
  } finally {
    await pipe.release();
  }
  const { samples, diverged } = sampled;
  const per = samples.length / o.count;
  // Real floor: first half of the held-out split against the second half; samples against the second half.
  const realA = test.images.subarray(0, o.count * per);
  const realB = test.images.subarray(o.count * per, 2 * o.count * per);
  log('scoring');
  const report: EvalReport = {
    samples: await score(cls, samples, o.count, realB, o.count),
    realFloor: await score(cls, realA, o.count, realB, o.count),
    overlayConfident: confidence((await cls.apply(overlays(test, o.count), o.count)).probs, o.count, cls.classes).confident,
    diverged,
    count: o.count,
    sampler: samplerName(o) + (o.guidance !== undefined ? `, guidance ${o.guidance} on the held-out labels` : ''),
    ...(o.guidance !== undefined ? { guidance: o.guidance } : {}),
    seconds: (Date.now() - started) / 1000,
  };
  await cls.release();
  return report;
}
