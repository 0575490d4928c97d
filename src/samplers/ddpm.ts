/**
 * DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), compatible with diffusers' DDPMScheduler:
 * same config names (camelCase), same timesteps, same float32 arithmetic, and with a
 * TorchGenerator the same added noise.
 */
import { TorchGenerator } from '../diffusion/index.js';
import {
  SCHEDULER_DEFAULTS,
  SchedulerConfig,
  StepOptions,
  StepOutput,
  checkSameLength,
  clip,
  f32,
  predictX0Eps,
  resolveConfig,
  schedulerTables,
  spacedTimesteps,
  sqrt32,
} from './common.js';
import type { Scheduler } from './scheduler.js';

export type VarianceType = 'fixed_small' | 'fixed_large';

export interface DDPMSchedulerConfig extends SchedulerConfig {
  /** sigma_t^2 = beta-tilde_t (fixed_small, DDPM eq. 7) or beta_t (fixed_large). */
  varianceType: VarianceType;
}

export const DDPM_DEFAULTS: DDPMSchedulerConfig = { ...SCHEDULER_DEFAULTS, varianceType: 'fixed_small' };

export class DDPMScheduler implements Scheduler {
  readonly order = 1;
  readonly config: DDPMSchedulerConfig;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** Descending timesteps of the current schedule (all training steps until setTimesteps). */
  timesteps: number[];
  numInferenceSteps?: number;
  /** Scale of the initial noise. */
  readonly initNoiseSigma = 1;
  private readonly defaultGenerator = new TorchGenerator(0);

  constructor(config: Partial<DDPMSchedulerConfig> = {}) {
    this.config = resolveConfig('DDPMScheduler', DDPM_DEFAULTS, config);
    if (!['fixed_small', 'fixed_large'].includes(this.config.varianceType)) {
      throw new Error(`DDPMScheduler: unknown varianceType '${this.config.varianceType}' (known: fixed_small, fixed_large)`);
    }
    ({ betas: this.betas, alphas: this.alphas, alphasCumprod: this.alphasCumprod, timesteps: this.timesteps } = schedulerTables(this.config));
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    this.timesteps = spacedTimesteps(c.timestepSpacing, c.numTrainTimesteps, numInferenceSteps, c.stepsOffset, 'DDPMScheduler');
    this.numInferenceSteps = numInferenceSteps;
  }

  /** Steps are found by timestep value, so starting part-way needs no state. */
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  previousTimestep(t: number): number {
    return t - Math.floor(this.config.numTrainTimesteps / (this.numInferenceSteps ?? this.config.numTrainTimesteps));
  }

  /** Variance of p(x_{t-1} | x_t): beta-tilde = (1 - alphaBar_{t-1}) / (1 - alphaBar_t) * beta_t, or beta_t. */
  private variance(t: number): number {
    const prev = this.previousTimestep(t);
    const at = this.alphasCumprod[t];
    const ap = prev >= 0 ? this.alphasCumprod[prev] : 1;
    const currentBeta = f32(1 - f32(at / ap));
    const small = Math.max(f32(f32(f32(1 - ap) / f32(1 - at)) * currentBeta), f32(1e-20));
    return this.config.varianceType === 'fixed_small' ? small : currentBeta;
  }

  /** One reverse step x_t -> x_{t-1}. */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts: StepOptions = {}): StepOutput {
    checkSameLength(modelOutput, sample, 'DDPMScheduler');
    const t = timestep;
    if (!Number.isInteger(t) || t < 0 || t >= this.config.numTrainTimesteps) throw new Error(`DDPMScheduler.step: timestep ${t} is out of range`);
    const prev = this.previousTimestep(t);
    const at = this.alphasCumprod[t];
    const ap = prev >= 0 ? this.alphasCumprod[prev] : 1;
    const betaProdT = f32(1 - at);
    const betaProdPrev = f32(1 - ap);
    const currentAlpha = f32(at / ap);
    const currentBeta = f32(1 - currentAlpha);
    const n = sample.length;

    // 1. x_0 from the model output (DDPM eq. 15 for epsilon)
    const { x0 } = predictX0Eps(this.config.predictionType, modelOutput, sample, at);
    if (this.config.clipSample) clip(x0, this.config.clipSampleRange);

    // 2. posterior mean mu_t(x_t, x_0) (DDPM eq. 7)
    const c0 = f32(f32(sqrt32(ap) * currentBeta) / betaProdT);
    const c1 = f32(f32(sqrt32(currentAlpha) * betaProdPrev) / betaProdT);
    const prevSample = new Float32Array(n);
    for (let i = 0; i < n; i++) prevSample[i] = f32(f32(c0 * x0[i]) + f32(c1 * sample[i]));

    // 3. add sigma_t z for t > 0
    if (t > 0) {
      const noise = opts.varianceNoise ?? (opts.generator ?? this.defaultGenerator).randn(n);
      if (noise.length !== n) throw new Error(`DDPMScheduler.step: varianceNoise has ${noise.length} values, expected ${n}`);
      const std = sqrt32(this.variance(t));
      for (let i = 0; i < n; i++) prevSample[i] = f32(prevSample[i] + f32(std * noise[i]));
    }
    return { prevSample, predOriginalSample: x0 };
  }

  /** q(x_t | x_0) for a batch: `timesteps[k]` applies to the k-th of `timesteps.length` equal chunks. */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoise32(this.alphasCumprod, original, noise, timesteps);
  }
}

/** diffusers' add_noise in float32. */
export function addNoise32(alphasCumprod: Float32Array, original: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
  if (noise.length !== original.length) throw new Error(`addNoise: noise has ${noise.length} values, original has ${original.length}`);
  const per = original.length / timesteps.length;
  if (!Number.isInteger(per)) throw new Error(`addNoise: ${original.length} values do not split into ${timesteps.length} samples`);
  const out = new Float32Array(original.length);
  timesteps.forEach((t, k) => {
    const a = sqrt32(alphasCumprod[t]);
    const b = sqrt32(f32(1 - alphasCumprod[t]));
    for (let i = k * per; i < (k + 1) * per; i++) out[i] = f32(f32(a * original[i]) + f32(b * noise[i]));
  });
  return out;
}
