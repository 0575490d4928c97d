/**
 * Stable Diffusion-class latent models from a folder of ONNX components, in the layout that
 * Hugging Face Optimum writes (`optimum-cli export onnx --model stabilityai/sd-turbo out/`) and
 * diffusers' ONNX pipelines read:
 *
 *   model_index.json
 *   tokenizer/        vocab.json, merges.txt, ... (CLIP's tokenizer)
 *   text_encoder/     model.onnx: input_ids -> last_hidden_state
 *   unet/             model.onnx, config.json: sample, timestep, encoder_hidden_states -> out_sample
 *   vae_decoder/      model.onnx, config.json (scaling_factor): latent_sample -> sample
 *   scheduler/        scheduler_config.json
 *
 * Generation is diffusers' StableDiffusionPipeline.__call__: the prompt's CLIP states (and the
 * negative prompt's, for classifier-free guidance), x_T ~ N(0, I) in the latent space drawn as
 * torch.randn with the same seed draws it, the folder's scheduler over the U-Net's noise
 * estimates eps_u + w (eps_c - eps_u), and the VAE decoder on latents / scaling_factor.
 * img2img encodes the image with the folder's vae_encoder (latent_parameters: mean and
 * log-variance) and runs the tail of the schedule from it, as diffusers' img2img pipeline does;
 * inpaint keeps the unmasked part of the latent grid on the encoded image's noised path, or, with
 * an inpainting U-Net (9 input channels), feeds it the mask and the masked image's latents.
 * test/fixtures/tiny-sd holds a tiny model in exactly this layout and reference runs.
 *
 * Node-free: the files come through ModelFiles (a folder on disk with fromPretrained, the studio's
 * server in a browser with fromFiles).
 */
import { TorchGenerator } from '../diffusion/index.js';
import { f32 } from '../samplers/common.js';
import type { DDIMScheduler } from '../samplers/ddim.js';
import type { TimestepSpacing } from '../samplers/common.js';
import { SchedulerName, makeScheduler } from '../samplers/registry.js';
import { readSchedulerConfig, schedulerFromConfig } from '../samplers/from-config.js';
import { invertDDIM } from '../pipelines/invert.js';
import { InitialNoiseSource, StepInfo, repeatPlane } from '../pipelines/sampling-pipeline.js';
import type { Scheduler } from '../samplers/scheduler.js';
import { HuggingFaceTokenizer, TOKENIZER_FILE_NAMES } from '../text/hf-tokenizer.js';
import type { TokenizerFileName } from '../text/hf-tokenizer.js';
import { ModelFiles, readJsonObject } from '../components/model-files.js';
import type { FolderOptions } from '../components/model-folder.js';
import type { OnnxComponent } from '../components/onnx-component.js';

/** A batch of decoded images: NCHW, flattened, values in [-1, 1] (the decoder's range). */
export interface LatentImageBatch {
  data: Float32Array;
  count: number;
  /** [3, height, width] of one image. */
  shape: [number, number, number];
  /** The final latents, [count, channels, height / f, width / f]. */
  latents: Float32Array;
}

export interface LatentGenerateOptions {
  /** One prompt, or one per image. */
  prompt: string | readonly string[];
  /** Steer away from this (default: the empty prompt), one for all or one per image. */
  negativePrompt?: string | readonly string[];
  /** Classifier-free guidance weight w (default 7.5; at most 1: no guidance, one U-Net pass per step). */
  guidance?: number;
  /** Denoising steps (default 50). */
  steps?: number;
  /** Seed of x_T, drawn as torch.Generator().manual_seed(seed) would (default 0). */
  seed?: number;
  /** Image size in pixels, multiples of the autoencoder's factor (default: the U-Net's sample_size times it). */
  width?: number;
  height?: number;
  /** Another scheduler than the folder's (e.g. schedulerFromConfig(...) with overrides). */
  scheduler?: Scheduler;
  /** Start from these latents x_T (unit variance, [count, 4, h, w]; scaled by the scheduler's initial sigma) instead of drawing them: an inverted image's. */
  latents?: Float32Array;
  /**
   * Draw x_T from this source instead of plain Gaussian noise, with the seed's generator: a
   * watermark (`gaussianShading(key, payload)`, which `detectWatermark` finds again through the
   * encoder and DDIM inversion). Needs a scheduler without fresh noise per step (not Euler
   * ancestral or DDPM, whose noise washes the mark out). Not with `latents`.
   */
  watermark?: InitialNoiseSource;
  /** After each step: its index, the number of steps and the timestep (the fields of SamplingPipeline's StepInfo). */
  onStep?: (info: LatentStepInfo) => void | Promise<void>;
}

/** What `onStep` is told: the same names as SamplingPipeline's StepInfo, with the latents. */
export type LatentStepInfo = Pick<StepInfo, 'index' | 'total' | 'timestep'> & {
  /** The batch's latents after the step. */
  latents: Float32Array;
};

export interface LatentInvertOptions {
  /** The images to invert: NCHW in [-1, 1], sides multiples of the autoencoder's factor. */
  image: LatentImg2ImgOptions['image'];
  /** The prompt to invert with (default empty), one for all images or one per image. */
  prompt?: string | readonly string[];
  negativePrompt?: string | readonly string[];
  /** Guidance weight during inversion (default 1: none, the usual choice; inversion with guidance drifts). */
  guidance?: number;
  /** DDIM steps (default 50). */
  steps?: number;
  /** Fixed-point refinements per step (default 0; see invertDDIM). */
  refine?: number;
  onStep?: (info: LatentStepInfo) => void | Promise<void>;
}

export interface LatentImg2ImgOptions extends Omit<LatentGenerateOptions, 'width' | 'height'> {
  /** The input images: NCHW in [-1, 1] with sides that are multiples of the autoencoder's factor; one image for all prompts, or one per prompt. */
  image: { data: Float32Array; count: number; shape: readonly [number, number, number] };
  /**
   * How much to change, in [0, 1], as diffusers defines it (default 0.8): the encoded image is
   * noised to the timestep int(steps * strength) steps from the end of the schedule and denoised
   * from there.
   */
  strength?: number;
}

export interface LatentInpaintOptions extends LatentImg2ImgOptions {
  /**
   * Where to generate: [1, H, W] at the image's size, 1 (white) = generate, 0 = keep; values are
   * rounded at 0.5, and the latent grid takes the value at the top-left pixel of each cell (as
   * diffusers' nearest-neighbour interpolation does). One mask for all images.
   */
  mask: { data: Float32Array; shape: readonly [number, number, number] };
}

/** How fromPretrained opens a folder's networks: the device, another ONNX Runtime module, the CPU memory arena. */
export type LatentPipelineOptions = FolderOptions;

/** The pipeline classes whose folders this reads (a single CLIP text encoder, a 4-channel U-Net). */
const SUPPORTED = /^(ORT|Onnx)?StableDiffusion(Img2Img|Inpaint)?Pipeline$/;

export class StableDiffusionPipeline {
  private constructor(
    /** Where the model's files are. */
    readonly files: ModelFiles,
    readonly tokenizer: HuggingFaceTokenizer,
    private readonly textEncoder: OnnxComponent,
    private readonly unet: OnnxComponent,
    private readonly vaeDecoder: OnnxComponent,
    /** The folder's scheduler_config.json, parsed. */
    readonly schedulerConfig: Record<string, unknown>,
    /** Latents are the autoencoder's output times this (vae config's scaling_factor). */
    readonly scalingFactor: number,
    /** Pixels per latent position along each side (2^(levels - 1) of the autoencoder). */
    readonly vaeScale: number,
    readonly latentChannels: number,
    /**
     * An inpainting U-Net (diffusers' StableDiffusionInpaintPipeline with in_channels 9): it reads
     * the latents, the mask on the latent grid and the masked image's latents, and only inpaints.
     */
    readonly inpainting: boolean,
    /** Default image side in pixels. */
    readonly defaultSize: number,
    /** What the folder left to defaults, said once. */
    readonly notes: string[],
  ) {}

  /** The model folder (a path, or a URL in a browser). */
  get dir(): string {
    return this.files.where();
  }

  /** Whether the U-Net or the decoder takes float16 (an `--dtype fp16` export): a WebGPU adapter then needs shader-f16. */
  get usesFloat16(): boolean {
    return this.unet.inputType('sample') === 'float16' || this.vaeDecoder.inputType('latent_sample') === 'float16';
  }

  /** The VAE encoder, opened on first use (only img2img needs it). */
  private vaeEncoder?: Promise<OnnxComponent>;

  /** Opens a model folder on disk (Node; see the file's comment); errors name the file and what is wrong. */
  static async fromPretrained(dir: string, o: LatentPipelineOptions = {}): Promise<StableDiffusionPipeline> {
    // Imported here, not above, and by a name in a variable: the folder reader needs node:fs, and
    // bundlers for a web page (the studio's, a user's) follow only literal imports, so this
    // file bundles without Node; a page opens models with fromFiles.
    const reader = '../components/model-folder.js';
    const { folderFiles } = (await import(reader)) as typeof import('../components/model-folder.js');
    if (!(await folderFiles(dir).exists())) throw new Error(`${dir}: no such model folder`);
    return StableDiffusionPipeline.fromFiles(folderFiles(dir, o));
  }

  /** Opens a model from its files, wherever they are (ModelFiles); errors name the file and what is wrong. */
  static async fromFiles(files: ModelFiles): Promise<StableDiffusionPipeline> {
    const config = await readModelConfig(files);
    const tokenizer = await readModelTokenizer(files);
    const opened: OnnxComponent[] = [];
    const open = async (name: string, inputs: string[], outputs: string[]) => {
      const c = await files.open(name, { inputs, outputs });
      opened.push(c);
      return c;
    };
    try {
      const textEncoder = await open('text_encoder', ['input_ids'], ['last_hidden_state']);
      const unet = await open('unet', ['sample', 'timestep', 'encoder_hidden_states'], ['out_sample']);
      const vaeDecoder = await open('vae_decoder', ['latent_sample'], ['sample']);
      const c = config;
      return new StableDiffusionPipeline(files, tokenizer, textEncoder, unet, vaeDecoder, c.schedulerConfig, c.scalingFactor, c.vaeScale, c.latentChannels, c.inpainting, c.defaultSize, c.notes);
    } catch (e) {
      await Promise.all(opened.map((c) => c.release()));
      throw e;
    }
  }

  /**
   * SHA-256 of the U-Net's files (unet/model.onnx and any external weights beside it, in name
   * order): which exact model this is, for content credentials.
   */
  async modelHash(): Promise<string> {
    return this.hash(['unet']);
  }

  /**
   * SHA-256 of the autoencoder's files (vae_encoder/, then vae_decoder/, as modelHash reads them):
   * what a detector calibrated on this autoencoder's reconstructions belongs to. Models that share
   * the autoencoder share it.
   */
  async autoencoderHash(): Promise<string> {
    return this.hash(['vae_encoder', 'vae_decoder']);
  }

  private hash(components: readonly string[]): Promise<string> {
    if (!this.files.hash) throw new Error(`${this.dir}: the model's files cannot be hashed here (open the folder with fromPretrained in Node)`);
    return this.files.hash(components);
  }

  /** The folder's scheduler, new (schedulers keep state between steps). */
  makeScheduler(overrides: Record<string, unknown> = {}): Scheduler {
    return schedulerFromConfig(this.schedulerConfig, this.files.where('scheduler', 'scheduler_config.json'), overrides);
  }

  /**
   * A scheduler of another kind (a `--scheduler` name) on the folder's noise schedule: its betas,
   * prediction type and steps offset, set_alpha_to_one for the classes that take it, and neither
   * clipping nor thresholding (latents are not images in [-1, 1]).
   */
  schedulerNamed(name: SchedulerName, o: { spacing?: TimestepSpacing; karras?: boolean } = {}): Scheduler {
    const { numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, predictionType, stepsOffset, setAlphaToOne } = readSchedulerConfig(this.schedulerConfig).config;
    const alphaToOne = (name === 'ddim' || name === 'pndm') && typeof setAlphaToOne === 'boolean' ? { setAlphaToOne } : {};
    const base = { numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, predictionType, stepsOffset, clipSample: false, ...alphaToOne, ...(o.spacing ? { timestepSpacing: o.spacing } : {}) };
    return makeScheduler(name, base, { karras: Boolean(o.karras), thresholding: false });
  }

  /** The text encoder's states for prompts: [n, 77, D] (padded and cut as diffusers' pipelines tokenize). */
  async encodePrompts(prompts: readonly string[]): Promise<{ states: Float32Array; dims: readonly number[] }> {
    const ids = this.tokenizer.encodeBatch(prompts);
    const out = await this.textEncoder.run({ input_ids: { data: Array.from(ids, Number), dims: [prompts.length, this.tokenizer.maxLength] } }, ['last_hidden_state']);
    const { data, dims } = out.last_hidden_state;
    if (dims.length !== 3 || dims[0] !== prompts.length || dims[1] !== this.tokenizer.maxLength) throw new Error(`${this.textEncoder.file}: last_hidden_state is ${JSON.stringify(dims)}, expected [${prompts.length}, ${this.tokenizer.maxLength}, D]`);
    return { states: data, dims };
  }

  /** Text to image (see the file's comment). */
  async generate(o: LatentGenerateOptions): Promise<LatentImageBatch> {
    this.refuseInpaintingUnet('text to image');
    const { prompts, negatives, guidance, steps } = this.checkCommon(o);
    const width = o.width ?? this.defaultSize;
    const height = o.height ?? this.defaultSize;
    this.checkSize(width, height);
    const h = height / this.vaeScale;
    const w = width / this.vaeScale;
    const n = prompts.length;
    const scheduler = o.scheduler ?? this.makeScheduler();
    scheduler.setTimesteps(steps);
    const generator = new TorchGenerator(o.seed ?? 0);
    const size = n * this.latentChannels * h * w;
    if (o.latents && o.latents.length !== size) throw new Error(`generate: latents has ${o.latents.length} values, expected ${size} ([${n}, ${this.latentChannels}, ${h}, ${w}])`);
    if (o.latents && o.watermark) throw new Error('generate: give latents or watermark, not both (a watermark draws the latents)');
    let latents = o.latents ? o.latents.slice() : o.watermark ? o.watermark.draw(n, size / n, generator) : generator.randn(size);
    if (scheduler.initNoiseSigma !== 1) latents = latents.map((v) => f32(v * scheduler.initNoiseSigma));
    latents = await this.denoise({ latents, prompts, negatives, guidance, scheduler, generator, beginIndex: 0, h, w, onStep: o.onStep });
    return { data: await this.decode(latents, n, h, w), count: n, shape: [3, height, width], latents };
  }

  /**
   * Image to image (SDEdit in latent space, diffusers' StableDiffusionImg2ImgPipeline): the
   * encoder's posterior sampled (mean + std z) and scaled, noised to the starting timestep with the
   * scheduler's forward process, then denoised as in generate. The seed's stream draws z first,
   * then the noise, as diffusers' generator does.
   */
  async img2img(o: LatentImg2ImgOptions): Promise<LatentImageBatch> {
    this.refuseInpaintingUnet('img2img');
    const e = await this.startEdit(o, 0.8);
    const { n, h, w, scheduler, beginIndex } = e;
    const start = scheduler.addNoise(e.imageLatents as Float32Array, e.noise, new Array<number>(n).fill(scheduler.timesteps[beginIndex]));
    const latents = await this.denoise({ ...e, latents: start, onStep: o.onStep });
    return { data: await this.decode(latents, n, h, w), count: n, shape: [3, e.height, e.width], latents };
  }

  /**
   * What img2img and inpaint share: the checked options, the scheduler started at the step that
   * `strength` selects (diffusers' get_timesteps: the last int(steps x strength) steps), the
   * image's latents (one image for several prompts encoded once and repeated, as diffusers does)
   * and the noise, drawn in that order from the seed's stream.
   */
  private async startEdit(o: LatentImg2ImgOptions, defaultStrength: number, encodeImage: (strength: number) => boolean = () => true) {
    const { prompts, negatives, guidance, steps } = this.checkCommon(o);
    const strength = o.strength ?? defaultStrength;
    if (!(strength >= 0 && strength <= 1)) throw new Error(`strength must be in [0, 1], got ${o.strength}`);
    const { height, width } = this.checkImage(o.image, prompts.length);
    const n = prompts.length;
    const scheduler = o.scheduler ?? this.makeScheduler();
    scheduler.setTimesteps(steps);
    const kept = Math.min(Math.floor(steps * strength), steps);
    if (kept < 1) throw new Error(`strength ${strength} with ${steps} steps leaves no step to run (strength x steps must be at least 1)`);
    const beginIndex = (steps - kept) * scheduler.order;
    scheduler.setBeginIndex(beginIndex);
    const generator = new TorchGenerator(o.seed ?? 0);
    // An inpainting U-Net starting from pure noise never reads the image's latents: diffusers then
    // does not encode the image, and the seed's stream starts with the noise.
    const once = encodeImage(strength) ? await this.encode(o.image.data, o.image.count, height, width, generator) : undefined;
    const imageLatents = once && (o.image.count === n ? once : repeatPlane(once, n));
    const noise = generator.randn(n * this.latentChannels * (height / this.vaeScale) * (width / this.vaeScale));
    return { prompts, negatives, guidance, strength, height, width, n, h: height / this.vaeScale, w: width / this.vaeScale, scheduler, beginIndex, generator, imageLatents, noise };
  }

  /**
   * DDIM inversion through the encoder: the image's latents (the encoder posterior's mean, so that
   * inversion is deterministic) run from x_0 towards x_T by the inverted DDIM update
   * (invertDDIM), with the U-Net conditioned on `prompt` (default empty). Generating from the
   * result with DDIM (eta 0), the same steps, prompt and guidance returns close to the image's
   * latents. Returns x_T as `{ latents, count, shape: [4, h, w] }`.
   */
  async invert(o: LatentInvertOptions): Promise<{ latents: Float32Array; count: number; shape: [number, number, number] }> {
    this.refuseInpaintingUnet('inversion');
    const count = o.image.count;
    const prompt = o.prompt ?? '';
    const prompts = typeof prompt === 'string' ? new Array<string>(count).fill(prompt) : [...prompt];
    if (prompts.length !== count) throw new Error(`invert: ${prompts.length} prompts for ${count} images`);
    const { negatives, guidance, steps } = this.checkCommon({ prompt: prompts, negativePrompt: o.negativePrompt, guidance: o.guidance ?? 1, steps: o.steps });
    const { height, width } = this.checkImage(o.image, count);
    const h = height / this.vaeScale;
    const w = width / this.vaeScale;
    const latents0 = await this.encode(o.image.data, count, height, width, undefined);
    const scheduler = this.schedulerNamed('ddim') as DDIMScheduler;
    const cfg = guidance > 1;
    const { states, dims } = await this.encodePrompts(cfg ? [...negatives, ...prompts] : prompts);
    const latents = await invertDDIM({
      scheduler,
      image: latents0,
      count,
      steps,
      refine: o.refine,
      denoise: (x, t) => this.predict(x, t, states, dims, count, guidance, h, w),
      onStep: (index, timestep, x, _x0, total) => o.onStep?.({ index, total, timestep, latents: x }),
    });
    return { latents, count, shape: [this.latentChannels, h, w] };
  }

  /**
   * Inpainting, as diffusers' StableDiffusionInpaintPipeline does it. The mask is binarised at 0.5
   * and taken on the latent grid at each cell's top-left pixel (nearest-neighbour downsampling).
   * The reverse process starts from noise (or from the encoded image noised to the step `strength`
   * selects; default 1, pure noise).
   * - An ordinary (4-channel) U-Net: after every step the kept part of the latent grid is replaced
   *   by the encoded image noised to the next step's level (the image itself after the last).
   * - An inpainting U-Net (9 channels): every step's input is the latents, the mask and the latents
   *   of the masked image (the image with the part to generate set to 0, mid grey), side by side
   *   in channels; nothing is replaced.
   * The seed's stream is drawn as diffusers draws it: the image's posterior (not drawn by an
   * inpainting U-Net at strength 1), the noise, then the masked image's posterior.
   */
  async inpaint(o: LatentInpaintOptions): Promise<LatentImageBatch> {
    const [, height, width] = o.image.shape;
    const [mc, mh, mw] = o.mask.shape;
    if (mc !== 1 || mh !== height || mw !== width || o.mask.data.length !== height * width) throw new Error(`inpaint: the mask must be [1, ${height}, ${width}] (the image's size), got ${JSON.stringify(o.mask.shape)}`);
    const e = await this.startEdit(o, 1, (strength) => !this.inpainting || strength < 1);
    const { n, h, w, strength, scheduler, beginIndex, generator, imageLatents, noise } = e;
    const timesteps = scheduler.timesteps;
    const start = strength === 1 ? noise.map((v) => f32(v * scheduler.initNoiseSigma)) : scheduler.addNoise(imageLatents as Float32Array, noise, new Array<number>(n).fill(timesteps[beginIndex]));
    // The masked image: the part to generate set to 0; its latents are drawn from the same stream
    // (an ordinary U-Net never reads them, but diffusers draws them all the same).
    const plane = height * width;
    const masked = o.image.data.map((v, i) => (o.mask.data[i % plane] >= 0.5 ? 0 : v));
    const maskedOnce = await this.encode(masked, o.image.count, height, width, generator);
    const cell = new Float32Array(h * w);
    for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) cell[i * w + j] = o.mask.data[i * this.vaeScale * width + j * this.vaeScale] >= 0.5 ? 1 : 0;
    const per = this.latentChannels * h * w;
    if (this.inpainting) {
      // Per image: the mask (1 channel), then the masked image's latents (4).
      const maskedLatents = o.image.count === n ? maskedOnce : repeatPlane(maskedOnce, n);
      const extra = new Float32Array(n * (h * w + per));
      for (let k = 0; k < n; k++) {
        extra.set(cell, k * (h * w + per));
        extra.set(maskedLatents.subarray(k * per, (k + 1) * per), k * (h * w + per) + h * w);
      }
      const latents = await this.denoise({ ...e, latents: start, onStep: o.onStep, extraChannels: extra });
      return { data: await this.decode(latents, n, h, w), count: n, shape: [3, height, width], latents };
    }
    const kept = imageLatents as Float32Array;
    const latents = await this.denoise({
      ...e,
      latents: start,
      onStep: o.onStep,
      afterStep: (x, k) => {
        const next = beginIndex + k + 1 < timesteps.length ? timesteps[beginIndex + k + 1] : undefined;
        const proper = next === undefined ? kept : scheduler.addNoise(kept, noise, new Array<number>(n).fill(next));
        return x.map((v, i) => {
          const m = cell[i % per % (h * w)];
          return f32(f32(f32(1 - m) * proper[i]) + f32(m * v));
        });
      },
    });
    return { data: await this.decode(latents, n, h, w), count: n, shape: [3, height, width], latents };
  }

  /**
   * The VAE encoder's latents of images [n, 3, H, W] in [-1, 1]: a draw from its posterior,
   * mean + exp(logvar / 2) z with logvar clamped to [-30, 20] (diffusers' DiagonalGaussianDistribution),
   * times scaling_factor; without a generator, the mean times scaling_factor.
   */
  async encode(pixels: Float32Array, n: number, height: number, width: number, generator: TorchGenerator | undefined): Promise<Float32Array> {
    this.vaeEncoder ??= this.files.open('vae_encoder', { inputs: ['sample'], outputs: ['latent_parameters'] }).catch((e: Error) => {
      this.vaeEncoder = undefined;
      throw new Error(`${e.message} (img2img, inversion and the detector need the folder's vae_encoder)`);
    });
    const encoder = await this.vaeEncoder;
    const out = await encoder.run({ sample: { data: pixels, dims: [n, 3, height, width] } }, ['latent_parameters']);
    const h = height / this.vaeScale;
    const w = width / this.vaeScale;
    const C = this.latentChannels;
    const hw = h * w;
    if (out.latent_parameters.data.length !== n * 2 * C * hw) throw new Error(`${encoder.file}: latent_parameters has ${out.latent_parameters.data.length} values, expected ${n * 2 * C * hw} ([${n}, ${2 * C}, ${h}, ${w}])`);
    const params = out.latent_parameters.data;
    // Without a generator, the posterior's mean.
    const z = generator ? generator.randn(n * C * hw) : new Float32Array(n * C * hw);
    const latents = new Float32Array(n * C * hw);
    const s = f32(this.scalingFactor);
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < C * hw; i++) {
        const mean = params[k * 2 * C * hw + i];
        const logvar = Math.min(20, Math.max(-30, params[k * 2 * C * hw + C * hw + i]));
        const std = f32(Math.exp(f32(0.5 * logvar)));
        latents[k * C * hw + i] = f32(s * f32(mean + f32(std * z[k * C * hw + i])));
      }
    }
    return latents;
  }

  /** The reverse process from `latents` at timesteps[beginIndex], with classifier-free guidance when w > 1. */
  private async denoise(o: {
    latents: Float32Array;
    prompts: string[];
    negatives: string[];
    guidance: number;
    scheduler: Scheduler;
    generator: TorchGenerator;
    beginIndex: number;
    h: number;
    w: number;
    onStep?: LatentGenerateOptions['onStep'];
    /** After step k (0-based), to change the latents before the next: inpainting writes the kept part back. */
    afterStep?: (latents: Float32Array, k: number) => Float32Array;
    /** Channels an inpainting U-Net reads after the latents, per image (see predict). */
    extraChannels?: Float32Array;
  }): Promise<Float32Array> {
    const { prompts, negatives, guidance, scheduler, generator, h, w } = o;
    const n = prompts.length;
    const cfg = guidance > 1;
    // diffusers' order: the negative prompts' states first, then the prompts'.
    const { states, dims } = await this.encodePrompts(cfg ? [...negatives, ...prompts] : prompts);
    const timesteps = scheduler.timesteps.slice(o.beginIndex);
    let latents = o.latents;
    for (let i = 0; i < timesteps.length; i++) {
      const t = timesteps[i];
      const eps = await this.predict(scheduler.scaleModelInput(latents, t), t, states, dims, n, guidance, h, w, o.extraChannels);
      latents = scheduler.step(eps, t, latents, { generator, batch: n }).prevSample;
      if (o.afterStep) latents = o.afterStep(latents, i);
      await o.onStep?.({ index: i, total: timesteps.length, timestep: t, latents });
    }
    return latents;
  }

  /**
   * The U-Net's output for latents x (already scaled for the model) at timestep t, with
   * classifier-free guidance when w > 1: the batch doubled (the negative prompts' states first),
   * eps_u + w (eps_c - eps_u) in float32 as PyTorch computes it.
   */
  private async predict(x: Float32Array, t: number, states: Float32Array, dims: readonly number[], n: number, guidance: number, h: number, w: number, extra?: Float32Array): Promise<Float32Array> {
    const per = this.latentChannels * h * w;
    const cfg = guidance > 1;
    const batch = cfg ? 2 * n : n;
    // Image k's channels: its latents, then (an inpainting U-Net) its extra channels; the batch
    // doubled for guidance, as torch.cat([latents] * 2) and the doubled mask and masked latents are.
    const extraPer = extra ? extra.length / n : 0;
    const input = new Float32Array(batch * (per + extraPer));
    for (let b = 0; b < batch; b++) {
      const k = b % n;
      input.set(x.subarray(k * per, (k + 1) * per), b * (per + extraPer));
      if (extra) input.set(extra.subarray(k * extraPer, (k + 1) * extraPer), b * (per + extraPer) + per);
    }
    const out = await this.unet.run(
      {
        sample: { data: input, dims: [batch, (per + extraPer) / (h * w), h, w] },
        timestep: { data: [t], dims: [] },
        encoder_hidden_states: { data: states, dims: [...dims] },
      },
      ['out_sample'],
    );
    const raw = out.out_sample.data;
    if (raw.length !== batch * per) throw new Error(`${this.unet.file}: out_sample has ${raw.length} values, expected ${batch * per}`);
    if (!cfg) return raw;
    const g = f32(guidance);
    const eps = new Float32Array(n * per);
    for (let k = 0; k < n * per; k++) {
      const u = raw[k];
      eps[k] = f32(u + f32(g * f32(raw[n * per + k] - u)));
    }
    return eps;
  }

  private refuseInpaintingUnet(what: string): void {
    if (this.inpainting) throw new Error(`${this.files.where('unet')}: an inpainting U-Net (${2 * this.latentChannels + 1} input channels) only inpaints; ${what} needs a folder with an ordinary ${this.latentChannels}-channel U-Net`);
  }

  /** The prompts, negative prompts, guidance and steps of a call, checked. */
  private checkCommon(o: LatentGenerateOptions): { prompts: string[]; negatives: string[]; guidance: number; steps: number } {
    const prompts = typeof o.prompt === 'string' ? [o.prompt] : [...o.prompt];
    const n = prompts.length;
    if (n < 1) throw new Error('generate: give at least one prompt');
    const negatives = o.negativePrompt === undefined ? prompts.map(() => '') : typeof o.negativePrompt === 'string' ? prompts.map(() => o.negativePrompt as string) : [...o.negativePrompt];
    if (negatives.length !== n) throw new Error(`generate: ${negatives.length} negative prompts for ${n} prompts`);
    const guidance = o.guidance ?? 7.5;
    if (!(guidance >= 0)) throw new Error(`guidance must be a number >= 0, got ${o.guidance}`);
    const steps = o.steps ?? 50;
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps must be a whole number >= 1, got ${o.steps}`);
    return { prompts, negatives, guidance, steps };
  }

  /** Input images: 3 channels, sides multiples of the autoencoder's factor, one image or one per prompt. */
  private checkImage(img: LatentImg2ImgOptions['image'], prompts: number): { height: number; width: number } {
    const [c, height, width] = img.shape;
    if (c !== 3) throw new Error(`images with 3 channels only, got ${c}`);
    this.checkSize(width, height);
    if (img.data.length !== img.count * 3 * height * width) throw new Error(`${img.data.length} values for ${img.count} image(s) of ${JSON.stringify(img.shape)}`);
    if (img.count !== 1 && img.count !== prompts) throw new Error(`${img.count} images for ${prompts} prompts (give one image, or one per prompt)`);
    return { height, width };
  }

  private checkSize(width: number, height: number): void {
    for (const [name, v] of [['width', width], ['height', height]] as const) {
      if (!Number.isInteger(v) || v < this.vaeScale || v % this.vaeScale) throw new Error(`${name} must be a positive multiple of ${this.vaeScale} pixels, got ${v}`);
    }
  }

  /** The VAE decoder on latents / scaling_factor: images [n, 3, H, W] in [-1, 1]. */
  async decode(latents: Float32Array, n: number, h: number, w: number): Promise<Float32Array> {
    const inv = latents.map((v) => f32(v / this.scalingFactor));
    const out = await this.vaeDecoder.run({ latent_sample: { data: inv, dims: [n, this.latentChannels, h, w] } }, ['sample']);
    const want = n * 3 * h * this.vaeScale * w * this.vaeScale;
    if (out.sample.data.length !== want) throw new Error(`${this.vaeDecoder.file}: sample has ${out.sample.data.length} values, expected ${want} ([${n}, 3, ${h * this.vaeScale}, ${w * this.vaeScale}])`);
    return out.sample.data;
  }

  async release(): Promise<void> {
    const encoder = await this.vaeEncoder?.catch(() => undefined);
    await Promise.all([this.textEncoder.release(), this.unet.release(), this.vaeDecoder.release(), encoder?.release()]);
  }
}

/** What a model folder's configs say, checked: everything fromFiles needs before opening a network. */
export interface LatentModelConfig {
  schedulerConfig: Record<string, unknown>;
  scalingFactor: number;
  vaeScale: number;
  latentChannels: number;
  inpainting: boolean;
  /** Default image side in pixels. */
  defaultSize: number;
  /** What the folder left to defaults. */
  notes: string[];
}

/**
 * Reads and checks a model folder's configs (model_index.json's pipeline class, the U-Net's and
 * the autoencoder's config.json, the scheduler's config) without opening a network: the studio's
 * server checks a folder with it before serving the folder to the page.
 */
export async function readModelConfig(files: ModelFiles): Promise<LatentModelConfig> {
  const at = (...parts: string[]) => files.where(...parts);
  const index = await readJsonObject(files, ['model_index.json']);
  const cls = String(index._class_name ?? '');
  // A name from a file from elsewhere, quoted unless it is a plain identifier (no control characters reach the terminal).
  const named = /^\w+$/.test(cls) ? cls : JSON.stringify(cls);
  if (/XL/.test(cls)) throw new Error(`${at('model_index.json')}: ${named} (two text encoders, extra U-Net inputs) is not supported yet; Stable Diffusion 1.x, 2.x and SD-Turbo folders are`);
  if (!SUPPORTED.test(cls)) throw new Error(`${at('model_index.json')}: a ${cls ? named : 'pipeline without _class_name'}; Stable Diffusion pipelines only (StableDiffusionPipeline and its ONNX forms)`);
  if (!(await files.exists('unet', 'model.onnx'))) {
    let torchWeights = false;
    for (const f of ['diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin']) torchWeights ||= await files.exists('unet', f);
    throw new Error(`${at('unet', 'model.onnx')}: no such file${torchWeights ? ' (this is a PyTorch folder: export it to ONNX first, e.g. optimum-cli export onnx --model DIR out/)' : ''}`);
  }
  const notes: string[] = [];
  const unetConfig = (await readJsonObject(files, ['unet', 'config.json'], 'optional')) ?? {};
  const vaeConfig = (await readJsonObject(files, ['vae_decoder', 'config.json'], 'optional')) ?? {};
  let scalingFactor = vaeConfig.scaling_factor;
  if (typeof scalingFactor !== 'number' || !(scalingFactor > 0)) {
    scalingFactor = 0.18215;
    notes.push(`${at('vae_decoder', 'config.json')} gives no scaling_factor; using Stable Diffusion 1.x/2.x's 0.18215`);
  }
  const blocks = Array.isArray(vaeConfig.block_out_channels) ? vaeConfig.block_out_channels.length : 4;
  const vaeScale = 2 ** (blocks - 1);
  const latentChannels = typeof vaeConfig.latent_channels === 'number' ? vaeConfig.latent_channels : 4;
  const unetChannels = typeof unetConfig.in_channels === 'number' ? unetConfig.in_channels : latentChannels;
  // An inpainting U-Net reads the latents, the mask (1 channel) and the masked image's latents.
  const inpainting = unetChannels === 2 * latentChannels + 1;
  if (unetChannels !== latentChannels && !inpainting) throw new Error(`${at('unet', 'config.json')}: in_channels ${unetChannels}; the autoencoder's ${latentChannels} latent channels need a U-Net of ${latentChannels} (or ${2 * latentChannels + 1} for inpainting)`);
  const sampleSize = typeof unetConfig.sample_size === 'number' ? unetConfig.sample_size : 64;
  const schedulerConfig = await readJsonObject(files, ['scheduler', 'scheduler_config.json']);
  readSchedulerConfig(schedulerConfig, at('scheduler', 'scheduler_config.json'));
  return { schedulerConfig, scalingFactor: scalingFactor as number, vaeScale, latentChannels, inpainting, defaultSize: sampleSize * vaeScale, notes };
}

/** The folder's tokenizer/ (CLIP's, 77 tokens per prompt). */
export async function readModelTokenizer(files: ModelFiles): Promise<HuggingFaceTokenizer> {
  const texts: Partial<Record<TokenizerFileName, string>> = {};
  for (const name of TOKENIZER_FILE_NAMES) {
    const text = await files.readText('tokenizer', name);
    if (text !== undefined) texts[name] = text;
  }
  return HuggingFaceTokenizer.fromTexts(texts, (name) => files.where('tokenizer', name), 77);
}
