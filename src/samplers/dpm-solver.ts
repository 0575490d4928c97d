/**
 * DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling"), multistep,
 * first or second order (2M, midpoint), in the data-prediction form, compatible with diffusers'
 * DPMSolverMultistepScheduler (algorithm_type "dpmsolver++", solver_type "midpoint",
 * lower_order_final, final sigma 0, optional Karras sigmas).
 *
 * With lambda = log(alpha_t / sigma_t) and h = lambda_t - lambda_s, eq. (9)/Algorithm 2:
 *   1st order: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D0
 *   2M:        x_t = (sigma_t / sigma_s0) x_s - alpha_t (e^{-h} - 1) (D0 + D1 / 2),
 *              D0 = m0, D1 = (m0 - m1) / r0, r0 = h_{prev} / h
 * where m are x_0 predictions. Samples stay in the variance-preserving scale.
 */
import { SCHEDULER_DEFAULTS, StepOptions, StepOutput, checkSameLength, dynamicThreshold, predictX0Eps, resolveConfig, roundHalfEven, schedulerTables, spacedTimesteps } from './common.js';
import type { Scheduler } from './scheduler.js';
import { KSchedulerConfig, addNoiseSigma, interpIndex, karrasSigmas, sigmaToT, trainingSigmas } from './sigmas.js';

export interface DPMSolverConfig extends KSchedulerConfig {
  /** 1 or 2. */
  solverOrder: number;
  /** diffusers' flag; with the final sigma at 0 (as here) the last step is first order either way. */
  lowerOrderFinal: boolean;
  /**
   * Skip the noisiest timesteps, whose log-SNR is below this (diffusers' lambda_min_clipped).
   * Cosine schedules end at alphaBar ~ 0, where x_0 = (x - sigma eps) / alpha explodes; diffusers
   * recommends -5.1 for them.
   */
  lambdaMinClipped: number;
  /**
   * Dynamic thresholding of the x_0 predictions (diffusers' `thresholding`, with
   * `dynamic_thresholding_ratio` and `sample_max_value`): for pixel-space models with strong
   * guidance, which the DPM-Solver++ paper (sec. 5) pairs with its data-prediction solver.
   */
  thresholding: boolean;
  dynamicThresholdingRatio: number;
  sampleMaxValue: number;
}

export const DPM_DEFAULTS: DPMSolverConfig = {
  ...SCHEDULER_DEFAULTS,
  clipSample: false,
  timestepSpacing: 'linspace',
  useKarrasSigmas: false,
  solverOrder: 2,
  lowerOrderFinal: true,
  lambdaMinClipped: -Infinity,
  thresholding: false,
  dynamicThresholdingRatio: 0.995,
  sampleMaxValue: 1,
};

/** alpha_t, sigma_t of the VP process at VE noise level sigma. */
const alphaSigma = (s: number): [number, number] => {
  const a = 1 / Math.sqrt(s * s + 1);
  return [a, s * a];
};
const lambdaOf = (s: number): number => {
  const [a, sg] = alphaSigma(s);
  return Math.log(a) - Math.log(sg);
};

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly config: DPMSolverConfig;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  sigmas: number[] = [];
  readonly initNoiseSigma = 1;
  sigmaAt: (t: number) => number = () => NaN;
  private index = 0;
  private outputs: Float32Array[] = [];
  private lowerOrderNums = 0;

  constructor(config: Partial<DPMSolverConfig> = {}) {
    this.config = resolveConfig('DPMSolverMultistepScheduler', DPM_DEFAULTS, config);
    if (![1, 2].includes(this.config.solverOrder)) throw new Error(`DPMSolverMultistepScheduler: solverOrder must be 1 or 2, got ${this.config.solverOrder}`);
    this.alphasCumprod = schedulerTables(this.config).alphasCumprod;
    this.setTimesteps(Math.max(1, Math.min(25, this.config.numTrainTimesteps - 1)));
  }

  setTimesteps(n: number): void {
    const c = this.config;
    const T = c.numTrainTimesteps;
    if (!Number.isInteger(n) || n < 1 || n > T) throw new Error(`DPMSolverMultistepScheduler: inference steps must be an integer in [1, ${T}], got ${n}`);
    // Timesteps whose lambda = log(alpha / sigma) falls below lambdaMinClipped are left out.
    const clipped = Array.from(this.alphasCumprod).filter((a) => 0.5 * Math.log(a / (1 - a)) < c.lambdaMinClipped).length;
    const last = T - clipped;
    // n + 1 points, the last (t = 0) dropped, as diffusers does for linspace and leading.
    let ts: number[];
    if (c.timestepSpacing === 'trailing') ts = spacedTimesteps('trailing', T, n, c.stepsOffset, 'DPMSolverMultistepScheduler').map((t) => t - (T - last));
    else if (c.timestepSpacing === 'linspace') ts = Array.from({ length: n + 1 }, (_, i) => roundHalfEven((i * (last - 1)) / n)).reverse().slice(0, n);
    else ts = Array.from({ length: n + 1 }, (_, i) => i * Math.floor(last / (n + 1)) + c.stepsOffset).reverse().slice(0, n);
    // n + 1 points among `last` timesteps: with n >= last two steps share a timestep, and the solver divides by their h = 0.
    if (ts.some((t, i) => i > 0 && t === ts[i - 1])) throw new Error(`DPMSolverMultistepScheduler: ${n} steps with ${c.timestepSpacing} spacing repeat a timestep of this ${last}-timestep schedule; use at most ${last - 1} steps${c.timestepSpacing === 'trailing' ? '' : ', or trailing spacing'}`);
    const train = trainingSigmas(this.alphasCumprod);
    if (c.useKarrasSigmas) {
      const logSigmas = train.map(Math.log);
      const sig = karrasSigmas(train[0], train[last - 1], n);
      this.sigmas = [...sig, 0];
      this.timesteps = sig.map((s) => Math.round(sigmaToT(s, logSigmas)));
      this.sigmaAt = (t) => Math.exp(interpIndex(t, logSigmas));
      // The solver steps between Karras sigmas; the model is told the rounded timestep.
    } else {
      this.sigmas = [...ts.map((t) => train[t]), 0];
      this.timesteps = ts;
      this.sigmaAt = (t) => interpIndex(t, train);
    }
    this.index = 0;
    this.outputs = [];
    this.lowerOrderNums = 0;
  }

  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  /** Starts the next step at timesteps[index] (img2img); the first step from there is first order. */
  setBeginIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.timesteps.length) throw new Error(`DPMSolverMultistepScheduler.setBeginIndex: ${index} is not an index of the ${this.timesteps.length} timesteps`);
    this.index = index;
    this.outputs = [];
    this.lowerOrderNums = 0;
  }

  /** alpha_t x_0 + sigma_t noise (variance-preserving), at each chunk's timestep in the current schedule. */
  addNoise(original: Float32Array, noise: Float32Array, timesteps: readonly number[]): Float32Array {
    return addNoiseSigma(this.sigmas, this.timesteps, original, noise, timesteps, (x, s, z) => {
      const [a, sg] = alphaSigma(s);
      return a * x + sg * z;
    });
  }

  /** The model output as an x_0 prediction (the "++": data prediction), at alphaBar = alpha_t^2. */
  private toX0(modelOutput: Float32Array, sample: Float32Array, sigma: number, batch: number): Float32Array {
    const [a] = alphaSigma(sigma);
    const { x0 } = predictX0Eps(this.config.predictionType, modelOutput, sample, a * a);
    if (this.config.thresholding) dynamicThreshold(x0, batch, this.config.dynamicThresholdingRatio, this.config.sampleMaxValue);
    return x0;
  }

  step(modelOutput: Float32Array, _timestep: number, sample: Float32Array, opts: StepOptions = {}): StepOutput {
    checkSameLength(modelOutput, sample, 'DPMSolverMultistepScheduler');
    const n = this.timesteps.length;
    const i = this.index;
    if (i >= n) throw new Error('DPMSolverMultistepScheduler.step: all steps are done; call setTimesteps again');
    // The final sigma is 0, where the second-order term vanishes: the last step is first order.
    const lowerFinal = i === n - 1;
    const sS0 = this.sigmas[i];
    const sT = this.sigmas[i + 1];
    const m0 = this.toX0(modelOutput, sample, sS0, opts.batch ?? 1);
    this.outputs = [...this.outputs.slice(-1), m0];
    const [aT, sigT] = alphaSigma(sT);
    const [, sigS0] = alphaSigma(sS0);
    const h = lambdaOf(sT) - lambdaOf(sS0);
    const phi = Math.exp(-h) - 1; // -> -1 as sigma_t -> 0
    const ratio = sT === 0 ? 0 : sigT / sigS0;
    let prevSample: Float32Array;
    if (this.config.solverOrder === 1 || this.lowerOrderNums < 1 || lowerFinal) {
      prevSample = sample.map((x, k) => ratio * x - aT * phi * m0[k]);
    } else {
      const m1 = this.outputs[0];
      const h0 = lambdaOf(sS0) - lambdaOf(this.sigmas[i - 1]);
      const r0 = h0 / h;
      prevSample = sample.map((x, k) => ratio * x - aT * phi * m0[k] - 0.5 * aT * phi * ((m0[k] - m1[k]) / r0));
    }
    if (this.lowerOrderNums < this.config.solverOrder) this.lowerOrderNums++;
    this.index++;
    return { prevSample, predOriginalSample: m0 };
  }
}
