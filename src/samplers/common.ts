/**
 * What the diffusers-compatible schedulers share: their config names, the
 * float32 beta tables exactly as diffusers builds them with PyTorch, and the
 * timestep spacings.
 */
import { BETA_SCHEDULES, BetaScheduleName, PREDICTION_TYPES, PredictionType, cosineBetas } from '../diffusion/index.js';
import type { NoiseGenerator } from '../diffusion/index.js';

export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

/** diffusers' config fields, in camelCase. */
export interface SchedulerConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaScheduleName;
  trainedBetas?: ArrayLike<number>;
  clipSample: boolean;
  clipSampleRange: number;
  predictionType: PredictionType;
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  rescaleBetasZeroSnr: boolean;
}

export const SCHEDULER_DEFAULTS: SchedulerConfig = {
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: 'linear',
  clipSample: true,
  clipSampleRange: 1.0,
  predictionType: 'epsilon',
  timestepSpacing: 'leading',
  stepsOffset: 0,
  rescaleBetasZeroSnr: false,
};

export interface StepOptions {
  /** DDIM's eta: 0 is deterministic, 1 is DDPM-like. */
  eta?: number;
  /** Source of the added noise (default: a TorchGenerator seeded 0 per scheduler). */
  generator?: NoiseGenerator;
  /** The added noise itself, instead of drawing it. */
  varianceNoise?: Float32Array;
  /** DDIM: re-derive the noise prediction from the clipped x_0 (as Glide does). */
  useClippedModelOutput?: boolean;
  /** Images in `sample` (default 1): per-image operations such as dynamic thresholding need it. */
  batch?: number;
}

export interface StepOutput {
  /** x_{t-1} */
  prevSample: Float32Array;
  /** The model's estimate of x_0 at this step. */
  predOriginalSample: Float32Array;
}

export const f32 = Math.fround;
export const sqrt32 = (v: number): number => f32(Math.sqrt(v));

/** Validates option names and values, so that a typo or a wrong value names itself. */
export function resolveConfig<C extends object>(name: string, defaults: C, given: Partial<C>): C {
  for (const k of Object.keys(given)) {
    if (!(k in defaults) && k !== 'trainedBetas') {
      throw new Error(`${name}: unknown option '${k}' (known: ${[...Object.keys(defaults), 'trainedBetas'].join(', ')})`);
    }
  }
  const c = { ...defaults, ...given } as C & SchedulerConfig;
  if (!BETA_SCHEDULES.includes(c.betaSchedule)) {
    throw new Error(`${name}: unknown betaSchedule '${c.betaSchedule}' (known: ${BETA_SCHEDULES.join(', ')})`);
  }
  if (!PREDICTION_TYPES.includes(c.predictionType)) {
    throw new Error(`${name}: unknown predictionType '${c.predictionType}' (known: ${PREDICTION_TYPES.join(', ')})`);
  }
  if (!['leading', 'trailing', 'linspace'].includes(c.timestepSpacing)) {
    throw new Error(`${name}: unknown timestepSpacing '${c.timestepSpacing}' (known: leading, trailing, linspace)`);
  }
  if (!Number.isInteger(c.numTrainTimesteps) || c.numTrainTimesteps < 1) {
    throw new Error(`${name}: numTrainTimesteps must be a positive integer, got ${c.numTrainTimesteps}`);
  }
  return c;
}

/**
 * torch.linspace(a, b, n, dtype=float32) as PyTorch's x86-64 CPU kernel computes it:
 * a float32 step; the first half counted up from `a`, the second down from `b`;
 * blocks of 8 from a fused multiply-add base, then an 8-wide arange; a scalar tail.
 * Checked bit for bit against torch.linspace (test/samplers/diffusers-parity.test.ts).
 */
function linspace32(a: number, b: number, n: number): Float32Array {
  const out = new Float32Array(n);
  const start = f32(a);
  const end = f32(b);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const step = f32(f32(end - start) / (n - 1));
  const half = Math.floor(n / 2);
  // step * i is exact in float64 for these sizes, so this is a float32 FMA.
  const at = (i: number) => (i < half ? f32(step * i + start) : f32(-step * (n - i - 1) + end));
  const vectorEnd = Math.floor(n / 16) * 16;
  for (let i0 = 0; i0 < vectorEnd; i0 += 8) {
    const base = at(i0);
    for (let i = 0; i < 8; i++) out[i0 + i] = f32(base + f32(i * step));
  }
  for (let i = vectorEnd; i < n; i++) out[i] = at(i);
  return out;
}

/** The float32 betas diffusers computes for a config (same rounding as its PyTorch code). */
export function diffusersBetas(c: SchedulerConfig): Float32Array {
  const n = c.numTrainTimesteps;
  let betas: Float32Array;
  if (c.trainedBetas) {
    betas = Float32Array.from(c.trainedBetas);
    if (betas.length !== n) throw new Error(`trainedBetas has ${betas.length} values but numTrainTimesteps is ${n}`);
  } else if (c.betaSchedule === 'linear') {
    betas = linspace32(c.betaStart, c.betaEnd, n);
  } else if (c.betaSchedule === 'scaled_linear') {
    betas = linspace32(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), n).map((b) => f32(b * b));
  } else if (c.betaSchedule === 'squaredcos_cap_v2') {
    betas = Float32Array.from(cosineBetas(n));
  } else {
    const scale = f32(c.betaEnd - c.betaStart);
    betas = linspace32(-6, 6, n).map((v) => f32(f32(f32(1 / f32(1 + f32(Math.exp(-v)))) * scale) + f32(c.betaStart)));
  }
  return c.rescaleBetasZeroSnr ? rescaleZeroSnr32(betas) : betas;
}

/** torch.cumprod on CPU accumulates in float64 and rounds each output to float32. */
export function cumprod32(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  let acc = 1;
  for (let i = 0; i < a.length; i++) out[i] = acc *= a[i];
  return out;
}

/** diffusers' rescale_zero_terminal_snr in float32. */
function rescaleZeroSnr32(betas: Float32Array): Float32Array {
  const alphasCumprod = cumprod32(betas.map((b) => f32(1 - b)));
  const sq = alphasCumprod.map(sqrt32);
  const first = sq[0];
  const last = sq[sq.length - 1];
  const scale = f32(first / f32(first - last));
  const shifted = sq.map((v) => f32(f32(v - last) * scale));
  const ab = shifted.map((v) => f32(v * v));
  const alphas = ab.map((v, i) => (i === 0 ? v : f32(v / ab[i - 1])));
  return alphas.map((a) => f32(1 - a));
}

/** numpy's round(): half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Inference timesteps, descending, as diffusers' set_timesteps computes them. */
export function spacedTimesteps(spacing: TimestepSpacing, trainSteps: number, n: number, stepsOffset: number, who: string): number[] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`${who}: the number of inference steps must be a positive integer, got ${n}`);
  if (n > trainSteps) throw new Error(`${who}: ${n} inference steps exceed the ${trainSteps} training timesteps`);
  if (spacing === 'linspace') {
    // np.linspace(0, T - 1, n).round()[::-1]
    const step = n === 1 ? 0 : (trainSteps - 1) / (n - 1);
    return Array.from({ length: n }, (_, i) => (i === n - 1 && n > 1 ? trainSteps - 1 : roundHalfEven(i * step))).reverse();
  }
  if (spacing === 'leading') {
    const ratio = Math.floor(trainSteps / n);
    return Array.from({ length: n }, (_, i) => i * ratio + stepsOffset).reverse();
  }
  // trailing: np.round(np.arange(T, 0, -T / n)) - 1
  const ratio = trainSteps / n;
  const len = Math.ceil(-trainSteps / -ratio);
  return Array.from({ length: len }, (_, i) => roundHalfEven(trainSteps - i * ratio) - 1);
}

export function checkSameLength(modelOutput: Float32Array, sample: Float32Array, who: string): void {
  if (modelOutput.length !== sample.length) {
    throw new Error(`${who}.step: modelOutput has ${modelOutput.length} values but sample has ${sample.length}`);
  }
}

export function clip(x: Float32Array, range: number): void {
  const r = f32(range);
  for (let i = 0; i < x.length; i++) x[i] = Math.min(r, Math.max(-r, x[i]));
}

/** The float32 tables every diffusers scheduler builds from its config. */
export function schedulerTables(c: SchedulerConfig): { betas: Float32Array; alphas: Float32Array; alphasCumprod: Float32Array; timesteps: number[] } {
  const betas = diffusersBetas(c);
  const alphas = betas.map((b) => f32(1 - b));
  return {
    betas,
    alphas,
    alphasCumprod: cumprod32(alphas),
    timesteps: Array.from({ length: c.numTrainTimesteps }, (_, i) => c.numTrainTimesteps - 1 - i),
  };
}

/**
 * The model output as x_0 and eps at a timestep with cumulative alpha `alphaBar`, in float32
 * as diffusers computes them (x_t = sqrt(alphaBar) x_0 + sqrt(1 - alphaBar) eps):
 * epsilon: x_0 = (x_t - sqrt(1 - alphaBar) eps) / sqrt(alphaBar)  (DDPM eq. 15);
 * sample:  eps = (x_t - sqrt(alphaBar) x_0) / sqrt(1 - alphaBar);
 * v:       x_0 = sqrt(alphaBar) x_t - sqrt(1 - alphaBar) v, eps = sqrt(alphaBar) v + sqrt(1 - alphaBar) x_t
 *          (Salimans & Ho 2022, arXiv 2202.00512, sec. 4).
 * `eps` is the model output itself for epsilon-prediction (not a copy).
 */
export function predictX0Eps(type: PredictionType, modelOutput: Float32Array, sample: Float32Array, alphaBar: number): { x0: Float32Array; eps: Float32Array } {
  const n = sample.length;
  const sa = sqrt32(alphaBar);
  const sb = sqrt32(f32(1 - alphaBar));
  const x0 = new Float32Array(n);
  if (type === 'epsilon') {
    for (let i = 0; i < n; i++) x0[i] = f32(f32(sample[i] - f32(sb * modelOutput[i])) / sa);
    return { x0, eps: modelOutput };
  }
  const eps = new Float32Array(n);
  if (type === 'sample') {
    x0.set(modelOutput);
    for (let i = 0; i < n; i++) eps[i] = f32(f32(sample[i] - f32(sa * x0[i])) / sb);
  } else {
    for (let i = 0; i < n; i++) {
      x0[i] = f32(f32(sa * sample[i]) - f32(sb * modelOutput[i]));
      eps[i] = f32(f32(sa * modelOutput[i]) + f32(sb * sample[i]));
    }
  }
  return { x0, eps };
}

/**
 * Dynamic thresholding (Saharia et al. 2022, Imagen, arXiv 2205.11487, sec. 2.3), as diffusers'
 * _threshold_sample: per image, s = the `ratio` quantile of |x_0| (linear interpolation, as
 * torch.quantile), clamped to [1, maxValue]; x_0 is clipped to [-s, s] and divided by s. With
 * maxValue 1 it is plain clipping to [-1, 1]. In place.
 */
export function dynamicThreshold(x0: Float32Array, batch: number, ratio: number, maxValue: number): void {
  if (x0.length % batch !== 0) throw new Error(`dynamicThreshold: ${x0.length} values do not split into ${batch} images`);
  const per = x0.length / batch;
  for (let k = 0; k < batch; k++) {
    const img = x0.subarray(k * per, (k + 1) * per);
    const sorted = Float64Array.from(img, Math.abs).sort();
    const pos = ratio * (per - 1);
    const lo = Math.floor(pos);
    const q = sorted[lo] + (pos - lo) * ((sorted[Math.min(lo + 1, per - 1)] ?? sorted[lo]) - sorted[lo]);
    const s = Math.min(maxValue, Math.max(1, q));
    for (let i = 0; i < per; i++) img[i] = f32(Math.min(s, Math.max(-s, img[i])) / s);
  }
}
