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
 * log-variance) and runs the tail of the schedule from it, as diffusers' img2img pipeline does.
 * test/fixtures/tiny-sd holds a tiny model in exactly this layout and reference runs.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { TorchGenerator } from '../diffusion/index.js';
import type { Device, OrtModule } from '../engine/index.js';
import { f32 } from '../samplers/common.js';
import { parsePythonJson, readSchedulerConfig, schedulerFromConfig } from '../samplers/from-config.js';
import type { Scheduler } from '../samplers/scheduler.js';
import { HuggingFaceTokenizer } from '../text/hf-tokenizer.js';
import { OnnxComponent } from './onnx-component.js';

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
  /** After each step: its index, the number of steps, the timestep. */
  onStep?: (i: number, total: number, t: number) => void | Promise<void>;
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

export interface LatentPipelineOptions {
  device?: Device;
  ort?: OrtModule;
}

/** The pipeline classes whose folders this reads (a single CLIP text encoder, a 4-channel U-Net). */
const SUPPORTED = /^(ORT|Onnx)?StableDiffusion(Img2Img|Inpaint)?Pipeline$/;

const readJson = (file: string): Record<string, unknown> => {
  if (!existsSync(file)) throw new Error(`${file}: no such file`);
  const v = parsePythonJson(readFileSync(file, 'utf8'), file);
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: not a JSON object`);
  return v as Record<string, unknown>;
};

export class StableDiffusionPipeline {
  private constructor(
    /** The model folder. */
    readonly dir: string,
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
    /** Default image side in pixels. */
    readonly defaultSize: number,
    /** What the folder left to defaults, said once. */
    readonly notes: string[],
    private readonly openOptions: LatentPipelineOptions,
  ) {}

  /** The VAE encoder, opened on first use (only img2img needs it). */
  private vaeEncoder?: Promise<OnnxComponent>;

  /** Opens a model folder (see the file's comment); errors name the file and what is wrong. */
  static async fromPretrained(dir: string, o: LatentPipelineOptions = {}): Promise<StableDiffusionPipeline> {
    const at = (...p: string[]) => path.join(dir, ...p);
    if (!existsSync(dir)) throw new Error(`${dir}: no such model folder`);
    const index = readJson(at('model_index.json'));
    const cls = String(index._class_name ?? '');
    if (/XL/.test(cls)) throw new Error(`${at('model_index.json')}: ${cls} (two text encoders, extra U-Net inputs) is not supported yet; Stable Diffusion 1.x, 2.x and SD-Turbo folders are`);
    if (!SUPPORTED.test(cls)) throw new Error(`${at('model_index.json')}: a ${cls || 'pipeline without _class_name'}; Stable Diffusion pipelines only (StableDiffusionPipeline and its ONNX forms)`);
    if (!existsSync(at('unet', 'model.onnx'))) {
      const torchWeights = ['diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin'].some((f) => existsSync(at('unet', f)));
      throw new Error(`${at('unet', 'model.onnx')}: no such file${torchWeights ? ' (this is a PyTorch folder: export it to ONNX first, e.g. optimum-cli export onnx --model DIR out/)' : ''}`);
    }
    const notes: string[] = [];
    const unetConfig = existsSync(at('unet', 'config.json')) ? readJson(at('unet', 'config.json')) : {};
    const vaeConfig = existsSync(at('vae_decoder', 'config.json')) ? readJson(at('vae_decoder', 'config.json')) : {};
    let scalingFactor = vaeConfig.scaling_factor;
    if (typeof scalingFactor !== 'number' || !(scalingFactor > 0)) {
      scalingFactor = 0.18215;
      notes.push(`${at('vae_decoder', 'config.json')} gives no scaling_factor; using Stable Diffusion 1.x/2.x's 0.18215`);
    }
    const blocks = Array.isArray(vaeConfig.block_out_channels) ? vaeConfig.block_out_channels.length : 4;
    const vaeScale = 2 ** (blocks - 1);
    const latentChannels = typeof unetConfig.in_channels === 'number' ? unetConfig.in_channels : 4;
    if (latentChannels !== 4) throw new Error(`${at('unet', 'config.json')}: in_channels ${latentChannels}; text-to-image needs a 4-channel U-Net (an inpainting U-Net takes 9)`);
    const sampleSize = typeof unetConfig.sample_size === 'number' ? unetConfig.sample_size : 64;
    const schedulerConfig = readJson(at('scheduler', 'scheduler_config.json'));
    readSchedulerConfig(schedulerConfig, at('scheduler', 'scheduler_config.json'));
    const tokenizer = HuggingFaceTokenizer.fromFolder(at('tokenizer'), 77);
    const opened: OnnxComponent[] = [];
    const open = async (name: string, inputs: string[], outputs: string[]) => {
      const c = await OnnxComponent.open(at(name, 'model.onnx'), { inputs, outputs }, o);
      opened.push(c);
      return c;
    };
    try {
      const textEncoder = await open('text_encoder', ['input_ids'], ['last_hidden_state']);
      const unet = await open('unet', ['sample', 'timestep', 'encoder_hidden_states'], ['out_sample']);
      const vaeDecoder = await open('vae_decoder', ['latent_sample'], ['sample']);
      return new StableDiffusionPipeline(dir, tokenizer, textEncoder, unet, vaeDecoder, schedulerConfig, scalingFactor as number, vaeScale, latentChannels, sampleSize * vaeScale, notes, o);
    } catch (e) {
      await Promise.all(opened.map((c) => c.release()));
      throw e;
    }
  }

  /** The folder's scheduler, new (schedulers keep state between steps). */
  makeScheduler(overrides: Record<string, unknown> = {}): Scheduler {
    return schedulerFromConfig(this.schedulerConfig, path.join(this.dir, 'scheduler', 'scheduler_config.json'), overrides);
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
    let latents = generator.randn(n * this.latentChannels * h * w);
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
    const { prompts, negatives, guidance, steps } = this.checkCommon(o);
    const strength = o.strength ?? 0.8;
    if (!(strength >= 0 && strength <= 1)) throw new Error(`strength must be in [0, 1], got ${o.strength}`);
    const img = o.image;
    const [c, height, width] = img.shape;
    if (c !== 3) throw new Error(`img2img: images with 3 channels only, got ${c}`);
    this.checkSize(width, height);
    const n = prompts.length;
    const per = 3 * height * width;
    if (img.data.length !== img.count * per) throw new Error(`img2img: ${img.data.length} values for ${img.count} image(s) of ${JSON.stringify(img.shape)}`);
    if (img.count !== 1 && img.count !== n) throw new Error(`img2img: ${img.count} images for ${n} prompts (give one image, or one per prompt)`);
    const h = height / this.vaeScale;
    const w = width / this.vaeScale;
    const scheduler = o.scheduler ?? this.makeScheduler();
    scheduler.setTimesteps(steps);
    // diffusers' get_timesteps: run the last int(steps * strength) steps.
    const kept = Math.min(Math.floor(steps * strength), steps);
    if (kept < 1) throw new Error(`strength ${strength} with ${steps} steps leaves no step to run (strength x steps must be at least 1)`);
    const beginIndex = (steps - kept) * scheduler.order;
    scheduler.setBeginIndex(beginIndex);
    const generator = new TorchGenerator(o.seed ?? 0);
    // One image for several prompts is encoded once and its latents repeated, as diffusers does.
    const once = await this.encode(img.data, img.count, height, width, generator);
    const encoded = img.count === n ? once : repeat(once, n);
    const noise = generator.randn(encoded.length);
    const t = scheduler.timesteps[beginIndex];
    const start = scheduler.addNoise(encoded, noise, new Array<number>(n).fill(t));
    const latents = await this.denoise({ latents: start, prompts, negatives, guidance, scheduler, generator, beginIndex, h, w, onStep: o.onStep });
    return { data: await this.decode(latents, n, h, w), count: n, shape: [3, height, width], latents };
  }

  /**
   * The VAE encoder's latents of images [n, 3, H, W] in [-1, 1]: a draw from its posterior,
   * mean + exp(logvar / 2) z with logvar clamped to [-30, 20] (diffusers' DiagonalGaussianDistribution),
   * times scaling_factor.
   */
  async encode(pixels: Float32Array, n: number, height: number, width: number, generator: TorchGenerator): Promise<Float32Array> {
    this.vaeEncoder ??= OnnxComponent.open(path.join(this.dir, 'vae_encoder', 'model.onnx'), { inputs: ['sample'], outputs: ['latent_parameters'] }, this.openOptions).catch((e: Error) => {
      this.vaeEncoder = undefined;
      throw new Error(`${e.message} (img2img needs the folder's vae_encoder)`);
    });
    const encoder = await this.vaeEncoder;
    const out = await encoder.run({ sample: { data: pixels, dims: [n, 3, height, width] } }, ['latent_parameters']);
    const h = height / this.vaeScale;
    const w = width / this.vaeScale;
    const C = this.latentChannels;
    const hw = h * w;
    if (out.latent_parameters.data.length !== n * 2 * C * hw) throw new Error(`${encoder.file}: latent_parameters has ${out.latent_parameters.data.length} values, expected ${n * 2 * C * hw} ([${n}, ${2 * C}, ${h}, ${w}])`);
    const params = out.latent_parameters.data;
    const z = generator.randn(n * C * hw);
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
  }): Promise<Float32Array> {
    const { prompts, negatives, guidance, scheduler, generator, h, w } = o;
    const n = prompts.length;
    const per = this.latentChannels * h * w;
    const cfg = guidance > 1;
    // diffusers' order: the negative prompts' states first, then the prompts'.
    const { states, dims } = await this.encodePrompts(cfg ? [...negatives, ...prompts] : prompts);
    const timesteps = scheduler.timesteps.slice(o.beginIndex);
    let latents = o.latents;
    for (let i = 0; i < timesteps.length; i++) {
      const t = timesteps[i];
      const scaled = scheduler.scaleModelInput(latents, t);
      let input = scaled;
      if (cfg) {
        input = new Float32Array(2 * n * per);
        input.set(scaled, 0);
        input.set(scaled, n * per);
      }
      const out = await this.unet.run(
        {
          sample: { data: input, dims: [cfg ? 2 * n : n, this.latentChannels, h, w] },
          timestep: { data: [t], dims: [] },
          encoder_hidden_states: { data: states, dims: [...dims] },
        },
        ['out_sample'],
      );
      const raw = out.out_sample.data;
      if (raw.length !== input.length) throw new Error(`${this.unet.file}: out_sample has ${raw.length} values, expected ${input.length}`);
      let eps = raw;
      if (cfg) {
        // eps_u + w (eps_c - eps_u), in float32 as PyTorch computes it.
        const g = f32(guidance);
        eps = new Float32Array(n * per);
        for (let k = 0; k < n * per; k++) {
          const u = raw[k];
          eps[k] = f32(u + f32(g * f32(raw[n * per + k] - u)));
        }
      }
      latents = scheduler.step(eps, t, latents, { generator, batch: n }).prevSample;
      await o.onStep?.(i, timesteps.length, t);
    }
    return latents;
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

/** `data` (one image's values) repeated `n` times. */
function repeat(data: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * data.length);
  for (let k = 0; k < n; k++) out.set(data, k * data.length);
  return out;
}
