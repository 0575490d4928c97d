/**
 * The reverse process as a loop, as diffusers' DDPMPipeline / DDIMPipeline run it:
 * x_T ~ N(0, I); for t in scheduler.timesteps: x_{t-1} = scheduler.step(model(x_t, t), t, x_t).
 */
import type { NoiseGenerator } from '../diffusion/index.js';
import { TorchGenerator } from '../diffusion/index.js';
import type { Denoiser, Scheduler } from './scheduler.js';

/** After model evaluation i of `total`, at timestep t: x_{t-1} and the x_0 estimate. */
export type StepCallback = (i: number, t: number, sample: Float32Array, predOriginal: Float32Array, total: number) => void | Promise<void>;

export interface ReverseProcessOptions {
  denoise: Denoiser;
  scheduler: Scheduler;
  /** Number of images. */
  count: number;
  /** [channels, height, width] */
  shape: readonly number[];
  steps: number;
  eta?: number;
  /** Noise source (default TorchGenerator(0), as torch.manual_seed(0)). */
  generator?: NoiseGenerator;
  /**
   * Start from this x_T (unit variance; scaled by the scheduler's initNoiseSigma) instead of
   * drawing it: a watermarked or inverted noise.
   */
  initialNoise?: Float32Array;
  /**
   * Start part-way (img2img): from this x_t at `timesteps[beginIndex]`, already in the scheduler's
   * scale (see Scheduler.addNoise); replaces the noise draw.
   */
  start?: { sample: Float32Array; beginIndex: number };
  /** Called after each model evaluation with its index, timestep, x_{t-1}, the x_0 estimate and the number of evaluations. */
  onStep?: StepCallback;
  /**
   * Called after each step to change x_{t-1} before the next (inpainting writes the known
   * pixels back here); `next` is the timestep of the next evaluation, or -1 after the last.
   */
  afterStep?: (sample: Float32Array, next: number) => Float32Array;
}

/** Runs the reverse process and returns x_0 (NCHW, flattened). */
export async function runReverseProcess(o: ReverseProcessOptions): Promise<Float32Array> {
  const gen = o.generator ?? new TorchGenerator(0);
  const per = o.shape.reduce((a, b) => a * b, 1);
  const n = o.count * per;
  if (!o.start) o.scheduler.setTimesteps(o.steps);
  let x: Float32Array;
  let begin = 0;
  if (o.start) {
    if (o.start.sample.length !== n) throw new Error(`runReverseProcess: the start sample has ${o.start.sample.length} values, expected ${n}`);
    x = o.start.sample;
    begin = o.start.beginIndex;
  } else {
    if (o.initialNoise && o.initialNoise.length !== n) throw new Error(`runReverseProcess: initialNoise has ${o.initialNoise.length} values, expected ${n}`);
    x = o.initialNoise ? o.initialNoise.slice() : gen.randn(n);
    if (o.scheduler.initNoiseSigma !== 1) x = x.map((v) => v * o.scheduler.initNoiseSigma);
  }
  const timesteps = o.scheduler.timesteps.slice(begin);
  for (let i = 0; i < timesteps.length; i++) {
    const t = timesteps[i];
    const input = o.scheduler.scaleModelInput(x, t);
    const out = o.scheduler.step(await o.denoise(input, t, o.count), t, x, { eta: o.eta, generator: gen, batch: o.count });
    x = out.prevSample;
    if (o.afterStep) x = o.afterStep(x, i + 1 < timesteps.length ? timesteps[i + 1] : -1);
    await o.onStep?.(i, t, x, out.predOriginalSample, timesteps.length);
  }
  return x;
}
