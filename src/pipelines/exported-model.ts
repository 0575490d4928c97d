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
import { BpeTokenizer, TextTokenizer } from '../text/tokenizer.js';
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

/**
 * A trained text encoder's graph (text_encoder/model.onnx: input_ids -> last_hidden_state,
 * attention_mask, pooler_output) as the U-Net's feeds for a batch of prompts, each distinct
 * prompt encoded once and kept.
 */
export class OnnxTextFeeds {
  private readonly cache = new Map<string, { states: Float32Array; mask: Float32Array; pooled: Float32Array }>();

  constructor(
    private readonly encoder: OnnxComponent,
    readonly tokenizer: TextTokenizer,
    private readonly batch: number,
  ) {}

  async feeds(prompts: readonly string[]): Promise<Feeds> {
    const L = this.tokenizer.maxLength;
    const missing = [...new Set(prompts)].filter((p) => !this.cache.has(p));
    for (let from = 0; from < missing.length; from += this.batch) {
      const piece = missing.slice(from, from + this.batch);
      const ids = this.tokenizer.encodeBatch(piece);
      const r = await this.encoder.run({ input_ids: rows(ids, [piece.length, L], 0, this.batch) }, ['last_hidden_state', 'attention_mask', 'pooler_output']);
      const D = r.pooler_output.data.length / this.batch;
      piece.forEach((p, k) =>
        this.cache.set(p, {
          states: r.last_hidden_state.data.slice(k * L * D, (k + 1) * L * D),
          mask: r.attention_mask.data.slice(k * L, (k + 1) * L),
          pooled: r.pooler_output.data.slice(k * D, (k + 1) * D),
        }),
      );
    }
    const n = prompts.length;
    const first = this.cache.get(prompts[0]);
    const D = first ? first.pooled.length : 0;
    const states = new Float32Array(n * L * D);
    const mask = new Float32Array(n * L);
    const pooled = new Float32Array(n * D);
    prompts.forEach((p, k) => {
      const e = this.cache.get(p) as { states: Float32Array; mask: Float32Array; pooled: Float32Array };
      states.set(e.states, k * L * D);
      mask.set(e.mask, k * L);
      pooled.set(e.pooled, k * D);
    });
    return { text_states: { data: states, shape: [n, L, D] }, text_mask: { data: mask, shape: [n, L] }, text_pooled: { data: pooled, shape: [n, D] } };
  }

  async release(): Promise<void> {
    await this.encoder.release();
  }
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

/** A trained text encoder's tokenizer from the export's tokenizer/ folder (Node-free: read through `files`). */
export async function readExportedTokenizer(files: ModelFiles): Promise<TextTokenizer> {
  const text = await files.readText('tokenizer', 'tokenizer.json');
  if (text === undefined) throw new Error(`${files.where('tokenizer', 'tokenizer.json')}: missing (a text run's export has its tokenizer)`);
  const json = JSON.parse(text) as { format?: string };
  if (json.format === 'diffuse-bpe-1') return BpeTokenizer.fromJSON(json, files.where('tokenizer', 'tokenizer.json'));
  const config = await files.readText('tokenizer', 'tokenizer_config.json');
  return BpeTokenizer.fromHuggingFace(json, config === undefined ? {} : (JSON.parse(config) as Record<string, unknown>), files.where('tokenizer', 'tokenizer.json'));
}

/**
 * Opens an export's networks through `files` (a folder on disk, or the studio's URLs). A frozen
 * text encoder's prompts are fed by `text` (Node's TextConditioner over text_encoder/model.onnx);
 * a trained one's are tokenised here and encoded by text_encoder/model.onnx, once per prompt.
 */
export async function openExportedModel(files: ModelFiles, o: { text?: OnnxDenoiser['text'] } = {}): Promise<OpenedExport> {
  const manifest = await readExportedModel(files);
  const names = manifest.inputs.map((i) => i.name);
  let text = o.text;
  let tokenizer: TextTokenizer | undefined;
  let textFeeds: OnnxTextFeeds | undefined;
  if (manifest.text && !text && manifest.text.encoder === 'frozen') throw new Error(`${files.where('text_encoder')}: a frozen text encoder's export; open it in Node with DiffusionPipeline.fromPretrained`);
  const opened: OnnxComponent[] = [];
  try {
    if (manifest.text && !text) {
      tokenizer = await readExportedTokenizer(files);
      const encoder = await files.open('text_encoder', { inputs: ['input_ids'], outputs: ['last_hidden_state', 'attention_mask', 'pooler_output'] });
      opened.push(encoder);
      textFeeds = new OnnxTextFeeds(encoder, tokenizer, manifest.batch);
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
