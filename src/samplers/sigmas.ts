/**
 * The noise-level (sigma) view shared by the ODE solvers (Euler, Heun, DPM-Solver++):
 * sigma_t = sqrt((1 - alphaBar_t) / alphaBar_t) (Karras et al. 2022, the variance-exploding
 * parametrisation of a VP model), the spacing of inference timesteps as diffusers' k-schedulers
 * compute it, Karras sigmas, and the inverse map sigma -> fractional timestep.
 */
import { SchedulerConfig, TimestepSpacing, predictX0Eps, spacedTimesteps } from './common.js';

/** Training sigmas, ascending with t, in float64 from diffusers' float32 alphaBar table. */
export function trainingSigmas(alphasCumprod: Float32Array): Float64Array {
  return Float64Array.from(alphasCumprod, (a) => Math.sqrt((1 - a) / a));
}

/** np.interp(x, [0, 1, ..., n-1], ys): piecewise linear, clamped at the ends. */
export function interpIndex(x: number, ys: ArrayLike<number>): number {
  if (x <= 0) return ys[0];
  if (x >= ys.length - 1) return ys[ys.length - 1];
  const i = Math.floor(x);
  const w = x - i;
  return ys[i] * (1 - w) + ys[i + 1] * w;
}

/** Karras et al. 2022 eq. 5: sigma_i = (max^(1/rho) + i/(n-1) (min^(1/rho) - max^(1/rho)))^rho, rho = 7. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): number[] {
  const lo = sigmaMin ** (1 / rho);
  const hi = sigmaMax ** (1 / rho);
  return Array.from({ length: n }, (_, i) => (hi + (n === 1 ? 0 : i / (n - 1)) * (lo - hi)) ** rho);
}

/** Fractional timestep of a sigma by linear interpolation in log sigma (diffusers' _sigma_to_t). */
export function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const ls = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (ls >= logSigmas[i]) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const w = Math.min(1, Math.max(0, (logSigmas[low] - ls) / (logSigmas[low] - logSigmas[low + 1])));
  return (1 - w) * low + w * (low + 1);
}

/**
 * Inference timesteps of Euler/Heun, descending: diffusers' k-schedulers keep `linspace` unrounded
 * (float32), and space `leading` and `trailing` as DDPM/DDIM do (spacedTimesteps).
 */
export function kTimesteps(spacing: TimestepSpacing, T: number, n: number, stepsOffset: number, who: string): number[] {
  if (spacing !== 'linspace') return spacedTimesteps(spacing, T, n, stepsOffset, who);
  spacedTimesteps(spacing, T, n, stepsOffset, who); // validates n
  return Array.from({ length: n }, (_, i) => (n === 1 ? 0 : Math.fround((i * (T - 1)) / (n - 1)))).reverse();
}

export interface KSchedulerConfig extends SchedulerConfig {
  /** Use Karras et al.'s sigma spacing instead of the timestep spacing. */
  useKarrasSigmas: boolean;
}

/** Descending sigmas (with a final 0) and their timesteps for the continuous-time solvers. */
export function kSchedule(
  c: KSchedulerConfig,
  alphasCumprod: Float32Array,
  timesteps: number[],
): { sigmas: number[]; timesteps: number[]; sigmaAt: (t: number) => number } {
  const train = trainingSigmas(alphasCumprod);
  const logSigmas = train.map(Math.log);
  if (c.useKarrasSigmas) {
    const inner = timesteps.map((t) => interpIndex(t, train));
    const sigmas = karrasSigmas(inner[inner.length - 1], inner[0], timesteps.length);
    // Karras timesteps come from log-sigma interpolation; sigmaAt inverts that map.
    return { sigmas: [...sigmas, 0], timesteps: sigmas.map((s) => sigmaToT(s, logSigmas)), sigmaAt: (t) => Math.exp(interpIndex(t, logSigmas)) };
  }
  return { sigmas: [...timesteps.map((t) => interpIndex(t, train)), 0], timesteps, sigmaAt: (t) => interpIndex(t, train) };
}

/**
 * x_0 from a model output at noise level sigma, for samples in the sigma (variance-exploding)
 * scale x = x_0 + sigma eps that Euler and Heun step in: the variance-preserving sample is
 * x / sqrt(sigma^2 + 1) at alphaBar = 1 / (sigma^2 + 1) (for epsilon: x_0 = x - sigma eps).
 */
export function predictX0Sigma(type: SchedulerConfig['predictionType'], modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
  if (type === 'epsilon') return sample.map((x, i) => x - sigma * modelOutput[i]);
  const k = 1 / Math.sqrt(sigma * sigma + 1);
  return predictX0Eps(type, modelOutput, sample.map((x) => x * k), k * k).x0;
}

/**
 * q(x_t | x_0) for the solvers that index their sigmas by step: each of `at.length` equal chunks
 * of `original` is noised at the sigma of its timestep's first place in `timesteps`.
 */
export function addNoiseSigma(
  sigmas: readonly number[],
  timesteps: readonly number[],
  original: Float32Array,
  noise: Float32Array,
  at: readonly number[],
  mix: (x: number, sigma: number, z: number) => number,
): Float32Array {
  if (noise.length !== original.length) throw new Error(`addNoise: noise has ${noise.length} values, original has ${original.length}`);
  const per = original.length / at.length;
  if (!Number.isInteger(per)) throw new Error(`addNoise: ${original.length} values do not split into ${at.length} samples`);
  const out = new Float32Array(original.length);
  at.forEach((t, k) => {
    const i = timesteps.findIndex((u) => Math.abs(u - t) < 1e-6);
    if (i < 0) throw new Error(`addNoise: timestep ${t} is not in the current schedule (call setTimesteps first)`);
    const s = sigmas[i];
    for (let q = k * per; q < (k + 1) * per; q++) out[q] = mix(original[q], s, noise[q]);
  });
  return out;
}
