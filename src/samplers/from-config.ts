/**
 * Schedulers from diffusers' scheduler_config.json, the file of a model folder's `scheduler/`:
 * `_class_name` picks the class, and each key is read with diffusers' name and default.
 *
 * Supported classes: DDPMScheduler, DDIMScheduler, PNDMScheduler, EulerDiscreteScheduler,
 * EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, DPMSolverMultistepScheduler. As
 * diffusers does, keys that the class does not define are ignored (model folders carry other
 * classes' keys: an Euler config with `skip_prk_steps`); a key the class defines but Diffuse does
 * not implement is accepted at diffusers' default only, and any other value is refused in one
 * line naming it, never silently changed.
 */
import type { SchedulerConfig } from './common.js';
import { DDIMScheduler } from './ddim.js';
import { DDPMScheduler } from './ddpm.js';
import { DPMSolverMultistepScheduler } from './dpm-solver.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
import { EulerDiscreteScheduler } from './euler.js';
import { HeunDiscreteScheduler } from './heun.js';
import { PNDMScheduler } from './pndm.js';
import type { SchedulerName } from './registry.js';
import type { Scheduler } from './scheduler.js';
import { OptionError } from '../engine/errors.js';

/** A key of a class: diffusers' default, and Diffuse's option name (null: not implemented, its default only). */
type Key = [unknown, string | null];

const VP: Record<string, Key> = {
  num_train_timesteps: [1000, 'numTrainTimesteps'],
  beta_start: [0.0001, 'betaStart'],
  beta_end: [0.02, 'betaEnd'],
  beta_schedule: ['linear', 'betaSchedule'],
  trained_betas: [null, 'trainedBetas'],
  prediction_type: ['epsilon', 'predictionType'],
  timestep_spacing: ['leading', 'timestepSpacing'],
  steps_offset: [0, 'stepsOffset'],
};
const THRESHOLD_OFF: Record<string, Key> = { thresholding: [false, null], dynamic_thresholding_ratio: [0.995, null], sample_max_value: [1.0, null] };
const SIGMA_KINDS_OFF: Record<string, Key> = { use_exponential_sigmas: [false, null], use_beta_sigmas: [false, null] };

interface ClassSpec {
  /** The `--scheduler` name of the same method. */
  name: SchedulerName;
  keys: Record<string, Key>;
  make: (config: Record<string, unknown>) => Scheduler;
}

const CLASSES: Record<string, ClassSpec> = {
  DDPMScheduler: {
    name: 'ddpm',
    keys: { ...VP, variance_type: ['fixed_small', 'varianceType'], clip_sample: [true, 'clipSample'], clip_sample_range: [1.0, 'clipSampleRange'], rescale_betas_zero_snr: [false, 'rescaleBetasZeroSnr'], ...THRESHOLD_OFF },
    make: (c) => new DDPMScheduler(c),
  },
  DDIMScheduler: {
    name: 'ddim',
    keys: { ...VP, clip_sample: [true, 'clipSample'], clip_sample_range: [1.0, 'clipSampleRange'], set_alpha_to_one: [true, 'setAlphaToOne'], rescale_betas_zero_snr: [false, 'rescaleBetasZeroSnr'], ...THRESHOLD_OFF },
    make: (c) => new DDIMScheduler(c),
  },
  PNDMScheduler: {
    name: 'pndm',
    keys: { ...VP, skip_prk_steps: [false, 'skipPrkSteps'], set_alpha_to_one: [false, 'setAlphaToOne'] },
    make: (c) => new PNDMScheduler(c),
  },
  EulerDiscreteScheduler: {
    name: 'euler',
    keys: {
      ...VP,
      timestep_spacing: ['linspace', 'timestepSpacing'],
      use_karras_sigmas: [false, 'useKarrasSigmas'],
      rescale_betas_zero_snr: [false, 'rescaleBetasZeroSnr'],
      interpolation_type: ['linear', null],
      sigma_min: [null, null],
      sigma_max: [null, null],
      timestep_type: ['discrete', null],
      final_sigmas_type: ['zero', null],
      ...SIGMA_KINDS_OFF,
    },
    make: (c) => new EulerDiscreteScheduler(c),
  },
  EulerAncestralDiscreteScheduler: {
    name: 'euler_a',
    keys: { ...VP, timestep_spacing: ['linspace', 'timestepSpacing'], rescale_betas_zero_snr: [false, 'rescaleBetasZeroSnr'] },
    make: (c) => new EulerAncestralDiscreteScheduler(c),
  },
  HeunDiscreteScheduler: {
    name: 'heun',
    keys: {
      ...VP,
      // diffusers' Heun defaults to Stable Diffusion's betas.
      beta_start: [0.00085, 'betaStart'],
      beta_end: [0.012, 'betaEnd'],
      timestep_spacing: ['linspace', 'timestepSpacing'],
      use_karras_sigmas: [false, 'useKarrasSigmas'],
      clip_sample: [false, 'clipSample'],
      clip_sample_range: [1.0, 'clipSampleRange'],
      ...SIGMA_KINDS_OFF,
    },
    make: (c) => new HeunDiscreteScheduler(c),
  },
  DPMSolverMultistepScheduler: {
    name: 'dpm++2m',
    keys: {
      ...VP,
      timestep_spacing: ['linspace', 'timestepSpacing'],
      solver_order: [2, 'solverOrder'],
      thresholding: [false, 'thresholding'],
      dynamic_thresholding_ratio: [0.995, 'dynamicThresholdingRatio'],
      sample_max_value: [1.0, 'sampleMaxValue'],
      lower_order_final: [true, 'lowerOrderFinal'],
      use_karras_sigmas: [false, 'useKarrasSigmas'],
      lambda_min_clipped: [-Infinity, 'lambdaMinClipped'],
      rescale_betas_zero_snr: [false, 'rescaleBetasZeroSnr'],
      algorithm_type: ['dpmsolver++', null],
      solver_type: ['midpoint', null],
      euler_at_final: [false, null],
      use_lu_lambdas: [false, null],
      use_flow_sigmas: [false, null],
      flow_shift: [1.0, null],
      final_sigmas_type: ['zero', null],
      variance_type: [null, null],
      use_dynamic_shifting: [false, null],
      time_shift_type: ['exponential', null],
      ...SIGMA_KINDS_OFF,
    },
    make: (c) => new DPMSolverMultistepScheduler(c),
  },
};

/** The diffusers class names Diffuse reads. */
export const DIFFUSERS_SCHEDULER_CLASSES = Object.keys(CLASSES);

/** What a scheduler_config.json says, in Diffuse's terms. */
export interface DiffusersSchedulerConfig {
  /** diffusers' class name (`_class_name`). */
  className: string;
  /** The `--scheduler` name of the same method. */
  name: SchedulerName;
  /** The class's options in Diffuse's names, every one explicit (diffusers' defaults where the file is silent). */
  config: Partial<SchedulerConfig> & Record<string, unknown>;
  /** Keys of the file that the class does not define, ignored as diffusers ignores them. */
  ignored: string[];
}

/**
 * Reads a parsed scheduler_config.json. `source` names the file in errors. Throws for an unknown
 * class, a wrong type of value, or a value of an option Diffuse does not implement.
 */
export function readSchedulerConfig(json: unknown, source = 'scheduler_config.json'): DiffusersSchedulerConfig {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${source}: not a scheduler config (a JSON object with _class_name)`);
  const file = json as Record<string, unknown>;
  const className = file._class_name;
  if (typeof className !== 'string') throw new Error(`${source}: no _class_name`);
  const spec = CLASSES[className];
  if (!spec) throw new OptionError(`${source}: ${className} is not supported (supported: ${DIFFUSERS_SCHEDULER_CLASSES.join(', ')}); choose another \`scheduler\``);
  const config: Record<string, unknown> = {};
  for (const [key, [def, to]] of Object.entries(spec.keys)) {
    const given = key in file ? file[key] : def;
    if (to === null) {
      if (!sameValue(given, def)) throw new Error(`${source}: ${className}'s ${key} = ${JSON.stringify(given)} is not supported (only ${JSON.stringify(def)}, diffusers' default)`);
      continue;
    }
    if (given === null || given === undefined) continue;
    if (key === 'trained_betas') {
      if (!Array.isArray(given) || !given.every((b) => typeof b === 'number')) throw new Error(`${source}: trained_betas must be a list of numbers`);
    } else if (typeof given !== typeof def && !(def === null && typeof given === 'number')) {
      throw new Error(`${source}: ${key} must be a ${typeof def}, got ${JSON.stringify(given)}`);
    }
    config[to] = given;
  }
  const ignored = Object.keys(file).filter((k) => !k.startsWith('_') && !(k in spec.keys));
  return { className, name: spec.name, config: config as DiffusersSchedulerConfig['config'], ignored };
}

/**
 * The scheduler a scheduler_config.json describes, with `overrides` (Diffuse's option names) on
 * top: e.g. `{ timestepSpacing: 'trailing' }`. Errors name the file.
 */
export function schedulerFromConfig(json: unknown, source = 'scheduler_config.json', overrides: Record<string, unknown> = {}): Scheduler {
  const read = readSchedulerConfig(json, source);
  try {
    return CLASSES[read.className].make({ ...read.config, ...overrides });
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`);
  }
}

/**
 * Parses a config file that Python's json module wrote: standard JSON, except that it writes
 * infinite and undefined floats as the bare words Infinity, -Infinity and NaN (diffusers saves
 * `lambda_min_clipped: -Infinity`), which JSON.parse refuses. Strings are left alone.
 */
export function parsePythonJson(text: string, source = 'config.json'): unknown {
  const fixed = text.replace(/"(?:[^"\\]|\\.)*"|(-?)\b(Infinity|NaN)\b/g, (m, sign: string | undefined, word: string | undefined) => {
    if (!word) return m;
    return JSON.stringify(`${PY_FLOAT}${sign ?? ''}${word}`);
  });
  try {
    return JSON.parse(fixed, (_k, v: unknown) => (typeof v === 'string' && v.startsWith(PY_FLOAT) ? Number(v.slice(PY_FLOAT.length)) : v));
  } catch (e) {
    throw new Error(`${source}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
}

/** A marker no config string starts with, for the bare floats while JSON.parse runs. */
const PY_FLOAT = '\u0000pyfloat:';

/** JSON equality of two option values (numbers by value: 1 and 1.0 are the same). */
function sameValue(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return a === b || (Number.isNaN(a) && Number.isNaN(b));
  return JSON.stringify(a) === JSON.stringify(b);
}
