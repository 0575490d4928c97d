/**
 * How a run is sampled when the caller says nothing: the scheduler settings, DDIM's eta and the
 * Euler family's timestep spacing. Pure functions of the run's config, kept apart from
 * config.ts (which validates models and text encoders) so that the browser studio bundles them.
 */
import { NoiseSchedule } from '../diffusion/index.js';
import type { PredictionType } from '../diffusion/index.js';
import type { TimestepSpacing } from '../samplers/common.js';
import type { RunConfig } from './config.js';
import { conditioningOf } from './conditioning.js';

/**
 * The scheduler settings to sample a run with: its schedule and prediction type, and for
 * conditional runs no clipping of the x_0 estimate. Clipping (diffusers' DDPM/DDIM default)
 * is what breaks guided DDIM: guidance moves eps by w (eps_c - eps_u), which the early steps of a
 * cosine schedule amplify by sqrt((1 - alpha_bar) / alpha_bar) (about 30 at t = 980) into an x_0
 * estimate far outside [-1, 1]; clipped, it no longer agrees with eps, and the DDIM update drifts
 * into saturated blobs. Measured on runs/mnist-text at guidance 3 (DDIM 50): clipped, 6% of
 * samples read as the prompted digit; unclipped, see docs/TEXT-TO-IMAGE.md.
 */
export function schedulerConfigOf(
  c: RunConfig,
  overrides: { clipSample?: boolean; timestepSpacing?: TimestepSpacing } = {},
): RunConfig['schedule'] & { predictionType: PredictionType; clipSample?: boolean; timestepSpacing?: TimestepSpacing } {
  return {
    ...c.schedule,
    predictionType: c.predictionType,
    // Latents are not confined to [-1, 1]: clipping them would distort every step (diffusers' latent pipelines have clip_sample false).
    ...(isConditional(c) || c.latent ? { clipSample: false } : {}),
    ...(overrides.clipSample !== undefined ? { clipSample: overrides.clipSample } : {}),
    ...(overrides.timestepSpacing ? { timestepSpacing: overrides.timestepSpacing } : {}),
  };
}

/**
 * The DDIM eta that `diffuse sample` and `diffuse eval` use when the user gives none: 1.5 for
 * unconditional runs, 0 for conditional ones. Noise at each step corrects errors that the
 * deterministic path carries to the end: on each of nine unconditional MNIST runs eta 1 (the
 * DDPM posterior's noise) read 9 to 19 points more samples confidently than eta 0, and eta 1.5
 * (more noise than DDPM's, see DDIMScheduler) lowered the Fréchet distance of three 30-minute runs
 * again, from 33-37 to about 28, with 4-5 points more samples read confidently (docs/SAMPLING.md "Samplers on one
 * unconditional model"). Eta 2 read more confidently still but narrowed the spread (recall fell), so
 * the default is the Fréchet distance's best. Guided conditional sampling keeps diffusers'
 * deterministic default, where no such comparison was made. (The schedulers' own default stays
 * eta 0, as in diffusers.)
 */
export function defaultEta(c: RunConfig): number {
  return isConditional(c) ? 0 : 1.5;
}

/**
 * Whether DPM-Solver++ clips its x_0 predictions (dynamic thresholding) when the caller says
 * nothing: on for pixel-space runs (see makeScheduler), off for latent runs, whose latents are not
 * confined to [-1, 1] (diffusers' latent pipelines leave thresholding off).
 */
export function defaultThresholding(c: RunConfig): boolean {
  return c.latent === undefined;
}

/**
 * The timestep spacing that `diffuse sample` and `diffuse eval` give the Euler-family samplers
 * (euler, euler_a, heun) when the user gives none: `leading` where the schedule's last step
 * destroys nearly all remaining signal (beta_{T-1} > 0.5), else the scheduler's own default
 * (undefined; diffusers' `linspace`). The cosine schedule caps beta at 0.999, so sigma jumps from
 * 642 at t = 998 to 20,291 at t = 999, where `linspace` starts; an Euler step from there down to
 * sigma 32 multiplies the model's error in eps about 600-fold and never recovers (on
 * runs/mnist-final every sample diverged, with euler, euler_a and heun alike). `leading` starts
 * at t = 980 (sigma 34): euler_a read 78.2% of 500 samples confidently there, as DDIM with eta 1
 * does. DPM-Solver++ steps on x_0 and coped with `linspace` (docs/SAMPLING.md "Samplers on one unconditional model").
 */
export function defaultSpacing(c: RunConfig, scheduler: string): TimestepSpacing | undefined {
  if (!['euler', 'euler_a', 'heun'].includes(scheduler)) return undefined;
  const { betas } = new NoiseSchedule(c.schedule);
  return betas[betas.length - 1] > 0.5 ? 'leading' : undefined;
}

/** Text- or class-conditional: sampled with guidance. */
export function isConditional(c: RunConfig): boolean {
  return conditioningOf(c) !== 'none';
}
