/**
 * SamplingPipeline: generate, img2img, inpaint, invert and predictNoise over any network that
 * meets `ConditionedNetwork`. DiffusionPipeline (diffusion-pipeline.ts) is this with a run's
 * compiled network in onnxruntime-node; the browser studio is this with onnxruntime-web. Nothing
 * here touches Node's APIs, so that both share one implementation of every sampling procedure.
 *
 * generate: the reverse process from noise (any scheduler, classifier-free guidance);
 * img2img: SDEdit (Meng et al. 2022, arXiv 2108.01073); inpaint: RePaint (Lugmayr et al. 2022,
 * arXiv 2201.09865); invert: DDIM inversion (Song et al. 2021, arXiv 2010.02502, sec. 4.3).
 */
import { createGenerator, GeneratorKind, NoiseGenerator, PerImageGenerator, perImageGenerator } from '../diffusion/index.js';
import { SCHEDULER_DEFAULTS, TimestepSpacing, predictX0Eps, schedulerTables } from '../samplers/common.js';
import type { DDIMScheduler } from '../samplers/ddim.js';
import type { DDPMScheduler } from '../samplers/ddpm.js';
import { StepCallback, runReverseProcess } from '../samplers/loop.js';
import { SchedulerName, makeScheduler } from '../samplers/registry.js';
import type { Denoiser, Scheduler } from '../samplers/scheduler.js';
import type { RunConfig } from '../run/config.js';
import { conditioningOf, type Conditioning } from '../run/conditioning.js';
import type { LatentCodec } from '../run/autoencoder.js';
import { defaultEta, defaultThresholding, schedulerConfigOf } from '../run/sampling-defaults.js';
import { INPAINT_SCHEDULERS, SamplingRequest, planSampling } from './sampling-plan.js';
import { ConditionedNetwork, Guidance, guidedDenoiser } from './guidance.js';
import { invertDDIM } from './invert.js';
import { RepaintOptions, repaint } from './inpaint.js';
import { OptionError } from '../engine/errors.js';

/** A batch of images: NCHW, flattened, values in [-1, 1] (a diverged sampler may stray beyond). */
export interface ImageBatch {
  data: Float32Array;
  count: number;
  /** [channels, height, width] of one image. */
  shape: [number, number, number];
}

/** What `onStep` is told after each model evaluation. */
export interface StepInfo {
  /** Index of the evaluation within this batch (0-based) and how many there are. */
  index: number;
  total: number;
  timestep: number;
  /** x_{t-1} of the batch, and the model's x_0 estimate at this step. */
  sample: Float32Array;
  predOriginal: Float32Array;
  /** The batch: images [offset, offset + batchCount) of the whole call. */
  offset: number;
  batchCount: number;
}

/** Options of every pipeline call: condition, guidance, sampler, noise. */
export interface SamplingOptions {
  /** Number of images (default 1; img2img/inpaint: the number of images given, or copies of one). */
  count?: number;
  /** Text-conditional runs: one prompt for all images, or one per image. */
  prompt?: string | readonly string[];
  /** Text-conditional runs: steer away from this prompt (replaces the empty prompt of guidance). */
  negativePrompt?: string | readonly string[];
  /** Class-conditional runs: a class index or name for all images, or one per image (default: the null class). */
  classLabel?: number | string | readonly (number | string)[];
  /** Classifier-free guidance weight w (default 3 for conditional runs; 1 = none). */
  guidance?: number;
  /** Guidance rescale phi in [0, 1] (default 0). */
  guidanceRescale?: number;
  /** A scheduler name (default 'ddim') or a scheduler object. */
  scheduler?: SchedulerName | Scheduler;
  /** Karras sigma spacing (euler, euler_a, heun, dpm++). */
  karras?: boolean;
  /** Which training timesteps the steps visit (default: the run's, see defaultSpacing). */
  spacing?: TimestepSpacing;
  /** DDPM/DDIM: clip the x_0 estimate to [-1, 1] (default: the run's, see schedulerConfigOf). */
  clipSample?: boolean;
  /** DPM-Solver++: clip its x_0 predictions to [-1, 1] (dynamic thresholding; default: on for pixel-space runs, off for latent runs, see defaultThresholding). */
  thresholding?: boolean;
  /** Denoising steps (default 50). */
  steps?: number;
  /** DDIM's eta (default: the run's, see defaultEta). */
  eta?: number;
  /** Seed of the noise (default 0), drawn by `generatorKind`; or pass a `generator`. */
  seed?: number;
  /**
   * One seed per image instead (`count` of them): image k's noise comes from its own generator
   * (PerImageGenerator), so it does not depend on the other images of the call, and any range of
   * images made alone or on another machine is the same (what `diffuse sample --redis` uses).
   */
  seeds?: readonly number[];
  generatorKind?: GeneratorKind;
  generator?: NoiseGenerator;
  /** Images per model evaluation (default 250); larger counts are done in batches. */
  batchSize?: number;
  onStep?: (info: StepInfo) => void | Promise<void>;
}

export interface GenerateOptions extends SamplingOptions {
  /** Start from this x_T (count x C x H x W, unit variance) instead of drawing it: inverted or watermarked noise. */
  initialNoise?: Float32Array;
  /**
   * Draw x_T with a watermark: `gaussianShading(key, payload)` from src/forensics writes a key and
   * a 32-bit payload into the signs of x_T and keeps it exactly N(0, I). eta then defaults to 0:
   * stochastic steps (eta > 0, ddpm, euler_a) replace x_T's signal with fresh noise and weaken the mark.
   */
  watermark?: InitialNoiseSource;
}

/** Draws x_T for `count` images of `per` values (unit variance) from the generator: how a watermark enters the initial noise. */
export interface InitialNoiseSource {
  draw(count: number, per: number, generator: NoiseGenerator): Float32Array;
}

/**
 * x_T for n images of `per` values from `source`: with per-image generators each image draws from
 * its own (so that it is the same made alone), else the batch draws from the one generator.
 */
export function drawInitialNoise(source: InitialNoiseSource, n: number, per: number, generator: NoiseGenerator): Float32Array {
  if (!(generator instanceof PerImageGenerator)) return source.draw(n, per, generator);
  const out = new Float32Array(n * per);
  generator.generators.forEach((g, k) => out.set(source.draw(1, per, g), k * per));
  return out;
}

/** An image or images for img2img/inpaint: one [C, H, W] block, or `count` of them. */
export type ImageInput = Float32Array | ImageBatch;

export interface Img2ImgOptions extends SamplingOptions {
  image: ImageInput;
  /**
   * How much to change, in [0, 1], as diffusers defines it: the image is noised to the timestep
   * int(steps * strength) steps from the end of the schedule and denoised from there; 1 starts
   * from (almost) pure noise, 0 returns the image unchanged.
   */
  strength?: number;
  /**
   * Draw the noise the image is noised with from a watermark (`gaussianShading(key, payload)`);
   * eta then defaults to 0. Detection inverts the result all the way to x_T, and the ODE carries
   * the noise's signs there: found in every image down to strength 0.5 (docs/WATERMARK.md "Edits").
   */
  watermark?: InitialNoiseSource;
}

export interface InpaintOptions extends SamplingOptions, RepaintOptions {
  image: ImageInput;
  /**
   * Draw x_T from a watermark (`gaussianShading(key, payload)`). eta then defaults to 0 and
   * jumpRepeats to 1 (plain replacement, no resampling): RePaint's fresh noise at every step and
   * every jump washes the mark out (docs/WATERMARK.md "Edits": found in 0 of 100 with the
   * defaults, 95 of 100 with these, half the image masked), at some cost at the seam.
   */
  watermark?: InitialNoiseSource;
  /** Where to generate: 1 (white in a mask file) = generate, 0 = keep. [H, W] for all channels, [C, H, W], or one per image. */
  mask: Float32Array | ImageBatch;
}

export interface InvertOptions extends Omit<SamplingOptions, 'scheduler' | 'eta' | 'karras' | 'clipSample' | 'onStep'> {
  image: ImageInput;
  /** Fixed-point refinements per step (default 0; each costs one model evaluation per step). */
  refine?: number;
  onStep?: (info: StepInfo) => void | Promise<void>;
}

export interface PredictNoiseOptions extends Pick<SamplingOptions, 'prompt' | 'classLabel' | 'batchSize'> {
  /** x_t: images at the noise level of `timestep`, [-1, 1] scale. */
  sample: ImageInput;
  /** A training timestep in [0, T). */
  timestep: number;
}


/** The sampling procedures of a trained run, over whichever runtime evaluates its network. */
export class SamplingPipeline {
  constructor(
    /** The run's config (config.json). */
    readonly config: RunConfig,
    /** The denoiser: x_t, t and condition feeds in, the model's output out. */
    protected readonly network: ConditionedNetwork,
    /**
     * Latent runs: the autoencoder and scaling factor. The reverse process then runs on latents
     * (initial noise, watermarks, inversion's x_T and onStep's samples are latents) and images
     * go through the codec on the way in and out.
     */
    readonly codec?: LatentCodec,
  ) {
    if (codec && codec.latentShape.some((d, i) => d !== network.shape[i])) {
      throw new Error(`the autoencoder's latents are ${codec.latentShape.join('x')} but the denoiser takes ${network.shape.join('x')}`);
    }
  }

  /** [channels, height, width] of the model's images. */
  get imageShape(): [number, number, number] {
    return this.codec?.imageShape ?? this.network.shape;
  }

  /** [channels, height, width] of what the denoiser denoises: the latents of a latent run, else the images. */
  get latentShape(): [number, number, number] {
    return this.network.shape;
  }

  /** The run's noise schedule as its schedulers see it (float32 betas, alphas, alphasCumprod). */
  get tables(): ReturnType<typeof schedulerTables> {
    return schedulerTables({ ...SCHEDULER_DEFAULTS, ...schedulerConfigOf(this.config) });
  }

  /** What the run is conditioned on. */
  get conditioning(): Conditioning {
    return conditioningOf(this.config);
  }

  /** Images from pure noise: the reverse process with the chosen scheduler and guidance. */
  async generate(o: GenerateOptions = {}): Promise<ImageBatch> {
    const count = positiveInt(o.count ?? 1, 'count');
    const per = this.perLatent;
    if (o.initialNoise && o.initialNoise.length !== count * per) {
      throw new Error(`initialNoise has ${o.initialNoise.length} values; ${count} ${this.codec ? 'latents' : 'images'} of [${this.latentShape.join(', ')}] need ${count * per}`);
    }
    if (o.initialNoise && o.watermark) throw new Error('give initialNoise or watermark, not both: the watermark is written into the initial noise');
    // A watermark lives in x_T: deterministic sampling (eta 0) carries it to the image, noise added along the way washes it out.
    return this.batched(o, count, async ({ scheduler, denoise, steps, eta, generator, at, n, onStep }) => {
      const initialNoise = o.watermark ? drawInitialNoise(o.watermark, n, per, generator) : o.initialNoise?.subarray(at * per, (at + n) * per);
      return runReverseProcess({ denoise, scheduler, count: n, shape: this.latentShape, steps, eta, generator, initialNoise, onStep });
    }, true, { operation: 'generate', ...(o.watermark ? { start: 'watermark' } : {}) });
  }

  /**
   * SDEdit: noise the image to the timestep that `strength` selects, then denoise it with any
   * scheduler. Low strength keeps the image's layout and content; high strength keeps less.
   */
  async img2img(o: Img2ImgOptions): Promise<ImageBatch> {
    const strength = o.strength ?? 0.6;
    if (!(strength >= 0 && strength <= 1)) throw new Error(`strength must be in [0, 1], got ${o.strength}`);
    const { images: pixels, count } = this.images(o.image, o.count, 'image');
    if (strength === 0) return { data: pixels.slice(), count, shape: this.imageShape };
    const images = await this.encode(pixels, count);
    const per = this.perLatent;
    // As in generate: a watermark needs deterministic steps (eta 0, the plan's default) to reach the image.
    return this.batched({ ...o, count }, count, async ({ scheduler, denoise, steps, eta, generator, at, n, onStep }) => {
      scheduler.setTimesteps(steps);
      // diffusers' get_timesteps: run the last int(steps * strength) steps.
      const kept = Math.min(Math.floor(steps * strength), steps);
      if (kept < 1) throw new OptionError(`strength ${strength} with ${steps} steps leaves no step to run; raise \`strength\` or \`steps\` (strength x steps >= 1)`);
      const beginIndex = (steps - kept) * scheduler.order;
      scheduler.setBeginIndex(beginIndex);
      const t = scheduler.timesteps[beginIndex];
      const noise = o.watermark ? drawInitialNoise(o.watermark, n, per, generator) : generator.randn(n * per);
      const start = scheduler.addNoise(images.subarray(at * per, (at + n) * per), noise, new Array<number>(n).fill(t));
      return runReverseProcess({ denoise, scheduler, count: n, shape: this.latentShape, steps, eta, generator, start: { sample: start, beginIndex }, onStep });
    }, true, { operation: 'img2img', ...(o.watermark ? { start: 'watermark' } : {}) });
  }

  /**
   * RePaint: generate where the mask is 1, keep the image where it is 0. After each step the
   * known pixels are replaced by the original noised to the same timestep, and every `jumpLength`
   * steps the sample is noised back up and denoised again (`jumpRepeats` times), so that the
   * generated region and the kept one agree at the seam. DDIM or DDPM steps. A latent run does
   * all of this on the latent grid (see latentMask) and decodes the result: the kept part is the
   * autoencoder's reconstruction of the image, not its pixels.
   */
  async inpaint(o: InpaintOptions): Promise<ImageBatch> {
    const { images: pixels, count } = this.images(o.image, o.count, 'image');
    const pixelMask = this.mask(o.mask, count);
    const images = await this.encode(pixels, count);
    const mask = this.codec ? this.latentMask(pixelMask, count) : pixelMask;
    if (o.scheduler !== undefined && typeof o.scheduler !== 'string') throw new OptionError(`inpainting runs RePaint's resampling on ${INPAINT_SCHEDULERS.join(' or ')} steps, not a custom \`scheduler\``);
    const per = this.perLatent;
    // RePaint adds the DDPM posterior's noise at each step (eta 1, the plan's default) so that each resampling round can change the content.
    return this.batched({ ...o, count }, count, async ({ scheduler, denoise, steps, eta, generator, at, n, onStep }) =>
      repaint({
        initialNoise: o.watermark ? drawInitialNoise(o.watermark, n, per, generator) : undefined,
        scheduler: scheduler as DDIMScheduler | DDPMScheduler,
        denoise,
        image: images.subarray(at * per, (at + n) * per),
        mask: mask.subarray(at * per, (at + n) * per),
        count: n,
        steps,
        eta,
        generator,
        jumpLength: o.jumpLength,
        jumpRepeats: o.jumpRepeats ?? (o.watermark ? 1 : undefined),
        onStep,
      }),
      true,
      { operation: 'inpaint', ...(o.watermark ? { start: 'watermark' } : {}) },
    );
  }

  /**
   * A latent run's mask: on the latent grid, cell (i, j) is generated where the image's mask is
   * at least 0.5 at pixel (i f, j f) in any channel (nearest-neighbour, as diffusers' latent
   * inpainting samples it), for every latent channel.
   */
  private latentMask(mask: Float32Array, count: number): Float32Array {
    const [c, h, w] = this.imageShape;
    const [lc, lh, lw] = this.latentShape;
    const f = h / lh;
    const out = new Float32Array(count * lc * lh * lw);
    for (let k = 0; k < count; k++) {
      for (let i = 0; i < lh; i++) {
        for (let j = 0; j < lw; j++) {
          let on = false;
          for (let ch = 0; ch < c; ch++) on ||= mask[((k * c + ch) * h + i * f) * w + j * f] >= 0.5;
          if (on) for (let l = 0; l < lc; l++) out[((k * lc + l) * lh + i) * lw + j] = 1;
        }
      }
    }
    return out;
  }

  /**
   * DDIM inversion: the deterministic ODE run backwards from the image to the x_T that DDIM
   * (eta 0, the same steps, x_0 not clipped) turns back into it, with the prompt or class
   * (guidance 1 by default) of a conditional run. Returns x_T (unit variance); for a latent run,
   * the latent x_T of the image's encoding (the posterior mean).
   */
  async invert(o: InvertOptions): Promise<ImageBatch> {
    const { images: pixels, count } = this.images(o.image, o.count, 'image');
    const images = await this.encode(pixels, count);
    const per = this.perLatent;
    return this.batched({ ...o, count, guidance: o.guidance ?? 1, scheduler: 'ddim', eta: 0, clipSample: false }, count, async ({ scheduler, denoise, steps, at, n, onStep }) =>
      invertDDIM({ scheduler: scheduler as DDIMScheduler, denoise, image: images.subarray(at * per, (at + n) * per), count: n, steps, refine: o.refine, onStep }),
      false,
      { operation: 'invert' },
    );
  }

  /**
   * The model's estimate of the noise in x_t at one training timestep, eps(x_t, t), whatever the
   * run predicts (v and x_0 predictions are converted). Unguided: the condition if given, else the
   * null class or empty prompt. The building block of the synthetic-image detector. For a latent
   * run, `sample` is a scaled latent (see latentShape) and so is the result.
   */
  async predictNoise(o: PredictNoiseOptions): Promise<ImageBatch> {
    const T = this.config.schedule.numTrainTimesteps;
    if (!Number.isInteger(o.timestep) || o.timestep < 0 || o.timestep >= T) throw new Error(`timestep must be an integer in [0, ${T}), got ${o.timestep}`);
    const { images, count } = this.images(o.sample, undefined, 'sample', this.latentShape);
    const per = this.perLatent;
    const alphaBar = this.tables.alphasCumprod[o.timestep];
    return this.batched({ ...o, count, guidance: 1, steps: 1 }, count, async ({ denoise, at, n }) => {
      const x = images.subarray(at * per, (at + n) * per);
      const out = await denoise(x, o.timestep, n);
      return predictX0Eps(this.config.predictionType, out, x, alphaBar).eps;
    }, false);
  }

  /** Values per latent (per image for pixel runs). */
  private get perLatent(): number {
    return this.latentShape.reduce((a, b) => a * b, 1);
  }

  /** Scaled latents of images (the images themselves for pixel runs). */
  private async encode(images: Float32Array, count: number): Promise<Float32Array> {
    return this.codec ? this.codec.encode(images, count) : images;
  }

  /** `count` images (or latents) from one (repeated) or from a batch of exactly `count`. */
  private images(input: ImageInput, count: number | undefined, what: string, shape = this.imageShape): { images: Float32Array; count: number } {
    const per = shape.reduce((a, b) => a * b, 1);
    const data = input instanceof Float32Array ? input : input.data;
    if (!(input instanceof Float32Array)) {
      const [c, h, w] = input.shape;
      const [mc, mh, mw] = shape;
      if (c !== mc || h !== mh || w !== mw) throw new Error(`the ${what} is ${c}x${h}x${w} but the model takes ${mc}x${mh}x${mw} ${shape === this.imageShape ? 'images' : 'latents'}`);
    }
    if (data.length % per !== 0 || data.length === 0) throw new Error(`the ${what} has ${data.length} values; the model's ${shape === this.imageShape ? 'images' : 'latents'} have ${per} ([${shape.join(', ')}])`);
    const given = data.length / per;
    const n = count === undefined ? given : positiveInt(count, 'count');
    if (given === n) return { images: data, count: n };
    if (given !== 1) throw new Error(`${given} ${what}s given for count ${n}; give one (it is repeated) or ${n}`);
    const images = new Float32Array(n * per);
    for (let k = 0; k < n; k++) images.set(data, k * per);
    return { images, count: n };
  }

  /** The mask expanded to [count, C, H, W], 1 = generate; [H, W] masks apply to every channel. */
  private mask(input: Float32Array | ImageBatch, count: number): Float32Array {
    const [c, h, w] = this.imageShape;
    const data = input instanceof Float32Array ? input : input.data;
    const plane = h * w;
    let perImage: Float32Array[];
    if (!(input instanceof Float32Array) && (input.shape[1] !== h || input.shape[2] !== w)) {
      throw new Error(`the mask is ${input.shape[2]}x${input.shape[1]} but the image is ${w}x${h}`);
    }
    const expand = (m: Float32Array) => repeatPlane(m, c);
    if (data.length === plane) perImage = [expand(data)];
    else if (data.length === c * plane) perImage = [data];
    else if (data.length === count * plane) perImage = Array.from({ length: count }, (_, k) => expand(data.subarray(k * plane, (k + 1) * plane)));
    else if (data.length === count * c * plane) perImage = Array.from({ length: count }, (_, k) => data.subarray(k * c * plane, (k + 1) * c * plane));
    else throw new Error(`the mask has ${data.length} values; the image is ${w}x${h} (${plane} values per mask)`);
    const out = new Float32Array(count * c * plane);
    for (let k = 0; k < count; k++) out.set(perImage[perImage.length === 1 ? 0 : k], k * c * plane);
    for (const v of out) if (!(v >= 0 && v <= 1)) throw new Error(`mask values must lie in [0, 1] (1 = generate), got ${v}`);
    return out;
  }

  /** The condition of each image (labels or prompts) from the options, checked against the run. */
  private guidanceFor(o: SamplingOptions, count: number): Guidance {
    const kind = this.conditioning;
    const perImage = <T>(v: T | readonly T[], what: string): T[] => {
      if (!Array.isArray(v)) return new Array<T>(count).fill(v as T);
      if (v.length !== count) throw new Error(`${v.length} ${what} for ${count} images; give one, or one per image`);
      return [...(v as readonly T[])];
    };
    if (kind === 'none') {
      if (o.prompt !== undefined || o.negativePrompt !== undefined) throw new OptionError('this run is unconditional: it takes no `prompt` (a run takes prompts when trained with `text` conditioning)');
      if (o.classLabel !== undefined) throw new OptionError('this run is unconditional: it takes no `classLabel` (a run takes class labels when trained with `classConditioning`)');
      if (o.guidance !== undefined && o.guidance !== 1) throw new Error('this run is unconditional: guidance needs a class- or text-conditional run');
      return {};
    }
    const scale = o.guidance ?? 3;
    if (!(scale >= 0)) throw new Error(`guidance must be a number >= 0, got ${o.guidance}`);
    const rescale = o.guidanceRescale ?? 0;
    if (!(rescale >= 0 && rescale <= 1)) throw new Error(`guidanceRescale must be in [0, 1], got ${o.guidanceRescale}`);
    if (kind === 'class') {
      if (o.prompt !== undefined || o.negativePrompt !== undefined) throw new Error('this run is class-conditional: give a class label, not a prompt');
      const names = this.config.classNames;
      const K = this.config.model.numClasses as number;
      const labels = o.classLabel === undefined ? undefined : Int32Array.from(perImage(o.classLabel, 'class labels'), (l) => {
        const k = typeof l === 'string' && names?.includes(l) ? names.indexOf(l) : Number(l);
        if (!Number.isInteger(k) || k < 0 || k >= K) throw new Error(`class must be 0..${K - 1}${names ? ` or one of ${names.join(', ')}` : ''}, got '${String(l)}'`);
        return k;
      });
      return { labels, scale, rescale };
    }
    if (o.classLabel !== undefined) throw new Error('this run is text-conditional: give a prompt, not a class label');
    return {
      prompts: o.prompt === undefined ? undefined : perImage(o.prompt, 'prompts'),
      negativePrompts: o.negativePrompt === undefined ? undefined : perImage(o.negativePrompt, 'negative prompts'),
      scale,
      rescale,
    };
  }

  /**
   * Builds what every call shares (scheduler, guided denoiser, noise) and runs `each` over
   * batches; with `decode`, a latent run's results go through the autoencoder's decoder.
   */
  private async batched(
    o: SamplingOptions,
    count: number,
    each: (b: {
      scheduler: Scheduler;
      denoise: Denoiser;
      steps: number;
      eta: number;
      generator: NoiseGenerator;
      at: number;
      n: number;
      onStep: StepCallback;
    }) => Promise<Float32Array>,
    decode: boolean,
    /** What is sampled, for the plan's defaults and checks (planSampling). */
    request: Pick<SamplingRequest, 'operation' | 'start'> = {},
  ): Promise<ImageBatch> {
    const steps = positiveInt(o.steps ?? 50, 'steps');
    const T = this.config.schedule.numTrainTimesteps;
    if (steps > T) throw new Error(`${steps} steps exceed the run's ${T} training timesteps`);
    // A scheduler object is the caller's own; a name goes through the plan (defaults and checks).
    const custom = o.scheduler !== undefined && typeof o.scheduler !== 'string' ? o.scheduler : undefined;
    const plan = custom ? undefined : planSampling(this.config, { ...request, scheduler: o.scheduler as string | undefined, karras: o.karras, spacing: o.spacing, eta: o.eta, clipSample: o.clipSample });
    const eta = plan?.eta ?? o.eta ?? defaultEta(this.config);
    if (!(eta >= 0)) throw new OptionError(`\`eta\` must be a number >= 0, got ${o.eta}`);
    const batchSize = positiveInt(o.batchSize ?? 250, 'batchSize');
    const guidance = this.guidanceFor(o, count);
    if (o.seeds && (o.generator || o.seed !== undefined)) throw new Error('give seeds (one per image) or a seed or generator, not both');
    if (o.seeds && o.seeds.length !== count) throw new Error(`seeds: ${o.seeds.length} given for ${count} images; give one per image`);
    const shared = o.seeds ? undefined : (o.generator ?? createGenerator(o.generatorKind ?? 'torch', o.seed ?? 0));
    const makeSched = (): Scheduler => {
      if (custom || !plan) return custom as Scheduler;
      return makeScheduler(plan.scheduler, schedulerConfigOf(this.config, { clipSample: o.clipSample, timestepSpacing: plan.spacing }), { karras: plan.karras, thresholding: o.thresholding ?? defaultThresholding(this.config) });
    };
    const codec = decode ? this.codec : undefined;
    const shape = codec ? codec.imageShape : this.latentShape;
    const per = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(count * per);
    // One denoiser for all batches unless each batch has its own labels or prompts.
    const perImage = guidance.labels !== undefined || guidance.prompts !== undefined || guidance.negativePrompts !== undefined;
    const sharedDenoiser = perImage ? undefined : guidedDenoiser(this.network, guidance);
    for (let at = 0; at < count; at += batchSize) {
      const n = Math.min(batchSize, count - at);
      const denoise =
        sharedDenoiser ??
        guidedDenoiser(this.network, {
          ...guidance,
          labels: guidance.labels?.subarray(at, at + n),
          prompts: guidance.prompts?.slice(at, at + n),
          negativePrompts: guidance.negativePrompts?.slice(at, at + n),
        });
      const scheduler = makeSched();
      const generator = shared ?? perImageGenerator(o.generatorKind ?? 'torch', (o.seeds as readonly number[]).slice(at, at + n));
      const x = await each({
        scheduler,
        denoise,
        steps,
        eta,
        generator,
        at,
        n,
        onStep: (index, timestep, sample, predOriginal, total) => o.onStep?.({ index, total, timestep, sample, predOriginal, offset: at, batchCount: n }),
      });
      out.set(codec ? await codec.decode(x, n) : x, at * per);
    }
    return { data: out, count, shape };
  }
}

/** One [H, W] plane repeated over `channels` channels: a one-channel mask for a C-channel image. */
export function repeatPlane(plane: Float32Array, channels: number): Float32Array {
  const out = new Float32Array(plane.length * channels);
  for (let c = 0; c < channels; c++) out.set(plane, c * plane.length);
  return out;
}

function positiveInt(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${what} must be a positive integer, got ${v}`);
  return v;
}
