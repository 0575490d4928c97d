/** Schedulers by the names the command line uses. */
import type { SchedulerConfig } from './common.js';
import { DDIMScheduler } from './ddim.js';
import { DDPMScheduler } from './ddpm.js';
import { DPMSolverMultistepScheduler } from './dpm-solver.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
import { EulerDiscreteScheduler } from './euler.js';
import { HeunDiscreteScheduler } from './heun.js';
import { PNDMScheduler } from './pndm.js';
import type { Scheduler } from './scheduler.js';
import { OptionError } from '../engine/errors.js';

export const SCHEDULER_NAMES = ['ddpm', 'ddim', 'pndm', 'euler', 'euler_a', 'heun', 'dpm++2m', 'dpm++1'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** diffusers' advice for cosine schedules: leave out timesteps with log-SNR below -5.1. */
function dpmCosine(base: Partial<SchedulerConfig>): { lambdaMinClipped?: number } {
  return base.betaSchedule === 'squaredcos_cap_v2' ? { lambdaMinClipped: -5.1 } : {};
}

/**
 * A scheduler for a trained model's schedule; `karras` picks Karras sigmas for the ODE solvers.
 * `thresholding` (default on) clips DPM-Solver++'s x_0 predictions to [-1, 1] (dynamic
 * thresholding with sample_max_value 1): Diffuse's models work in pixel space, where the
 * DPM-Solver++ paper (Lu et al. 2022, sec. 5) pairs its data-prediction solver with thresholding.
 * Without it, guided sampling of a cosine-schedule text run left salt-and-pepper backgrounds and
 * blown-out digits on about a third of the images (docs/SAMPLING.md "DPM-Solver++ with guidance").
 */
export function makeScheduler(name: SchedulerName, base: Partial<SchedulerConfig>, opts: { karras?: boolean; thresholding?: boolean } = {}): Scheduler {
  const k = { ...base, useKarrasSigmas: Boolean(opts.karras) };
  if (opts.karras && (name === 'ddpm' || name === 'ddim' || name === 'pndm')) throw new OptionError(`\`karras\` applies to euler, euler_a, heun and dpm++ schedulers, not ${name}`);
  switch (name) {
    case 'ddpm':
      return new DDPMScheduler(base);
    case 'ddim':
      return new DDIMScheduler(base);
    case 'pndm': {
      // PLMS, as Stable Diffusion runs it (no Runge-Kutta start; PNDM forms no x_0 to clip).
      const { clipSample: _clip, ...rest } = base;
      return new PNDMScheduler({ ...rest, skipPrkSteps: true });
    }
    case 'euler':
      return new EulerDiscreteScheduler(k);
    case 'euler_a':
      return new EulerAncestralDiscreteScheduler(k);
    case 'heun':
      return new HeunDiscreteScheduler(k);
    case 'dpm++2m':
      return new DPMSolverMultistepScheduler({ ...k, ...dpmCosine(base), thresholding: opts.thresholding ?? true });
    case 'dpm++1':
      return new DPMSolverMultistepScheduler({ ...k, ...dpmCosine(base), thresholding: opts.thresholding ?? true, solverOrder: 1 });
  }
  throw new Error(`unknown scheduler '${String(name)}' (known: ${SCHEDULER_NAMES.join(', ')})`);
}
