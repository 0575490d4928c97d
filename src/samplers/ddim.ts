/**
 * DDIM (Song et al. 2021), compatible with diffusers' DDIMScheduler: eta = 0 is the
 * deterministic ODE sampler on a subsequence of timesteps; eta = 1 matches DDPM's variance.
 *
 * eta > 1 adds more noise than DDPM's posterior and lets each step correct more of the errors
 * that earlier steps made: in the limit of many steps, the reverse SDE with a stronger Langevin
 * term (Karras et al. 2022, eq. 6), which keeps every marginal q(x_t); at few steps it also
 * narrows the samples' spread, as each noisy step re-estimates x_0 by its mean (measured in
 * closed form on Gaussian data in test/samplers/ddim-eta.test.ts). A step's noise cannot exceed
 * all the noise that x_prev holds, sigma^2 <= 1 - alphaBar_prev (there, x_prev =
 * sqrt(alphaBar_prev) x_0 + noise: the x_0 estimate noised afresh), so the variance is capped
 * there; diffusers would take the square root of a negative number and return NaN. For eta <= 1
 * the cap never binds and the numbers are diffusers'.
 */
import { TorchGenerator } from '../diffusion/index.js';
import { addNoise32 } from './ddpm.js';
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

export interface DDIMSchedulerConfig extends SchedulerConfig {
  /** At the last step use alphaBar_prev = 1 (true) or alphaBar_0 (false). */
  setAlphaToOne: boolean;
}

export const DDIM_DEFAULTS: DDIMSchedulerConfig = { ...SCHEDULER_DEFAULTS, setAlphaToOne: true };

export class DDIMScheduler implements Scheduler {
  readonly order = 1;
  readonly config: DDIMSchedulerConfig;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  timesteps: number[];
  numInferenceSteps?: number;
  readonly initNoiseSigma = 1;
  private readonly defaultGenerator = new TorchGenerator(0);

  constructor(config: Partial<DDIMSchedulerConfig> = {}) {
    this.config = resolveConfig('DDIMScheduler', DDIM_DEFAULTS, config);
    ({ betas: this.betas, alphas: this.alphas, alphasCumprod: this.alphasCumprod, timesteps: this.timesteps } = schedulerTables(this.config));
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1 : this.alphasCumprod[0];
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    this.timesteps = spacedTimesteps(c.timestepSpacing, c.numTrainTimesteps, numInferenceSteps, c.stepsOffset, 'DDIMScheduler');
    this.numInferenceSteps = numInferenceSteps;
  }

  /** Steps are found by timestep value, so starting part-way needs no state. */
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  /** sigma_t(eta)^2 / eta^2 = (1 - alphaBar_prev) / (1 - alphaBar_t) * (1 - alphaBar_t / alphaBar_prev)  (DDIM eq. 16). */
  private variance(at: number, ap: number): number {
    return f32(f32(f32(1 - ap) / f32(1 - at)) * f32(1 - f32(at / ap)));
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts: StepOptions = {}): StepOutput {
    if (this.numInferenceSteps === undefined) throw new Error('DDIMScheduler.step: call setTimesteps(n) first');
    checkSameLength(modelOutput, sample, 'DDIMScheduler');
    const eta = opts.eta ?? 0;
    const t = timestep;
    if (!Number.isInteger(t) || t < 0 || t >= this.config.numTrainTimesteps) throw new Error(`DDIMScheduler.step: timestep ${t} is out of range`);
    const prev = t - Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps);
    const at = this.alphasCumprod[t];
    const ap = prev >= 0 ? this.alphasCumprod[prev] : this.finalAlphaCumprod;
    const sa = sqrt32(at);
    const sb = sqrt32(f32(1 - at));
    const n = sample.length;

    // 1. x_0 and eps from the model output ("predicted x_0" of DDIM eq. 12)
    const predicted = predictX0Eps(this.config.predictionType, modelOutput, sample, at);
    const x0 = predicted.x0;
    let eps = predicted.eps;
    if (this.config.clipSample) clip(x0, this.config.clipSampleRange);

    // 2. sigma_t (DDIM eq. 16), at most the noise that x_prev holds
    const ddim = f32(f32(eta) * sqrt32(this.variance(at, ap)));
    const std = eta > 1 ? Math.min(ddim, sqrt32(f32(1 - ap))) : ddim;
    if (opts.useClippedModelOutput) {
      eps = new Float32Array(n);
      for (let i = 0; i < n; i++) eps[i] = f32(f32(sample[i] - f32(sa * x0[i])) / sb);
    }

    // 3. x_{t-1} = sqrt(alphaBar_prev) x_0 + sqrt(1 - alphaBar_prev - sigma^2) eps + sigma z  (DDIM eq. 12)
    const rest = f32(f32(1 - ap) - f32(std * std));
    const dir = sqrt32(eta > 1 ? Math.max(0, rest) : rest);
    const sap = sqrt32(ap);
    const prevSample = new Float32Array(n);
    for (let i = 0; i < n; i++) prevSample[i] = f32(f32(sap * x0[i]) + f32(dir * eps[i]));
    if (eta > 0) {
      const noise = opts.varianceNoise ?? (opts.generator ?? this.defaultGenerator).randn(n);
      if (noise.length !== n) throw new Error(`DDIMScheduler.step: varianceNoise has ${noise.length} values, expected ${n}`);
      for (let i = 0; i < n; i++) prevSample[i] = f32(prevSample[i] + f32(std * noise[i]));
    }
    return { prevSample, predOriginalSample: x0 };
  }

  addNoise(original: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoise32(this.alphasCumprod, original, noise, timesteps);
  }
}
