/**
 * Noise schedules: the betas of the forward process and everything derived from them.
 *
 * Ho et al. 2020 (DDPM) eq. 2: q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I);
 * eq. 4: q(x_t | x_0) = N(sqrt(alphaBar_t) x_0, (1 - alphaBar_t) I),  alphaBar_t = prod_{s<=t} (1 - beta_s).
 * Everything here is float64; the samplers keep diffusers' float32 tables separately.
 * Timesteps are 0-based as in diffusers: t = 0 is the first noising step.
 */

export type BetaScheduleName = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2' | 'sigmoid';
export const BETA_SCHEDULES: readonly BetaScheduleName[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2', 'sigmoid'];

export interface ScheduleConfig {
  numTrainTimesteps?: number;
  betaStart?: number;
  betaEnd?: number;
  betaSchedule?: BetaScheduleName;
  /** Betas given directly (overrides the named schedule). */
  trainedBetas?: ArrayLike<number>;
  /** Rescale so that alphaBar at the last step is exactly 0 (Lin et al. 2023, Algorithm 1). */
  rescaleBetasZeroSnr?: boolean;
}

export const SCHEDULE_DEFAULTS = {
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: 'linear' as BetaScheduleName,
  rescaleBetasZeroSnr: false,
};

function linspace(a: number, b: number, n: number): number[] {
  if (n === 1) return [a];
  return Array.from({ length: n }, (_, i) => a + ((b - a) * i) / (n - 1));
}

/** Glide / Improved DDPM cosine schedule: alphaBar(t) = cos^2(((t/T) + s) / (1 + s) * pi/2), s = 0.008 (Nichol & Dhariwal 2021, eq. 17). */
export function cosineBetas(n: number, maxBeta = 0.999): number[] {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  return Array.from({ length: n }, (_, i) => Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta));
}

/** Betas of a named schedule, in float64. */
export function makeBetas(cfg: ScheduleConfig = {}): Float64Array {
  const c = { ...SCHEDULE_DEFAULTS, ...cfg };
  const n = c.numTrainTimesteps;
  if (!Number.isInteger(n) || n < 1) throw new Error(`schedule: numTrainTimesteps must be a positive integer, got ${n}`);
  let betas: number[];
  if (cfg.trainedBetas) {
    betas = Array.from(cfg.trainedBetas);
    if (betas.length !== n && cfg.numTrainTimesteps !== undefined) {
      throw new Error(`schedule: trainedBetas has ${betas.length} values but numTrainTimesteps is ${n}`);
    }
  } else if (c.betaSchedule === 'linear') {
    betas = linspace(c.betaStart, c.betaEnd, n);
  } else if (c.betaSchedule === 'scaled_linear') {
    // The latent-diffusion schedule: linear in sqrt(beta).
    betas = linspace(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), n).map((b) => b * b);
  } else if (c.betaSchedule === 'squaredcos_cap_v2') {
    betas = cosineBetas(n);
  } else if (c.betaSchedule === 'sigmoid') {
    // GeoDiff's sigmoid schedule: sigmoid(linspace(-6, 6)) scaled into [betaStart, betaEnd].
    betas = linspace(-6, 6, n).map((v) => (1 / (1 + Math.exp(-v))) * (c.betaEnd - c.betaStart) + c.betaStart);
  } else {
    throw new Error(`unknown beta schedule '${String(c.betaSchedule)}' (known: ${BETA_SCHEDULES.join(', ')})`);
  }
  for (const [i, b] of betas.entries()) {
    if (!(b > 0 && b <= 1)) throw new Error(`schedule: beta[${i}] = ${b} is outside (0, 1]`);
  }
  const out = Float64Array.from(betas);
  return c.rescaleBetasZeroSnr ? rescaleZeroTerminalSnr(out) : out;
}

/**
 * Lin et al. 2023, Algorithm 1: shift and scale sqrt(alphaBar) so that the last
 * step has zero signal (SNR 0) while the first keeps its value.
 */
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const n = betas.length;
  const sqrtAb = new Float64Array(n);
  let prod = 1;
  for (let i = 0; i < n; i++) sqrtAb[i] = Math.sqrt((prod *= 1 - betas[i]));
  const first = sqrtAb[0];
  const last = sqrtAb[n - 1];
  for (let i = 0; i < n; i++) sqrtAb[i] = ((sqrtAb[i] - last) * first) / (first - last);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ab = sqrtAb[i] ** 2;
    const prev = i === 0 ? 1 : sqrtAb[i - 1] ** 2;
    out[i] = 1 - ab / prev;
  }
  return out;
}

/** A schedule's derived quantities, float64, indexed by 0-based timestep. */
export class NoiseSchedule {
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  /** alphaBar_t = prod_{s <= t} alpha_s */
  readonly alphasCumprod: Float64Array;

  constructor(readonly config: ScheduleConfig = {}) {
    this.betas = makeBetas(config);
    this.alphas = this.betas.map((b) => 1 - b);
    this.alphasCumprod = new Float64Array(this.betas.length);
    let p = 1;
    this.alphas.forEach((a, i) => (this.alphasCumprod[i] = p *= a));
  }

  get length(): number {
    return this.betas.length;
  }
  /** Signal-to-noise ratio alphaBar / (1 - alphaBar). */
  snr(t: number): number {
    const ab = this.alphasCumprod[t];
    return ab / (1 - ab);
  }
  logSnr(t: number): number {
    return Math.log(this.snr(t));
  }
  /** Noise level in the variance-exploding view, sigma_t = sqrt((1 - alphaBar) / alphaBar) (Karras et al. 2022). */
  sigma(t: number): number {
    return Math.sqrt(1 / this.snr(t));
  }
}
