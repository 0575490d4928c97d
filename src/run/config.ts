/**
 * A training run's configuration: everything needed to rebuild the model and
 * continue training, saved as config.json in the run folder.
 */
import type { LossWeighting, PredictionType, ScheduleConfig } from '../diffusion/index.js';
import { BETA_SCHEDULES, PREDICTION_TYPES } from '../diffusion/index.js';
import { UNetConfig, validateUNetConfig } from '../nn/unet.js';
import { TextConditioning, validateTextConditioning } from './text.js';

export interface DataConfig {
  /** 'mnist', 'fashion-mnist' or a folder path. */
  source: string;
  /** Resize folder images to size x size. */
  size?: number;
  channels?: 1 | 3;
  /** Use at most this many training images. */
  limit?: number;
  /** Random horizontal flips. */
  flip: boolean;
}

/** How a run optimises (U-Net and autoencoder runs alike): batches, AdamW, its schedule, the EMA and the seed. */
export interface OptimizerConfig {
  batchSize: number;
  lr: number;
  warmupSteps: number;
  /**
   * Cosine decay of the learning rate after warm-up, reaching lr * minRatio at step `steps`
   * (and staying there). Absent: constant after warm-up. A pure function of the step, so
   * resumed runs see the same rates.
   */
  lrDecay?: { steps: number; minRatio: number };
  weightDecay: number;
  clipGradNorm: number;
  emaDecay: number;
  seed: number;
}

export interface RunConfig extends OptimizerConfig {
  format: 'diffuse-run-1';
  data: DataConfig;
  preset?: string;
  model: UNetConfig;
  schedule: Required<Pick<ScheduleConfig, 'numTrainTimesteps' | 'betaStart' | 'betaEnd' | 'betaSchedule' | 'rescaleBetasZeroSnr'>>;
  predictionType: PredictionType;
  lossWeighting: LossWeighting;
  minSnrGamma: number;
  /**
   * How each batch draws its timesteps: 'uniform' (independently; absent means this), or
   * 'stratified': one in each of B equal slices of [0, T), the low-discrepancy sampler of
   * Kingma et al. 2021 (VDM, appendix), which keeps the loss an unbiased estimate with less variance.
   */
  timestepSampling?: TimestepSampling;
  /** Class-conditional training: the label is replaced by the null class with probability pUncond (for classifier-free guidance). */
  classConditioning?: { pUncond: number };
  /** Names of the classes, in label order (for --class NAME and reports). */
  classNames?: string[];
  /** Text-conditional training: the encoder, and how often the caption is dropped. The tokenizer is tokenizer.json. */
  text?: TextConditioning;
  /**
   * Latent runs (`diffuse train --vae DIR`): the U-Net denoises the latents of the autoencoder
   * kept in the run's autoencoder/ folder, multiplied by scalingFactor (1 / their standard
   * deviation over the training data) so that they have unit variance.
   */
  latent?: LatentConfig;
}

export interface LatentConfig {
  scalingFactor: number;
  /** The autoencoder folder the run was started from (for the record; the run uses its own copy). */
  source: string;
}

export const TIMESTEP_SAMPLINGS = ['uniform', 'stratified'] as const;
export type TimestepSampling = (typeof TIMESTEP_SAMPLINGS)[number];

export const TRAIN_DEFAULTS = {
  predictionType: 'epsilon' as PredictionType,
  lossWeighting: 'mse' as LossWeighting,
  minSnrGamma: 5,
  batchSize: 64,
  lr: 1e-3,
  warmupSteps: 200,
  weightDecay: 0,
  clipGradNorm: 1,
  emaDecay: 0.999,
  seed: 0,
  schedule: { numTrainTimesteps: 1000, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'linear' as const, rescaleBetasZeroSnr: false },
};

/** Checks the optimizer's fields; `fail(field, message)` throws in the caller's words. */
export function validateOptimizerConfig(c: OptimizerConfig, fail: (field: string, msg: string) => never): void {
  if (!(Number.isInteger(c.batchSize) && c.batchSize > 0)) fail('batchSize', `must be a positive integer, got ${c.batchSize}`);
  if (!(c.lr > 0 && c.lr < 1)) fail('lr', `must be in (0, 1), got ${c.lr}`);
  if (!(c.emaDecay >= 0 && c.emaDecay < 1)) fail('emaDecay', `must be in [0, 1), got ${c.emaDecay}`);
  if (!(c.warmupSteps >= 0)) fail('warmupSteps', `must be >= 0, got ${c.warmupSteps}`);
  if (c.lrDecay) {
    if (!(Number.isInteger(c.lrDecay.steps) && c.lrDecay.steps > c.warmupSteps)) fail('lrDecay.steps', `must be an integer above warmupSteps (${c.warmupSteps}), got ${c.lrDecay.steps}`);
    if (!(c.lrDecay.minRatio >= 0 && c.lrDecay.minRatio <= 1)) fail('lrDecay.minRatio', `must be in [0, 1], got ${c.lrDecay.minRatio}`);
  }
}

/** Checks every field; errors name the field and the expected value. */
export function validateRunConfig(c: RunConfig): void {
  const fail = (field: string, msg: string): never => {
    throw new Error(`config: ${field} ${msg}`);
  };
  validateUNetConfig(c.model);
  if (!PREDICTION_TYPES.includes(c.predictionType)) fail('predictionType', `must be one of ${PREDICTION_TYPES.join(', ')}, got '${c.predictionType}'`);
  if (!['mse', 'min_snr'].includes(c.lossWeighting)) fail('lossWeighting', `must be mse or min_snr, got '${c.lossWeighting}'`);
  if (!(c.minSnrGamma > 0)) fail('minSnrGamma', `must be > 0, got ${c.minSnrGamma}`);
  if (c.timestepSampling !== undefined && !TIMESTEP_SAMPLINGS.includes(c.timestepSampling)) fail('timestepSampling', `must be one of ${TIMESTEP_SAMPLINGS.join(', ')}, got '${c.timestepSampling}'`);
  if (!BETA_SCHEDULES.includes(c.schedule.betaSchedule)) fail('schedule', `'${c.schedule.betaSchedule}' is unknown (known: ${BETA_SCHEDULES.join(', ')})`);
  const positiveInt = (v: number, f: string) => (Number.isInteger(v) && v > 0) || fail(f, `must be a positive integer, got ${v}`);
  positiveInt(c.schedule.numTrainTimesteps, 'timesteps');
  // Every table of the schedule has this length: a config from elsewhere must not ask for gigabytes.
  if (c.schedule.numTrainTimesteps > 100_000) fail('timesteps', `must be at most 100000, got ${c.schedule.numTrainTimesteps}`);
  validateOptimizerConfig(c, fail);
  if (c.classConditioning) {
    if (c.model.numClasses === undefined) fail('model.numClasses', 'is needed for class-conditional training');
    if (!(c.classConditioning.pUncond >= 0 && c.classConditioning.pUncond < 1)) fail('classConditioning.pUncond', `must be in [0, 1), got ${c.classConditioning.pUncond}`);
  }
  if (c.latent && !(c.latent.scalingFactor > 0 && Number.isFinite(c.latent.scalingFactor))) fail('latent.scalingFactor', `must be a finite number > 0, got ${c.latent.scalingFactor}`);
  if (c.text) {
    if (c.classConditioning) fail('text', 'and classConditioning cannot be combined; choose one condition');
    if (c.model.contextDim === undefined) fail('model.contextDim', 'is needed for text-conditional training');
    validateTextConditioning(c.text);
  }
}

/** What the learning-rate schedule reads from a run's config (U-Net and autoencoder runs alike). */
export type LrSchedule = Pick<OptimizerConfig, 'lr' | 'warmupSteps' | 'lrDecay'>;

/**
 * The learning rate at a step: linear warm-up, then constant, or with `lrDecay` a half cosine
 * from lr down to lr * minRatio at lrDecay.steps (Loshchilov & Hutter 2017, SGDR eq. 5, one cycle).
 */
export function learningRate(c: LrSchedule, step: number): number {
  const warm = c.warmupSteps > 0 ? Math.min(1, (step + 1) / c.warmupSteps) : 1;
  if (!c.lrDecay || step < c.warmupSteps) return c.lr * warm;
  const { steps, minRatio } = c.lrDecay;
  const progress = Math.min(1, (step - c.warmupSteps) / Math.max(1, steps - c.warmupSteps));
  return c.lr * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** EMA decay with the usual warm-up min(decay, (1 + n) / (10 + n)), so early averages are not dominated by the random init. */
export function emaDecayAt(c: Pick<OptimizerConfig, 'emaDecay'>, step: number): number {
  return Math.min(c.emaDecay, (1 + step) / (10 + step));
}
