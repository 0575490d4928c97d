/** The sampling flags that `diffuse sample` and `diffuse eval` share, and their parsing. */
import { SCHEDULER_NAMES, SchedulerName } from '../samplers/registry.js';
import type { TimestepSpacing } from '../samplers/common.js';
import { RunConfig, defaultEta, defaultSpacing } from '../train/config.js';
import type { Flag } from './main.js';
import { UsageError, num, oneOf } from './main.js';

export const SAMPLING_FLAGS: Record<string, Flag> = {
  scheduler: { type: 'string', description: SCHEDULER_NAMES.join(', '), default: 'ddim' },
  karras: { type: 'boolean', description: 'Karras sigma spacing (euler, euler_a, heun, dpm++)' },
  steps: { type: 'string', description: 'denoising steps (ddpm: up to the training timesteps)', default: '50' },
  eta: { type: 'string', description: "DDIM eta (0 deterministic, 1 DDPM's noise, above 1 more noise than DDPM's), or auto: 1.5 for unconditional runs, 0 for text/class-conditional ones", default: 'auto' },
  seed: { type: 'string', description: 'noise seed', default: '0' },
  device: { type: 'string', description: 'cpu or cuda', default: 'cpu' },
  spacing: { type: 'string', description: "timesteps of the N steps: leading, trailing, linspace, or auto (the scheduler's default: leading for ddpm/ddim, linspace for the others; leading for euler/euler_a/heun on runs whose schedule ends with beta > 0.5, as the cosine one)", default: 'auto' },
  'clip-sample': { type: 'string', description: "ddpm/ddim: clip the x_0 estimate to [-1, 1]: on, off, or auto (off for text/class-conditional runs)", default: 'auto' },
};

export interface SamplingArgs {
  scheduler: SchedulerName;
  karras: boolean;
  steps: number;
  /** undefined: the run's default (`defaultEta`). */
  eta?: number;
  seed: number;
  device: 'cpu' | 'cuda';
  /** Overrides the run's x_0 clipping (undefined: the run's default). */
  clipSample?: boolean;
  /** Overrides the scheduler's timestep spacing (undefined: its default). */
  timestepSpacing?: TimestepSpacing;
}

export function parseSampling(v: Record<string, unknown>): SamplingArgs {
  return {
    scheduler: oneOf(v, 'scheduler', SCHEDULER_NAMES, 'ddim'),
    karras: Boolean(v.karras),
    steps: num(v, 'steps', { int: true, min: 1 }) as number,
    eta: parseEta(v.eta),
    seed: num(v, 'seed', { int: true, min: 0 }) as number,
    device: oneOf(v, 'device', ['cpu', 'cuda'] as const, 'cpu'),
    clipSample: { auto: undefined, on: true, off: false }[oneOf(v, 'clip-sample', ['auto', 'on', 'off'] as const, 'auto')],
    timestepSpacing: { auto: undefined, leading: 'leading', trailing: 'trailing', linspace: 'linspace' }[oneOf(v, 'spacing', ['auto', 'leading', 'trailing', 'linspace'] as const, 'auto')] as TimestepSpacing | undefined,
  };
}

/** The parsed flags with the run's own defaults where they said auto: eta (`defaultEta`) and timestep spacing (`defaultSpacing`). */
export function withRunDefaults(args: SamplingArgs, config: RunConfig): SamplingArgs & { eta: number } {
  return { ...args, eta: args.eta ?? defaultEta(config), timestepSpacing: args.timestepSpacing ?? defaultSpacing(config, args.scheduler) };
}

function parseEta(flag: unknown): number | undefined {
  if (flag === undefined || flag === 'auto') return undefined;
  const eta = Number(flag);
  if (String(flag).trim() === '' || !Number.isFinite(eta) || eta < 0) throw new UsageError(`--eta must be a number >= 0 or auto, got '${String(flag)}'`);
  return eta;
}

/** More than this fraction of sample values beyond +-2 is reported as a diverged sampler. */
export const DIVERGED_WARNING = 0.001;

/** The one line that says a sampler diverged (see divergedFraction). */
export const divergedWarning = (fraction: number, clipped: string, what = '') =>
  `WARNING: ${what}${(100 * fraction).toFixed(1)}% of the sample values lay beyond +-2 (images hold [-1, 1]; ${clipped}): the sampler diverged. ` +
  'Try another --scheduler or --spacing (README, "Samplers on the same model").';
