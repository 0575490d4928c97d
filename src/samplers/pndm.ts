/**
 * PNDM (Liu et al. 2022, "Pseudo numerical methods for diffusion models on manifolds", arXiv
 * 2202.09778), compatible with diffusers' PNDMScheduler: the Stable Diffusion 1.x folders'
 * scheduler. Each step moves x_t to x_{t-delta} along the DDIM transfer (PNDM eq. 9),
 *
 *   x_{t-d} = sqrt(a_{t-d} / a_t) x_t - (a_{t-d} - a_t) e / (a_t sqrt(1 - a_{t-d}) + sqrt(a_t (1 - a_t) a_{t-d})),
 *
 * with e a combination of the model's noise estimates: four-stage Runge-Kutta (PRK, eq. 12) for
 * the first three steps, then the fourth-order linear multistep rule (PLMS, eq. 13),
 * e' = (55 e_t - 59 e_{t+d} + 37 e_{t+2d} - 9 e_{t+3d}) / 24. `skipPrkSteps` (what Stable
 * Diffusion uses) starts the multistep rule at once, from a second-order step (crowsonkb's PLMS),
 * so every step costs one model evaluation. Same float32 arithmetic as diffusers' PyTorch code.
 */
import {
  SCHEDULER_DEFAULTS,
  SchedulerConfig,
  StepOptions,
  StepOutput,
  checkSameLength,
  f32,
  predictX0Eps,
  resolveConfig,
  schedulerTables,
  spacedTimesteps,
  sqrt32,
} from './common.js';
import { addNoise32 } from './ddpm.js';
import type { Scheduler } from './scheduler.js';

export interface PNDMSchedulerConfig extends SchedulerConfig {
  /** Start with the multistep rule instead of four Runge-Kutta steps (diffusers' skip_prk_steps; Stable Diffusion: true). */
  skipPrkSteps: boolean;
  /** At the last step use alphaBar_prev = 1 (true) or alphaBar_0 (false). */
  setAlphaToOne: boolean;
}

export const PNDM_DEFAULTS: PNDMSchedulerConfig = { ...SCHEDULER_DEFAULTS, clipSample: false, skipPrkSteps: false, setAlphaToOne: false };

/** The Runge-Kutta method's order (F-PNDM): four model evaluations per Runge-Kutta step. */
const PNDM_ORDER = 4;

export class PNDMScheduler implements Scheduler {
  readonly order = 1;
  readonly config: PNDMSchedulerConfig;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  readonly initNoiseSigma = 1;
  /** All evaluations of the current schedule, descending: the Runge-Kutta ones, then the multistep ones. */
  timesteps: number[];
  prkTimesteps: number[] = [];
  plmsTimesteps: number[] = [];
  numInferenceSteps?: number;
  // The running state of a schedule, as diffusers keeps it: reset by setTimesteps.
  private counter = 0;
  /** Past noise estimates, oldest first. */
  private ets: Float32Array[] = [];
  private curModelOutput?: Float32Array;
  private curSample?: Float32Array;

  constructor(config: Partial<PNDMSchedulerConfig> = {}) {
    this.config = resolveConfig('PNDMScheduler', PNDM_DEFAULTS, config);
    if (this.config.predictionType === 'sample') throw new Error("PNDMScheduler: predictionType 'sample' is not supported (epsilon or v_prediction)");
    if (this.config.clipSample) throw new Error('PNDMScheduler: has no clipSample (it never forms an x_0 estimate to clip)');
    ({ betas: this.betas, alphas: this.alphas, alphasCumprod: this.alphasCumprod, timesteps: this.timesteps } = schedulerTables(this.config));
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1 : this.alphasCumprod[0];
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    // Ascending, as diffusers builds its _timesteps (every spacing; leading adds stepsOffset).
    const base = spacedTimesteps(c.timestepSpacing, c.numTrainTimesteps, numInferenceSteps, c.stepsOffset, 'PNDMScheduler').reverse();
    if (c.skipPrkSteps) {
      // [t_0 .. t_{n-2}, t_{n-2}, t_{n-1}] reversed: the first multistep step is evaluated twice.
      this.prkTimesteps = [];
      this.plmsTimesteps = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      if (numInferenceSteps < PNDM_ORDER) throw new Error(`PNDMScheduler: the Runge-Kutta start needs at least ${PNDM_ORDER} steps (or skipPrkSteps)`);
      // The last four timesteps, each with its half step, each evaluation twice but the ends.
      const half = Math.floor(Math.floor(c.numTrainTimesteps / numInferenceSteps) / 2);
      const pairs = base.slice(-PNDM_ORDER).flatMap((t) => [t, t + half]);
      const repeated = pairs.slice(0, -1).flatMap((t) => [t, t]);
      this.prkTimesteps = repeated.slice(1, -1).reverse();
      this.plmsTimesteps = base.slice(0, -3).reverse();
    }
    this.timesteps = [...this.prkTimesteps, ...this.plmsTimesteps];
    this.numInferenceSteps = numInferenceSteps;
    this.counter = 0;
    this.ets = [];
    this.curModelOutput = undefined;
    this.curSample = undefined;
  }

  /** Steps follow the schedule's own counter (as diffusers' img2img runs PNDM): nothing to set. */
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _opts: StepOptions = {}): StepOutput {
    if (this.numInferenceSteps === undefined) throw new Error('PNDMScheduler.step: call setTimesteps(n) first');
    checkSameLength(modelOutput, sample, 'PNDMScheduler');
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.config.numTrainTimesteps) throw new Error(`PNDMScheduler.step: timestep ${timestep} is out of range`);
    return this.counter < this.prkTimesteps.length && !this.config.skipPrkSteps ? this.stepPrk(modelOutput, timestep, sample) : this.stepPlms(modelOutput, timestep, sample);
  }

  /** One stage of the Runge-Kutta start: stages weighted 1/6, 1/3, 1/3, 1/6, all from the stage's first sample. */
  private stepPrk(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepOutput {
    const ratio = Math.floor(this.config.numTrainTimesteps / (this.numInferenceSteps as number));
    const prevTimestep = timestep - (this.counter % 2 ? 0 : Math.floor(ratio / 2));
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    const stage = this.counter % 4;
    let e = modelOutput;
    if (stage === 0) {
      this.curModelOutput = scaled(1 / 6, modelOutput);
      this.ets.push(modelOutput);
      this.curSample = sample;
    } else if (stage === 1 || stage === 2) {
      this.curModelOutput = plus(this.curModelOutput as Float32Array, scaled(1 / 3, modelOutput));
    } else {
      e = plus(this.curModelOutput as Float32Array, scaled(1 / 6, modelOutput));
      this.curModelOutput = undefined;
    }
    const out = this.prevSample(this.curSample ?? sample, t, prevTimestep, e);
    this.counter++;
    return out;
  }

  /** One multistep step: Adams-Bashforth combinations of up to four past estimates (second order at the start). */
  private stepPlms(modelOutput: Float32Array, timestep: number, sample: Float32Array): StepOutput {
    if (!this.config.skipPrkSteps && this.ets.length < 3) throw new Error('PNDMScheduler.step: the multistep rule needs the Runge-Kutta start first (12 evaluations)');
    const ratio = Math.floor(this.config.numTrainTimesteps / (this.numInferenceSteps as number));
    let t = timestep;
    let prevTimestep = timestep - ratio;
    if (this.counter !== 1) this.ets.push(modelOutput);
    else {
      // The repeated timestep: re-evaluate the first step from its start, with the mean of both estimates.
      prevTimestep = timestep;
      t = timestep + ratio;
    }
    const ets = this.ets;
    const k = ets.length;
    let e: Float32Array;
    let x = sample;
    if (k === 1 && this.counter === 0) {
      e = modelOutput;
      this.curSample = sample;
    } else if (k === 1 && this.counter === 1) {
      e = combine([[1, modelOutput], [1, ets[0]]], 2);
      x = this.curSample as Float32Array;
      this.curSample = undefined;
    } else if (k === 2) {
      e = combine([[3, ets[1]], [-1, ets[0]]], 2);
    } else if (k === 3) {
      e = combine([[23, ets[2]], [-16, ets[1]], [5, ets[0]]], 12);
    } else {
      e = scaled(1 / 24, combine([[55, ets[k - 1]], [-59, ets[k - 2]], [37, ets[k - 3]], [-9, ets[k - 4]]], 1));
    }
    // Only the last four estimates are ever read again.
    if (ets.length > PNDM_ORDER) ets.shift();
    const out = this.prevSample(x, t, prevTimestep, e);
    this.counter++;
    return out;
  }

  /** PNDM eq. 9 (diffusers' _get_prev_sample), with the estimate's x_0 for display. */
  private prevSample(sample: Float32Array, t: number, prev: number, modelOutput: Float32Array): StepOutput {
    const at = this.alphasCumprod[t];
    const ap = prev >= 0 ? this.alphasCumprod[prev] : this.finalAlphaCumprod;
    const bt = f32(1 - at);
    const bp = f32(1 - ap);
    const { x0, eps } = predictX0Eps(this.config.predictionType, modelOutput, sample, at);
    const sampleCoeff = sqrt32(f32(ap / at));
    const denom = f32(f32(at * sqrt32(bp)) + sqrt32(f32(f32(at * bt) * ap)));
    const diff = f32(ap - at);
    const n = sample.length;
    const prevSample = new Float32Array(n);
    for (let i = 0; i < n; i++) prevSample[i] = f32(f32(sampleCoeff * sample[i]) - f32(f32(diff * eps[i]) / denom));
    return { prevSample, predOriginalSample: x0 };
  }

  addNoise(original: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoise32(this.alphasCumprod, original, noise, timesteps);
  }
}

/** c x, with c rounded to float32 first (a Python float times a float32 tensor). */
function scaled(c: number, x: Float32Array): Float32Array {
  const k = f32(c);
  return x.map((v) => f32(k * v));
}

function plus(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => f32(v + b[i]));
}

/** (c_1 x_1 + c_2 x_2 + ...) / d, each operation rounded to float32 in the order diffusers writes it. */
function combine(terms: [number, Float32Array][], d: number): Float32Array {
  const n = terms[0][1].length;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let acc = f32(terms[0][0] * terms[0][1][i]);
    for (let j = 1; j < terms.length; j++) {
      const [c, x] = terms[j];
      // "a - 16 * b" subtracts the product of the positive coefficient, as the Python does.
      acc = c < 0 ? f32(acc - f32(-c * x[i])) : f32(acc + f32(c * x[i]));
    }
    out[i] = d === 1 ? acc : f32(acc / d);
  }
  return out;
}
