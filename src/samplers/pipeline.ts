/**
 * The reverse process as a loop, as diffusers' DDPMPipeline / DDIMPipeline run it:
 * x_T ~ N(0, I); for t in scheduler.timesteps: x_{t-1} = scheduler.step(model(x_t, t), t, x_t).
 */
import type { NoiseGenerator } from '../diffusion/index.js';
import { TorchGenerator } from '../diffusion/index.js';
import type { StepOptions, StepOutput } from './common.js';

/** Anything with diffusers' scheduler contract. */
export interface Scheduler {
  timesteps: number[];
  readonly initNoiseSigma: number;
  setTimesteps(n: number): void;
  /** What the model sees at this step (the k-diffusion solvers rescale x; DDPM/DDIM pass it through). */
  scaleModelInput?(sample: Float32Array, timestep: number): Float32Array;
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts?: StepOptions): StepOutput;
}

/** The network: x_t for a batch (NCHW, flattened) and one timestep -> model output of the same size. */
export type Denoiser = (x: Float32Array, t: number, batch: number) => Promise<Float32Array>;

export interface SampleOptions {
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
  /** Called after each step with its index, timestep, x_{t-1} and the x_0 estimate. */
  onStep?: (i: number, t: number, sample: Float32Array, predOriginal: Float32Array) => void | Promise<void>;
}

export async function generate(o: SampleOptions): Promise<Float32Array> {
  const gen = o.generator ?? new TorchGenerator(0);
  const per = o.shape.reduce((a, b) => a * b, 1);
  o.scheduler.setTimesteps(o.steps);
  let x = gen.randn(o.count * per);
  if (o.scheduler.initNoiseSigma !== 1) x = x.map((v) => v * o.scheduler.initNoiseSigma);
  const timesteps = [...o.scheduler.timesteps];
  for (let i = 0; i < timesteps.length; i++) {
    const t = timesteps[i];
    const input = o.scheduler.scaleModelInput ? o.scheduler.scaleModelInput(x, t) : x;
    const out = o.scheduler.step(await o.denoise(input, t, o.count), t, x, { eta: o.eta, generator: gen });
    x = out.prevSample;
    await o.onStep?.(i, t, x, out.predOriginalSample);
  }
  return x;
}
