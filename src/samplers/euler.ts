/**
 * Euler's method on the probability-flow ODE in Karras et al.'s sigma
 * parametrisation (2022, Algorithm 1 without churn), compatible with diffusers'
 * EulerDiscreteScheduler: dx/dsigma = (x - x_0(x, sigma)) / sigma.
 */
import { SCHEDULER_DEFAULTS, StepOptions, StepOutput, checkSameLength, resolveConfig, schedulerTables } from './common.js';
import type { Scheduler } from './scheduler.js';
import { KSchedulerConfig, addNoiseSigma, kSchedule, kTimesteps, predictX0Sigma } from './sigmas.js';

export const EULER_DEFAULTS: KSchedulerConfig = { ...SCHEDULER_DEFAULTS, clipSample: false, timestepSpacing: 'linspace', useKarrasSigmas: false };

export class EulerDiscreteScheduler implements Scheduler {
  readonly order: number = 1;
  readonly config: KSchedulerConfig;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  sigmas: number[] = [];
  /** sigma of the model input at a (fractional) timestep, consistent with this schedule. */
  sigmaAt: (t: number) => number = () => NaN;
  protected index = 0;

  constructor(config: Partial<KSchedulerConfig> = {}, name = 'EulerDiscreteScheduler') {
    this.config = resolveConfig(name, EULER_DEFAULTS, config);
    this.alphasCumprod = schedulerTables(this.config).alphasCumprod;
    this.setTimesteps(this.config.numTrainTimesteps);
  }

  /**
   * Standard deviation of the initial noise, as diffusers defines it: sigma_max for `linspace` and
   * `trailing` spacing (there sigma_max is so large that the +1 of the data's variance vanishes),
   * sqrt(sigma_max^2 + 1) for `leading`, whose first sigma is small enough for it to matter.
   */
  get initNoiseSigma(): number {
    const max = Math.max(...this.sigmas);
    return this.config.timestepSpacing === 'leading' ? Math.sqrt(max * max + 1) : max;
  }

  setTimesteps(n: number): void {
    const c = this.config;
    const ts = kTimesteps(c.timestepSpacing, c.numTrainTimesteps, n, c.stepsOffset, this.constructor.name);
    ({ sigmas: this.sigmas, timesteps: this.timesteps, sigmaAt: this.sigmaAt } = kSchedule(c, this.alphasCumprod, ts));
    this.index = 0;
  }

  /** Starts the next step at timesteps[index] (img2img). */
  setBeginIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.timesteps.length) throw new Error(`${this.constructor.name}.setBeginIndex: ${index} is not an index of the ${this.timesteps.length} timesteps`);
    this.index = index;
  }

  /** x_0 + sigma noise, sigma of each chunk's timestep in the current schedule. */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoiseSigma(this.sigmas, this.timesteps, original, noise, timesteps, (x, s, z) => x + s * z);
  }

  /** The model sees x / sqrt(sigma^2 + 1): the variance-preserving input it was trained on. */
  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    const s = this.sigmas[this.index];
    const k = 1 / Math.sqrt(s * s + 1);
    return sample.map((v) => v * k);
  }

  step(modelOutput: Float32Array, _timestep: number, sample: Float32Array, _opts: StepOptions = {}): StepOutput {
    checkSameLength(modelOutput, sample, 'EulerDiscreteScheduler');
    if (this.index >= this.timesteps.length) throw new Error('EulerDiscreteScheduler.step: all steps are done; call setTimesteps again');
    const sigma = this.sigmas[this.index];
    const next = this.sigmas[this.index + 1];
    const x0 = predictX0Sigma(this.config.predictionType, modelOutput, sample, sigma);
    const dt = next - sigma;
    const prevSample = sample.map((x, i) => x + ((x - x0[i]) / sigma) * dt);
    this.index++;
    return { prevSample, predOriginalSample: x0 };
  }
}
