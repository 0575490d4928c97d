/**
 * The folder `diffuse export` writes: a run as components in the diffusers layout, with the names
 * diffusers gives its arguments and Optimum its ONNX inputs and outputs:
 *
 *   model_index.json                 _class_name DiffusePipeline, its components, and `diffuse`
 *                                    (format, modelHash, the graphs' batch size)
 *   unet/model.onnx                  sample [b, C, H, W], timestep [b] (float32, one per image), and
 *                                    class_labels [b] (int64) for class-conditional runs, or
 *                                    encoder_hidden_states, encoder_attention_mask and text_embeds
 *                                    for text runs -> out_sample (the run's prediction: epsilon, v or x_0)
 *   unet/config.json                 sample_size, in_channels, out_channels, and `diffuse`: the run's
 *                                    config.json whole, the graph's inputs and outputs
 *   unet/weights.safetensors         the same weights, for other tools
 *   scheduler/scheduler_config.json  the noise schedule and prediction type in diffusers' names
 *   vae_encoder/model.onnx           sample -> latent_parameters (mean, then log-variance, on channels)
 *   vae_decoder/model.onnx           latent_sample -> sample; config.json: scaling_factor
 *   tokenizer/                       tokenizer.json, tokenizer_config.json (text runs)
 *   text_encoder/model.onnx          a trained encoder as its own graph: input_ids -> last_hidden_state,
 *                                    attention_mask, pooler_output; a frozen encoder's file, copied
 *
 * Node-free: the page reads it too. Graphs have static shapes, so the batch is fixed at export
 * (1 by default); OnnxDenoiser runs a larger batch in pieces.
 */
import { ModelFiles, readJsonObject } from '../components/model-files.js';
import type { PredictionType } from '../diffusion/index.js';
import { readSchedulerConfig } from '../samplers/from-config.js';
import type { RunConfig } from './config.js';

/** model_index.json's _class_name for a Diffuse export. */
export const DIFFUSE_PIPELINE_CLASS = 'DiffusePipeline';
export const EXPORT_FORMAT = 'diffuse-export-2';

/** Diffuse's feed names (RunNetwork's graph inputs) -> the exported graph's input names. */
export const EXPORT_INPUT_NAMES: Readonly<Record<string, string>> = {
  x: 'sample',
  t: 'timestep',
  label: 'class_labels',
  ids: 'input_ids',
  text_states: 'encoder_hidden_states',
  text_mask: 'encoder_attention_mask',
  text_pooled: 'text_embeds',
};
export const EXPORT_OUTPUT_NAME = 'out_sample';

/** Why a config is missing, in errors: what an export must have. */
export const MISSING = 'missing (a Diffuse export has model_index.json, unet/config.json and scheduler/scheduler_config.json)';

/** Limits on what an export's configs may declare (sides in pixels or channels; graphs' batch). */
const MAX_SIDE = 4096;
const MAX_BATCH = 1024;

/** One graph input or output as unet/config.json lists it. */
export interface ExportedTensor {
  name: string;
  shape: number[];
  dtype: string;
}

/** What an export holds, as `exportRun` returns it and `readExportedModel` reads it back. */
export interface ExportManifest {
  format: typeof EXPORT_FORMAT;
  /** The batch size the graphs were compiled for (ONNX shapes here are static). */
  batch: number;
  inputs: ExportedTensor[];
  outputs: ExportedTensor[];
  /** What out_sample is: the run's prediction type. */
  predictionType: PredictionType;
  /** SHA-256 of the weights, as DiffusionPipeline.fromRun's modelHash (a latent run's covers its autoencoder). */
  modelHash: string;
  /** The run's config.json, whole, with the schedule and prediction type that scheduler_config.json gives. */
  run: RunConfig;
  /** A latent run's autoencoder: images are vae_decoder(latents / scalingFactor). */
  latent?: { scalingFactor: number; imageShape: [number, number, number]; latentShape: [number, number, number] };
  /**
   * A text run's tokenizer is in tokenizer/ and its encoder in text_encoder/: a trained one as its
   * own graph (input_ids -> last_hidden_state, attention_mask, pooler_output), a frozen one as the
   * file it was trained with (Node's TextConditioner runs it).
   */
  text?: { tokenizer: boolean; encoder: 'trained' | 'frozen' };
}

/** The components an export has, in model_index.json's form: [library, class]. */
export function modelIndexOf(m: ExportManifest): Record<string, unknown> {
  return {
    _class_name: DIFFUSE_PIPELINE_CLASS,
    unet: ['diffuse', 'UNet'],
    scheduler: ['diffusers', 'DDIMScheduler'],
    ...(m.latent ? { vae_encoder: ['diffuse', 'AutoencoderKL'], vae_decoder: ['diffuse', 'AutoencoderKL'] } : {}),
    ...(m.text?.tokenizer ? { tokenizer: ['transformers', 'PreTrainedTokenizerFast'] } : {}),
    ...(m.text ? { text_encoder: ['diffuse', m.text.encoder === 'trained' ? 'TransformerTextEncoder' : 'OnnxTextEncoder'] } : {}),
    diffuse: { format: m.format, modelHash: m.modelHash, batch: m.batch },
  };
}

/**
 * scheduler_config.json for a run: its noise schedule and prediction type, and clip_sample as
 * Diffuse samples it (off for conditional and latent runs; see schedulerConfigOf).
 */
export function schedulerConfigJson(c: RunConfig, clipSample: boolean): Record<string, unknown> {
  return {
    _class_name: 'DDIMScheduler',
    num_train_timesteps: c.schedule.numTrainTimesteps,
    beta_start: c.schedule.betaStart,
    beta_end: c.schedule.betaEnd,
    beta_schedule: c.schedule.betaSchedule,
    rescale_betas_zero_snr: c.schedule.rescaleBetasZeroSnr,
    prediction_type: c.predictionType,
    clip_sample: clipSample,
  };
}

/**
 * Reads an export's configs back into its manifest. The schedule and prediction type come from
 * scheduler/scheduler_config.json (diffusers' names), so that an edited scheduler config is the one
 * sampled with; everything else from unet/config.json's copy of the run's config.
 */
export async function readExportedModel(files: ModelFiles): Promise<ExportManifest> {
  const read = (...parts: string[]) => readJsonObject(files, parts, MISSING);
  return manifestOf(await read('model_index.json'), await read('unet', 'config.json'), await read('scheduler', 'scheduler_config.json'), files.where);
}

function checkIndex(index: Record<string, unknown>, where: string): void {
  if (index._class_name !== DIFFUSE_PIPELINE_CLASS) throw new Error(`${where}: _class_name ${JSON.stringify(index._class_name ?? null)}, not a Diffuse export (${DIFFUSE_PIPELINE_CLASS})`);
  const meta = index.diffuse as { format?: unknown } | undefined;
  if (meta?.format !== EXPORT_FORMAT) throw new Error(`${where}: export format ${JSON.stringify(meta?.format)}; this Diffuse reads ${EXPORT_FORMAT} (export the run again)`);
}

/** The manifest of an export from its three parsed configs (model_index.json, unet/config.json, scheduler_config.json); `where` names files in errors. */
export function manifestOf(index: Record<string, unknown>, unet: Record<string, unknown>, scheduler: Record<string, unknown>, where: (...parts: string[]) => string): ExportManifest {
  checkIndex(index, where('model_index.json'));
  const meta = index.diffuse as { modelHash?: unknown; batch?: unknown };
  const d = unet.diffuse as Omit<ExportManifest, 'format' | 'modelHash' | 'batch'> | undefined;
  if (!d?.run || !Array.isArray(d.inputs) || !Array.isArray(d.outputs)) throw new Error(`${where('unet', 'config.json')}: no diffuse section (the run's config and the graph's inputs)`);
  const batch = Number(meta.batch);
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH) throw new Error(`${where('model_index.json')}: diffuse.batch must be an integer in 1..${MAX_BATCH}, got ${JSON.stringify(meta.batch)}`);
  // The shapes size every buffer: a folder from elsewhere is checked before anything is allocated.
  const side = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= MAX_SIDE;
  const shape = (v: unknown) => Array.isArray(v) && v.length === 3 && v.every(side);
  const m = d.run.model as { inChannels?: unknown; imageSize?: unknown } | undefined;
  if (!m || !side(m.inChannels) || !side(m.imageSize)) throw new Error(`${where('unet', 'config.json')}: diffuse.run.model needs inChannels and imageSize, integers in 1..${MAX_SIDE}`);
  if (d.latent && (!shape(d.latent.imageShape) || !shape(d.latent.latentShape) || !(d.latent.scalingFactor > 0 && Number.isFinite(d.latent.scalingFactor)))) {
    throw new Error(`${where('unet', 'config.json')}: diffuse.latent needs imageShape and latentShape ([C, H, W], sides in 1..${MAX_SIDE}) and a finite scalingFactor > 0`);
  }
  const source = where('scheduler', 'scheduler_config.json');
  const { config: s } = readSchedulerConfig(scheduler, source);
  if (s.trainedBetas) throw new Error(`${source}: trained_betas is not supported for a Diffuse export (give beta_schedule)`);
  const run: RunConfig = {
    ...d.run,
    schedule: {
      numTrainTimesteps: s.numTrainTimesteps ?? d.run.schedule.numTrainTimesteps,
      betaStart: s.betaStart ?? d.run.schedule.betaStart,
      betaEnd: s.betaEnd ?? d.run.schedule.betaEnd,
      betaSchedule: s.betaSchedule ?? d.run.schedule.betaSchedule,
      rescaleBetasZeroSnr: s.rescaleBetasZeroSnr ?? d.run.schedule.rescaleBetasZeroSnr,
    },
    predictionType: s.predictionType ?? d.run.predictionType,
  };
  return { format: EXPORT_FORMAT, batch, inputs: d.inputs, outputs: d.outputs, predictionType: run.predictionType, modelHash: String(meta.modelHash ?? ''), run, ...(d.latent ? { latent: d.latent } : {}), ...(d.text ? { text: d.text } : {}) };
}
