/**
 * RePaint (Lugmayr et al. 2022, arXiv 2201.09865, Algorithm 1 and sec. 4.2): inpainting with an
 * unconditional model. At each reverse step the known region of x_{t-1} is the original noised
 * to t-1 by q(x_{t-1} | x_0), the unknown region the model's step; and every `jumpLength` steps
 * the sample is noised back up `jumpLength` steps by q(x_{t+j} | x_t) and denoised again, which
 * lets the generated region take in what the known one says, `jumpRepeats` times.
 */
import type { NoiseGenerator } from '../diffusion/index.js';
import type { DDIMScheduler } from '../samplers/ddim.js';
import type { DDPMScheduler } from '../samplers/ddpm.js';
import type { StepCallback } from '../samplers/loop.js';
import type { Denoiser } from '../samplers/scheduler.js';

export interface RepaintOptions {
  /** Steps between resampling jumps, and how far each jump goes back up (RePaint's j; default 5). */
  jumpLength?: number;
  /** Times each jump is made (RePaint's r; default 5; 1 = no resampling, plain replacement). */
  jumpRepeats?: number;
}

/**
 * What the loop does: `step` evaluates the model at level k (the k-th inference timestep, 0 the
 * least noisy) and moves the sample to level k - 1 (-1: clean); `jump` noises it from level
 * `from` up to `to`.
 */
export type RepaintMove = { kind: 'step'; level: number } | { kind: 'jump'; from: number; to: number };

/**
 * RePaint's walk over n levels, as its reference code (get_schedule_jump) and diffusers'
 * RePaintScheduler build it: down one level at a time; after the step at each level that is a
 * multiple of `jumpLength` below n - jumpLength, back up `jumpLength` levels, `jumpRepeats - 1` times.
 */
export function repaintWalk(n: number, jumpLength: number, jumpRepeats: number): RepaintMove[] {
  const jumps = new Map<number, number>();
  for (let j = 0; j < n - jumpLength; j += jumpLength) jumps.set(j, jumpRepeats - 1);
  const moves: RepaintMove[] = [];
  let t = n;
  while (t >= 1) {
    t -= 1;
    moves.push({ kind: 'step', level: t });
    const left = jumps.get(t) ?? 0;
    if (left > 0) {
      jumps.set(t, left - 1);
      moves.push({ kind: 'jump', from: t - 1, to: t - 1 + jumpLength });
      t += jumpLength;
    }
  }
  return moves;
}

export interface RepaintRunOptions extends RepaintOptions {
  scheduler: DDIMScheduler | DDPMScheduler;
  denoise: Denoiser;
  /** Originals and masks (1 = generate) of `count` images, NCHW flattened. */
  image: Float32Array;
  mask: Float32Array;
  count: number;
  steps: number;
  eta: number;
  generator: NoiseGenerator;
  /** x_T (count x C x H x W, unit variance) instead of a draw from the generator: a watermark's. */
  initialNoise?: Float32Array;
  onStep?: StepCallback;
}

export async function repaint(o: RepaintRunOptions): Promise<Float32Array> {
  const jumpLength = o.jumpLength ?? 5;
  const jumpRepeats = o.jumpRepeats ?? 5;
  if (!Number.isInteger(jumpLength) || jumpLength < 1) throw new Error(`jumpLength must be a positive integer, got ${jumpLength}`);
  if (!Number.isInteger(jumpRepeats) || jumpRepeats < 1) throw new Error(`jumpRepeats must be a positive integer, got ${jumpRepeats}`);
  const s = o.scheduler;
  s.setTimesteps(o.steps);
  const levels = [...s.timesteps].reverse(); // level k -> timestep, ascending
  const ab = (k: number) => (k >= 0 ? s.alphasCumprod[levels[k]] : 1);
  const n = o.image.length;
  const known = (k: number): Float32Array => {
    if (k < 0) return o.image;
    const z = o.generator.randn(n);
    const [a, b] = [Math.sqrt(ab(k)), Math.sqrt(1 - ab(k))];
    return o.image.map((v, i) => a * v + b * z[i]);
  };
  const moves = repaintWalk(levels.length, jumpLength, jumpRepeats);
  const total = moves.filter((m) => m.kind === 'step').length;
  let x = o.initialNoise ?? o.generator.randn(n);
  let evals = 0;
  for (const m of moves) {
    if (m.kind === 'jump') {
      // q(x_to | x_from): sqrt(alphaBar_to / alphaBar_from) x + sqrt(1 - alphaBar_to / alphaBar_from) z
      const r = ab(m.to) / ab(m.from);
      const z = o.generator.randn(n);
      const [a, b] = [Math.sqrt(r), Math.sqrt(1 - r)];
      x = x.map((v, i) => a * v + b * z[i]);
      continue;
    }
    const t = levels[m.level];
    const out = s.step(await o.denoise(x, t, o.count), t, x, { eta: o.eta, generator: o.generator });
    const keep = known(m.level - 1);
    x = out.prevSample.map((v, i) => o.mask[i] * v + (1 - o.mask[i]) * keep[i]);
    await o.onStep?.(evals++, t, x, out.predOriginalSample, total);
  }
  return x;
}
