/**
 * DDIM inversion (Song et al. 2021, arXiv 2010.02502, sec. 4.3; diffusers' DDIMInverseScheduler):
 * the deterministic DDIM update run from x_0 towards x_T. Generation steps from t to
 * t' = t - T/n with eps(x_t, t):
 *   x_t' = sqrt(alphaBar_t') x_0 + sqrt(1 - alphaBar_t') eps,  x_0 = (x_t - sqrt(1 - alphaBar_t) eps) / sqrt(alphaBar_t).
 * Inversion solves the same relation for x_t given x_t', with eps(x_t', t) standing in for the
 * unknown eps(x_t, t): exact in the limit of many steps, and the source of the round-trip error.
 */
import { predictX0Eps } from '../samplers/common.js';
import type { DDIMScheduler } from '../samplers/ddim.js';
import type { StepCallback } from '../samplers/loop.js';
import type { Denoiser } from '../samplers/scheduler.js';

export interface InvertDDIMOptions {
  scheduler: DDIMScheduler;
  denoise: Denoiser;
  /** x_0 of `count` images, NCHW flattened. */
  image: Float32Array;
  count: number;
  steps: number;
  /**
   * Fixed-point refinements per step (default 0): re-evaluate eps at the current estimate of x_t
   * and solve again, so that eps(x_t, t), the one generation uses, replaces eps(x_t', t). Each costs
   * one more model evaluation per step (Pan et al. 2023, arXiv 2309.12531; Garibi et al. 2024, ReNoise).
   */
  refine?: number;
  onStep?: StepCallback;
}

/** x_T (unit variance) that DDIM with eta 0 and the scheduler's timesteps turns back into `image`. */
export async function invertDDIM(o: InvertDDIMOptions): Promise<Float32Array> {
  const s = o.scheduler;
  s.setTimesteps(o.steps);
  const stride = Math.floor(s.config.numTrainTimesteps / o.steps);
  const ascending = [...s.timesteps].reverse();
  let x = o.image.slice();
  for (let i = 0; i < ascending.length; i++) {
    const t = ascending[i];
    const from = t - stride;
    const aFrom = from >= 0 ? s.alphasCumprod[from] : s.finalAlphaCumprod;
    const aTo = s.alphasCumprod[t];
    const [sf, nf, st, nt] = [Math.sqrt(aFrom), Math.sqrt(1 - aFrom), Math.sqrt(aTo), Math.sqrt(1 - aTo)];
    const source = x;
    let next = x;
    let x0 = x;
    for (let r = 0; r <= (o.refine ?? 0); r++) {
      const { eps } = predictX0Eps(s.config.predictionType, await o.denoise(next, t, o.count), next, aTo);
      x0 = source.map((v, k) => (v - nf * eps[k]) / sf);
      next = x0.map((v, k) => st * v + nt * eps[k]);
    }
    x = next;
    await o.onStep?.(i, t, x, x0, ascending.length);
  }
  return x;
}
