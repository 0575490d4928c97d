/**
 * The scheduler contract, as diffusers' SchedulerMixin defines it: a list of timesteps, the
 * scale of the initial noise, what the model sees at a step, one reverse step, and the forward
 * process q(x_t | x_0) in the scale that `step` works in (for img2img and inpainting).
 */
import type { StepOptions, StepOutput } from './common.js';

export interface Scheduler {
  /**
   * Model evaluations per solver step: 1, or 2 for Heun, whose `timesteps` list holds each inner
   * timestep twice (diffusers' `order`). img2img skips `order` entries per skipped step.
   */
  readonly order: number;
  /** The timesteps of the current schedule, one per model evaluation, descending. */
  timesteps: number[];
  /** Standard deviation of x_T: 1 for the variance-preserving samplers, larger for the sigma (Euler) family. */
  readonly initNoiseSigma: number;
  setTimesteps(n: number): void;
  /**
   * Starts the next `step` at `timesteps[index]` instead of the first: img2img runs only the tail
   * of the schedule (diffusers' set_begin_index). Schedulers that step by timestep value need no state.
   */
  setBeginIndex(index: number): void;
  /** What the model sees at this step (the sigma family divides x by sqrt(sigma^2 + 1); DDPM/DDIM pass it through). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  /** One reverse step: the model output at `timestep` and x_t -> x_{t-1} and the x_0 estimate. */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts?: StepOptions): StepOutput;
  /**
   * q(x_t | x_0) for a batch, in the scale that `step` expects at `timesteps[k]` (one timestep of the
   * current schedule per equal chunk of `original`): sqrt(alphaBar) x_0 + sqrt(1 - alphaBar) noise for
   * the variance-preserving samplers, x_0 + sigma noise for the sigma family.
   */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array;
}

/** The network: x_t for a batch (NCHW, flattened) and one timestep -> model output of the same size. */
export type Denoiser = (x: Float32Array, t: number, batch: number) => Promise<Float32Array>;
