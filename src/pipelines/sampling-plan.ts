/**
 * The rules of sampling a run, in one place: what a caller asked for (anything left out) becomes a
 * plan (scheduler, timestep spacing, eta, clipping) with the run's defaults filled in, the
 * combinations that cannot work refused, and the warnings a front end should pass on.
 * SamplingPipeline, the command line and the studio page all ask it, so that a rule ("inpainting
 * runs on ddim or ddpm", "a watermark wants eta 0") is written once, as diffusers keeps one
 * check_inputs per pipeline. Node-free: the studio page bundles it.
 */
import { OptionError } from '../engine/errors.js';
import type { RunConfig } from '../run/config.js';
import { defaultEta, defaultSpacing } from '../run/sampling-defaults.js';
import type { TimestepSpacing } from '../samplers/common.js';
import { SCHEDULER_NAMES, SchedulerName } from '../samplers/registry.js';

/** What is being sampled: the reverse process from noise, from a noised image, RePaint, or DDIM run backwards. */
export type SamplingOperation = 'generate' | 'img2img' | 'inpaint' | 'invert';

/** The schedulers inpainting runs on: RePaint's resampling needs the DDPM/DDIM forward step back up. */
export const INPAINT_SCHEDULERS: readonly SchedulerName[] = ['ddim', 'ddpm'];

/** Schedulers that add fresh noise at every step whatever eta is. */
export const STOCHASTIC_SCHEDULERS: readonly SchedulerName[] = ['ddpm', 'euler_a'];

/** Schedulers whose timesteps Karras sigma spacing applies to. */
export const KARRAS_SCHEDULERS: readonly SchedulerName[] = ['euler', 'euler_a', 'heun', 'dpm++2m', 'dpm++1'];

export interface SamplingRequest {
  /** Default 'generate'. */
  operation?: SamplingOperation;
  /** A scheduler name (default 'ddim'). */
  scheduler?: string;
  karras?: boolean;
  /** Default: the run's (defaultSpacing). */
  spacing?: TimestepSpacing;
  /** Default: 0 when x_T is given (a watermark, an inversion's latents); 1 for inpainting (RePaint); else the run's (defaultEta). */
  eta?: number;
  /** Default: the run's (schedulerConfigOf). */
  clipSample?: boolean;
  /** x_T is chosen by the caller: written with a watermark key, or an inversion's latents. */
  start?: 'watermark' | 'latents';
}

export interface SamplingPlan {
  operation: SamplingOperation;
  scheduler: SchedulerName;
  karras: boolean;
  spacing: TimestepSpacing | undefined;
  eta: number;
  /** undefined: the run's default. */
  clipSample: boolean | undefined;
  /** What the caller should be told (options named in backticks, as OptionError does). */
  warnings: string[];
}

/** Turns a request into a plan for this run; refuses what cannot work with an OptionError. */
export function planSampling(config: RunConfig, r: SamplingRequest = {}): SamplingPlan {
  const operation = r.operation ?? 'generate';
  const name = r.scheduler ?? 'ddim';
  if (!SCHEDULER_NAMES.includes(name as SchedulerName)) throw new OptionError(`unknown \`scheduler\` '${name}' (known: ${SCHEDULER_NAMES.join(', ')})`);
  const scheduler = name as SchedulerName;
  const karras = r.karras ?? false;
  if (karras && !KARRAS_SCHEDULERS.includes(scheduler)) throw new OptionError(`\`karras\` applies to ${KARRAS_SCHEDULERS.join(', ')}, not ${scheduler}`);
  if (r.eta !== undefined && !(r.eta >= 0)) throw new OptionError(`\`eta\` must be a number >= 0, got ${r.eta}`);
  if (operation === 'invert') {
    if (scheduler !== 'ddim' || (r.eta ?? 0) !== 0) throw new OptionError('inversion runs DDIM backwards with eta 0: leave `scheduler` and `eta` unset');
    return { operation, scheduler, karras: false, spacing: r.spacing ?? defaultSpacing(config, 'ddim'), eta: 0, clipSample: false, warnings: [] };
  }
  if (operation === 'inpaint' && !INPAINT_SCHEDULERS.includes(scheduler)) throw new OptionError(`inpainting runs RePaint's resampling on ${INPAINT_SCHEDULERS.join(' or ')} steps; \`scheduler\` ${scheduler} is not supported`);
  const eta = r.eta ?? (r.start ? 0 : operation === 'inpaint' ? 1 : defaultEta(config));
  const warnings: string[] = [];
  if (r.start === 'watermark') {
    if (eta > 0) warnings.push(`warning: \`eta\` ${eta} adds fresh noise at every step, which washes out the watermark in x_T; detection needs eta 0 (the default with a watermark)`);
    if (STOCHASTIC_SCHEDULERS.includes(scheduler)) warnings.push(`warning: ${scheduler} adds fresh noise at every step, which washes out the watermark in x_T; use ddim (eta 0), dpm++2m, euler or heun`);
  }
  if (r.start === 'latents' && (scheduler !== 'ddim' || eta !== 0)) {
    warnings.push(`note: x_T from DDIM inversion comes back to its image with ddim, eta 0 and the inversion's steps; ${scheduler}${scheduler === 'ddim' ? ` with \`eta\` ${eta}` : ''} only approximates it`);
  }
  return { operation, scheduler, karras, spacing: r.spacing ?? defaultSpacing(config, scheduler), eta, clipSample: r.clipSample, warnings };
}
