/** The sampling and condition flags that `diffuse sample`, `eval`, `img2img` and `inpaint` share, and their parsing. */
import { safeText } from '../inspect/format.js';
import { SCHEDULER_NAMES, SchedulerName } from '../samplers/registry.js';
import type { TimestepSpacing } from '../samplers/common.js';
import type { RunConfig } from '../run/config.js';
import type { GenerateOptions } from '../pipelines/index.js';
import { SamplingRequest, planSampling } from '../pipelines/sampling-plan.js';
import { readTokenizer } from '../run/text.js';
import type { Flag } from './flags.js';
import { UsageError, num, oneOf, withFlags } from './flags.js';

export const SAMPLING_FLAGS: Record<string, Flag> = {
  scheduler: { type: 'string', description: `${SCHEDULER_NAMES.join(', ')} (default ddim; with --model, the folder's scheduler)` },
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

/**
 * The parsed flags as the plan for this run (planSampling): the run's defaults where they said
 * auto, what cannot work refused (an OptionError, which the CLI says with flags), and the plan's
 * warnings passed to `say` with flags.
 */
export function withRunDefaults(args: SamplingArgs, config: RunConfig, request: Pick<SamplingRequest, 'operation' | 'start'> = {}, say: (msg: string) => void = () => {}): SamplingArgs & { eta: number } {
  const plan = planSampling(config, { ...request, scheduler: args.scheduler, karras: args.karras, spacing: args.timestepSpacing, eta: args.eta, clipSample: args.clipSample });
  for (const w of plan.warnings) say(withFlags(w));
  return { ...args, scheduler: plan.scheduler, karras: plan.karras, eta: plan.eta, timestepSpacing: plan.spacing };
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
  'Try another --scheduler or --spacing (docs/SAMPLING.md).';

/** The condition flags of class- and text-conditional runs. */
export const CONDITION_FLAGS: Record<string, Flag> = {
  class: { type: 'string', description: 'class-conditional runs: a class index or name for every image (sample: default one row per class)' },
  prompt: { type: 'string', description: "text-conditional runs: the prompt; several separated by '|' give one row each" },
  'negative-prompt': { type: 'string', description: 'text-conditional runs: steer away from this prompt (replaces the empty prompt of guidance)' },
  guidance: { type: 'string', description: 'classifier-free guidance weight (1 = none; default 3 for conditional runs)' },
  'guidance-rescale': { type: 'string', description: 'guidance rescale phi in [0, 1]', default: '0' },
};

/**
 * The condition flags of a conditional run as pipeline options: --class (default: one row per
 * class, unless `classRows` is false: the null class), --prompt "a|b" (one row per prompt), --negative-prompt, --guidance, --guidance-rescale;
 * and the grid columns that give one row per condition. Words that the tokenizer never saw are
 * reported as warnings.
 */
export function conditionFlags(
  v: Record<string, unknown>,
  config: RunConfig,
  count: number,
  warn: (msg: string) => void,
  opts: { classRows?: boolean } = {},
): { condition: Pick<GenerateOptions, 'classLabel' | 'prompt' | 'negativePrompt' | 'guidance' | 'guidanceRescale'>; cols?: number } {
  const classes = config.model.numClasses;
  const guidance = { guidance: num(v, 'guidance', { min: 0 }), guidanceRescale: num(v, 'guidance-rescale', { min: 0, max: 1 }) };
  if (classes !== undefined) {
    if (v.prompt !== undefined || v['negative-prompt'] !== undefined) throw new UsageError('--prompt needs a text-conditional run; this one is class-conditional (use --class)');
    if (v.class !== undefined) {
      const name = String(v.class);
      const byName = config.classNames?.indexOf(name) ?? -1;
      const k = byName >= 0 ? byName : Number(name);
      if (!Number.isInteger(k) || k < 0 || k >= classes) {
        throw new UsageError(`--class must be 0..${classes - 1}${config.classNames ? ` or one of ${config.classNames.join(', ')}` : ''}, got '${name}'`);
      }
      return { condition: { classLabel: k, ...guidance } };
    }
    if (opts.classRows === false) return { condition: guidance };
    // One row per class.
    const perRow = Math.ceil(count / classes);
    return { condition: { classLabel: Array.from({ length: count }, (_, i) => Math.min(classes - 1, Math.floor(i / perRow))), ...guidance }, cols: perRow };
  }
  if (v.class !== undefined) throw new UsageError('--class needs a class-conditional run (train with --class-cond)');
  if (config.text) {
    if (v.prompt === undefined) throw new UsageError(`this run is text-conditional: give --prompt "..." (--prompt "" for unconditional samples)`);
    const list = String(v.prompt).split('|').map((p) => p.trim());
    const negative = v['negative-prompt'] === undefined ? undefined : String(v['negative-prompt']);
    const tokenizer = readTokenizer(String(v.run), config.text);
    for (const p of [...list, ...(negative ? [negative] : [])]) for (const w of tokenizer.warnings(p)) warn(`warning: "${safeText(p)}": ${w}`);
    const perRow = Math.ceil(count / list.length);
    const prompt = Array.from({ length: count }, (_, i) => list[Math.min(list.length - 1, Math.floor(i / perRow))]);
    return { condition: { prompt, ...(negative !== undefined ? { negativePrompt: negative } : {}), ...guidance }, cols: list.length > 1 ? perRow : undefined };
  }
  if (v.prompt !== undefined || v['negative-prompt'] !== undefined) throw new UsageError('--prompt needs a text-conditional run (train with --text)');
  return { condition: {} };
}
