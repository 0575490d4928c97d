/**
 * The forward (noising) process and the training objectives.
 */
import { NoiseSchedule } from './schedule.js';

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];

export type LossWeighting = 'mse' | 'min_snr';

function checkT(s: NoiseSchedule, t: number): void {
  if (!Number.isInteger(t) || t < 0 || t >= s.length) throw new Error(`timestep ${t} is outside [0, ${s.length - 1}]`);
}

/**
 * Closed form q(x_t | x_0) (DDPM eq. 4): x_t = sqrt(alphaBar_t) x_0 + sqrt(1 - alphaBar_t) eps.
 * `x0` holds `t.length` samples of equal size back to back.
 */
export function qSample(s: NoiseSchedule, x0: Float32Array, noise: Float32Array, t: readonly number[]): Float32Array {
  if (noise.length !== x0.length) throw new Error(`qSample: noise has ${noise.length} values, x0 has ${x0.length}`);
  const per = x0.length / t.length;
  if (!Number.isInteger(per)) throw new Error(`qSample: ${x0.length} values do not split into ${t.length} samples`);
  const out = new Float32Array(x0.length);
  t.forEach((ti, n) => {
    checkT(s, ti);
    const a = Math.sqrt(s.alphasCumprod[ti]);
    const b = Math.sqrt(1 - s.alphasCumprod[ti]);
    for (let i = n * per; i < (n + 1) * per; i++) out[i] = a * x0[i] + b * noise[i];
  });
  return out;
}

/** One step q(x_t | x_{t-1}) (DDPM eq. 2): x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps. */
export function qStep(s: NoiseSchedule, xPrev: Float32Array, noise: Float32Array, t: number): Float32Array {
  checkT(s, t);
  const a = Math.sqrt(1 - s.betas[t]);
  const b = Math.sqrt(s.betas[t]);
  return xPrev.map((v, i) => a * v + b * noise[i]);
}

/**
 * What the network is trained to output at timestep t:
 * epsilon -> eps; sample -> x_0; v_prediction -> v = sqrt(alphaBar) eps - sqrt(1 - alphaBar) x_0 (Salimans & Ho 2022, sec. 4).
 */
export function trainingTarget(
  type: PredictionType,
  s: NoiseSchedule,
  x0: Float32Array,
  noise: Float32Array,
  t: readonly number[],
): Float32Array {
  if (type === 'epsilon') return noise;
  if (type === 'sample') return x0;
  if (type !== 'v_prediction') throw new Error(`unknown prediction type '${String(type)}' (known: ${PREDICTION_TYPES.join(', ')})`);
  const per = x0.length / t.length;
  const out = new Float32Array(x0.length);
  t.forEach((ti, n) => {
    const a = Math.sqrt(s.alphasCumprod[ti]);
    const b = Math.sqrt(1 - s.alphasCumprod[ti]);
    for (let i = n * per; i < (n + 1) * per; i++) out[i] = a * noise[i] - b * x0[i];
  });
  return out;
}

/**
 * Per-sample loss weight. Min-SNR-gamma (Hang et al. 2023, eq. 9): the x_0-space weight
 * min(SNR, gamma), converted to the model's parametrisation: / SNR for epsilon,
 * / (SNR + 1) for v, unchanged for sample. Plain MSE weighs every sample 1.
 */
export function lossWeight(weighting: LossWeighting, type: PredictionType, s: NoiseSchedule, t: number, gamma = 5): number {
  if (weighting === 'mse') return 1;
  if (weighting !== 'min_snr') throw new Error(`unknown loss weighting '${String(weighting)}' (known: mse, min_snr)`);
  const snr = s.snr(t);
  const clipped = Math.min(snr, gamma);
  // At zero terminal SNR the epsilon weight's limit min(snr, gamma) / snr is 1.
  if (type === 'epsilon') return snr === 0 ? 1 : clipped / snr;
  if (type === 'v_prediction') return clipped / (snr + 1);
  return clipped;
}
