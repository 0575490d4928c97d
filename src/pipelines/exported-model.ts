/**
 * A Diffuse export (run/export-layout.ts) opened in any ONNX Runtime: its U-Net as the
 * ConditionedNetwork and its autoencoder as the LatentCodec that SamplingPipeline takes, so that
 * Node (DiffusionPipeline.fromPretrained, onnxruntime-node) and the studio page (onnxruntime-web)
 * run the same generate, img2img, inpaint and invert on the same files.
 *
 * The graphs have a static batch size b (export's --batch, 1 by default): a batch of n images
 * (2n under guidance) runs as ceil(n / b) calls, the last one padded by repeating its final row.
 */
import type { ModelFiles } from '../components/model-files.js';
import type { ComponentInput, OnnxComponent } from '../components/onnx-component.js';
import type { LatentCodec } from '../run/autoencoder.js';
import type { RunConfig } from '../run/config.js';
import { EXPORT_INPUT_NAMES, EXPORT_OUTPUT_NAME, ExportManifest, readExportedModel } from '../run/export-layout.js';
import type { Feeds } from '../run/run.js';
import { BpeTokenizer, PAD, TextTokenizer } from '../text/tokenizer.js';
import { HuggingFaceTokenizer } from '../text/hf-tokenizer.js';
import { parsePythonJson } from '../samplers/from-config.js';
import type { ConditionedNetwork } from './guidance.js';

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Rows [from, from + b) of a batch of n (rows past n repeat row n - 1), as a component input.
 * BigInt feeds (labels, token ids) become numbers: OnnxComponent converts them to the declared type.
 */
function rows(data: ArrayLike<number | bigint>, shape: readonly number[], from: number, b: number): ComponentInput {
  const per = size(shape.slice(1));
  const out = data instanceof Float32Array ? new Float32Array(b * per) : new Array<number>(b * per);
  for (let k = 0; k < b; k++) {
    const src = Math.min(from + k, shape[0] - 1) * per;
    for (let i = 0; i < per; i++) out[k * per + i] = Number(data[src + i]);
  }
  return { data: out, dims: [b, ...shape.slice(1)] };
}

/** The export's unet/model.onnx as SamplingPipeline's network. */
export class OnnxDenoiser implements ConditionedNetwork {
  readonly shape: [number, number, number];

  constructor(
    readonly config: RunConfig,
    private readonly unet: OnnxComponent,
    /** The graphs' batch size. */
    private readonly batch: number,
    /** Text runs: a batch of prompts as the graph's feeds (Diffuse's names: text_states, text_mask, text_pooled). */
    readonly text?: { feeds(prompts: readonly string[]): Promise<Feeds> },
    /** What release() also frees: the text encoder that openExportedModel opened for `text`. */
    private readonly owned?: { release(): Promise<void> },
  ) {
    const m = config.model;
    this.shape = [m.inChannels, m.imageSize, m.imageSize];
  }

  async run(x: Float32Array, t: number, n: number, conditions: Feeds): Promise<Float32Array> {
    const per = size(this.shape);
    const out = new Float32Array(n * per);
    const b = this.batch;
    for (let from = 0; from < n; from += b) {
      const feeds: Record<string, ComponentInput> = {
        [EXPORT_INPUT_NAMES.x]: rows(x, [n, ...this.shape], from, b),
        [EXPORT_INPUT_NAMES.t]: { data: new Float32Array(b).fill(t), dims: [b] },
      };
      for (const [name, f] of Object.entries(conditions)) feeds[EXPORT_INPUT_NAMES[name] ?? name] = rows(f.data as ArrayLike<number | bigint>, f.shape, from, b);
      const y = (await this.unet.run(feeds, [EXPORT_OUTPUT_NAME]))[EXPORT_OUTPUT_NAME].data;
      out.set(y.subarray(0, Math.min(b, n - from) * per), from * per);
    }
    return out;
  }

  async release(): Promise<void> {
    await this.unet.release();
    await this.owned?.release();
  }
}

/** Which inputs and outputs of text_encoder/model.onnx OnnxTextFeeds uses. */
export interface TextEncoderNames {
  input: string;
  /** [n, L, D] per-token states. */
  states: string;
  /** [n, L] float, 1 for a token and 0 for padding; absent: computed from the ids (PAD is padding). */
  mask?: string;
  /** [n, D]; absent: the mean of the states over the prompt's tokens. */
  pooled?: string;
}

/** The names of a text encoder that Diffuse trained with the U-Net, as export writes its graph. */
export const TRAINED_TEXT_ENCODER: TextEncoderNames = { input: 'input_ids', states: 'last_hidden_state', mask: 'attention_mask', pooled: 'pooler_output' };

/**
 * A text encoder's graph (text_encoder/model.onnx) as the U-Net's feeds for a batch of prompts,
 * each distinct prompt encoded once and kept. A trained encoder's graph gives states, mask and
 * pooled vector; a frozen one (CLIP's, say) gives states and maybe a pooled vector, and the rest is
 * computed here as OnnxTextEncoder does in a run, so that an export samples as its run.
 */
export class OnnxTextFeeds {
  private readonly cache = new Map<string, { states: Float32Array; mask: Float32Array; pooled: Float32Array }>();

  constructor(
    private readonly encoder: OnnxComponent,
    readonly tokenizer: TextTokenizer,
    private readonly names: TextEncoderNames,
    /** Prompts per call: the graph's batch size (a frozen encoder's file is run one prompt at a time). */
    private readonly batch: number,
  ) {}

  async feeds(prompts: readonly string[]): Promise<Feeds> {
    const L = this.tokenizer.maxLength;
    const missing = [...new Set(prompts)].filter((p) => !this.cache.has(p));
    for (let from = 0; from < missing.length; from += this.batch) {
      const piece = missing.slice(from, from + this.batch);
      const ids = this.tokenizer.encodeBatch(piece);
      const { input, states, mask, pooled } = this.names;
      const r = await this.encoder.run({ [input]: rows(ids, [piece.length, L], 0, this.batch) }, [states, ...(mask ? [mask] : []), ...(pooled ? [pooled] : [])]);
      const D = r[states].data.length / (this.batch * L);
      if (!Number.isInteger(D) || D < 1) throw new Error(`${this.encoder.file}: '${states}' has ${r[states].data.length} values for ${this.batch} prompts of ${L} tokens`);
      piece.forEach((p, k) => {
        const s = r[states].data.slice(k * L * D, (k + 1) * L * D);
        const m = mask ? r[mask].data.slice(k * L, (k + 1) * L) : Float32Array.from(ids.subarray(k * L, (k + 1) * L), (id) => (id === BigInt(PAD) ? 0 : 1));
        this.cache.set(p, { states: s, mask: m, pooled: pooled ? r[pooled].data.slice(k * D, (k + 1) * D) : meanOverTokens(s, m, L, D) });
      });
    }
    const n = prompts.length;
    const D = (this.cache.get(prompts[0]) as { pooled: Float32Array }).pooled.length;
    const out = { states: new Float32Array(n * L * D), mask: new Float32Array(n * L), pooled: new Float32Array(n * D) };
    prompts.forEach((p, k) => {
      const e = this.cache.get(p) as { states: Float32Array; mask: Float32Array; pooled: Float32Array };
      out.states.set(e.states, k * L * D);
      out.mask.set(e.mask, k * L);
      out.pooled.set(e.pooled, k * D);
    });
    return { text_states: { data: out.states, shape: [n, L, D] }, text_mask: { data: out.mask, shape: [n, L] }, text_pooled: { data: out.pooled, shape: [n, D] } };
  }

  async release(): Promise<void> {
    await this.encoder.release();
  }
}

/** The mean of one prompt's states over its tokens (mask 1), in float32 as OnnxTextEncoder sums them. */
function meanOverTokens(states: Float32Array, mask: Float32Array, L: number, D: number): Float32Array {
  const p = new Float32Array(D);
  let m = 0;
  for (let i = 0; i < L; i++) {
    if (!mask[i]) continue;
    m++;
    for (let j = 0; j < D; j++) p[j] += states[i * D + j];
  }
  for (let j = 0; j < D; j++) p[j] /= Math.max(m, 1);
  return p;
}

/** The export's vae_encoder and vae_decoder as SamplingPipeline's codec: latents are the posterior mean times the scaling factor. */
export class OnnxLatentCodec implements LatentCodec {
  constructor(
    readonly imageShape: [number, number, number],
    readonly latentShape: [number, number, number],
    private readonly scalingFactor: number,
    private readonly encoder: OnnxComponent,
    private readonly decoder: OnnxComponent,
    private readonly batch: number,
  ) {}

  async encode(images: Float32Array, n: number): Promise<Float32Array> {
    const lper = size(this.latentShape);
    const out = new Float32Array(n * lper);
    for (let from = 0; from < n; from += this.batch) {
      const r = await this.encoder.run({ sample: rows(images, [n, ...this.imageShape], from, this.batch) }, ['latent_parameters']);
      // latent_parameters: each image's mean channels, then its log-variance's.
      for (let k = 0; k < Math.min(this.batch, n - from); k++) {
        const mean = r.latent_parameters.data.subarray(2 * k * lper, (2 * k + 1) * lper);
        for (let i = 0; i < lper; i++) out[(from + k) * lper + i] = mean[i] * this.scalingFactor;
      }
    }
    return out;
  }

  async decode(latents: Float32Array, n: number): Promise<Float32Array> {
    const per = size(this.imageShape);
    const out = new Float32Array(n * per);
    const scaled = latents.map((v) => v / this.scalingFactor);
    for (let from = 0; from < n; from += this.batch) {
      const r = await this.decoder.run({ latent_sample: rows(scaled, [n, ...this.latentShape], from, this.batch) }, ['sample']);
      out.set(r.sample.data.subarray(0, Math.min(this.batch, n - from) * per), from * per);
    }
    return out;
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoder.release()]);
  }
}

/** An export opened: its manifest, the U-Net and, for a latent run, the autoencoder. */
export interface OpenedExport {
  manifest: ExportManifest;
  network: OnnxDenoiser;
  codec?: OnnxLatentCodec;
  tokenizer?: TextTokenizer;
}

/** A text run's tokenizer from the export's tokenizer/ folder (Node-free: read through `files`); `frozen`: the run's encoder is a frozen file with its own tokenizer. */
export async function readExportedTokenizer(files: ModelFiles, frozen?: { maxLength: number }): Promise<TextTokenizer> {
  const text = await files.readText('tokenizer', 'tokenizer.json');
  if (text === undefined) throw new Error(`${files.where('tokenizer', 'tokenizer.json')}: missing (a text run's export has its tokenizer)`);
  const json = parsePythonJson(text, files.where('tokenizer', 'tokenizer.json')) as { format?: string };
  if (json.format === 'diffuse-bpe-1') return BpeTokenizer.fromJSON(json, files.where('tokenizer', 'tokenizer.json'));
  const configText = await files.readText('tokenizer', 'tokenizer_config.json');
  const config = configText === undefined ? {} : (parsePythonJson(configText, files.where('tokenizer', 'tokenizer_config.json')) as Record<string, unknown>);
  // A frozen encoder's own tokenizer (any Hugging Face tokenizer), unless it is one that Diffuse trained (as readTokenizer decides for a run).
  if (frozen && !Array.isArray(config.diffuse_training_words)) return new HuggingFaceTokenizer(json, config, frozen.maxLength, files.where('tokenizer', 'tokenizer.json'));
  return BpeTokenizer.fromHuggingFace(json, config, files.where('tokenizer', 'tokenizer.json'));
}

/**
 * Opens an export's networks through `files` (a folder on disk, or a server's URLs). A text run's
 * prompts are tokenised here and encoded by text_encoder/model.onnx, once per prompt, unless
 * `text` feeds them.
 */
export async function openExportedModel(files: ModelFiles, o: { text?: OnnxDenoiser['text'] } = {}): Promise<OpenedExport> {
  const manifest = await readExportedModel(files);
  const names = manifest.inputs.map((i) => i.name);
  let text = o.text;
  let tokenizer: TextTokenizer | undefined;
  let textFeeds: OnnxTextFeeds | undefined;
  const opened: OnnxComponent[] = [];
  try {
    const run = manifest.run.text;
    if (manifest.text && run && !text) {
      // A frozen encoder is the file the run was trained with, under its own names, one prompt per call.
      const frozen = run.encoder.kind === 'onnx' ? run.encoder : undefined;
      const io: TextEncoderNames = frozen ? { input: frozen.inputName ?? 'input_ids', states: frozen.statesOutput ?? 'last_hidden_state', ...(frozen.pooledOutput ? { pooled: frozen.pooledOutput } : {}) } : TRAINED_TEXT_ENCODER;
      tokenizer = await readExportedTokenizer(files, frozen);
      const encoder = await files.open('text_encoder', { inputs: [io.input], outputs: [io.states, ...(io.mask ? [io.mask] : []), ...(io.pooled ? [io.pooled] : [])] });
      opened.push(encoder);
      textFeeds = new OnnxTextFeeds(encoder, tokenizer, io, frozen ? 1 : manifest.batch);
      text = textFeeds;
    }
    const unet = await files.open('unet', { inputs: names, outputs: [EXPORT_OUTPUT_NAME] });
    opened.push(unet);
    let codec: OnnxLatentCodec | undefined;
    if (manifest.latent) {
      const encoder = await files.open('vae_encoder', { inputs: ['sample'], outputs: ['latent_parameters'] });
      opened.push(encoder);
      const decoder = await files.open('vae_decoder', { inputs: ['latent_sample'], outputs: ['sample'] });
      opened.push(decoder);
      const { imageShape, latentShape, scalingFactor } = manifest.latent;
      codec = new OnnxLatentCodec(imageShape, latentShape, scalingFactor, encoder, decoder, manifest.batch);
    }
    return { manifest, network: new OnnxDenoiser(manifest.run, unet, manifest.batch, text, textFeeds), ...(codec ? { codec } : {}), ...(tokenizer ? { tokenizer } : {}) };
  } catch (e) {
    for (const c of opened) await c.release();
    throw e;
  }
}
