/**
 * Diffuse: denoising diffusion models in TypeScript, on ONNX Runtime.
 *
 * The root is the face most programs need: the pipelines, the schedulers, training, the
 * watermark, the detectors and the analyst's report. Each folder's whole public surface is its
 * own entry point, for code that goes deeper: `diffuse/engine` (tensors, autodiff, ONNX
 * compilation and execution), `diffuse/nn`, `diffuse/diffusion`, `diffuse/samplers`,
 * `diffuse/data`, `diffuse/run`, `diffuse/components` (model folders and their ONNX networks), `diffuse/pipelines`, `diffuse/latent`, `diffuse/forensics`,
 * `diffuse/provenance`, `diffuse/metadata`, `diffuse/inspect`, `diffuse/train`, `diffuse/eval`
 * and `diffuse/text`. docs/API.md lists every name; a test keeps that list true.
 * @packageDocumentation
 */

// Pipelines: a trained run, or a Stable Diffusion folder of ONNX components.
export { DiffusionPipeline, SamplingPipeline, saveGrid, saveFrames } from './pipelines/index.js';
export type { GenerateOptions, Img2ImgOptions, InpaintOptions, InvertOptions, ImageBatch, ImageInput, PipelineOptions, SamplingOptions, StepInfo, GridOptions, InitialNoiseSource } from './pipelines/index.js';
export { StableDiffusionPipeline } from './latent/index.js';
export type { LatentGenerateOptions, LatentImg2ImgOptions, LatentInpaintOptions, LatentInvertOptions, LatentImageBatch, LatentPipelineOptions, LatentStepInfo } from './latent/index.js';

// Schedulers (diffusers' names and configs) and the noise they start from.
export { DDIMScheduler, DDPMScheduler, PNDMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, DPMSolverMultistepScheduler, SCHEDULER_NAMES, makeScheduler, schedulerFromConfig, readSchedulerConfig } from './samplers/index.js';
export type { Scheduler, SchedulerName, TimestepSpacing, DiffusersSchedulerConfig } from './samplers/index.js';
export { NoiseSchedule, TorchGenerator, FastGenerator } from './diffusion/index.js';
export type { NoiseGenerator, ScheduleConfig, PredictionType } from './diffusion/index.js';

// Training a model, or a latent model's autoencoder, and the run folder it writes.
export { train, trainAutoencoder, encodeDataset } from './train/index.js';
export type { TrainOptions, TrainResult, AutoencoderTrainOptions, AutoencoderTrainResult } from './train/index.js';
export { TRAIN_DEFAULTS, readRunConfig, validateRunConfig, exportRun } from './run/index.js';
export type { RunConfig, AutoencoderRunConfig, ExportManifest } from './run/index.js';
export { unet, REFERENCE_UNET, validateUNetConfig } from './nn/unet.js';
export type { UNetConfig } from './nn/unet.js';
export { UNET_PRESETS, unetPreset } from './nn/presets.js';
export type { UNetPresetName } from './nn/presets.js';

// Data: the built-in sets (optional packages), image folders, single images.
export { loadDataset, listImages, readImage, BUILTIN_DATASETS, DATASET_PACKAGES, DataError } from './data/index.js';
export type { ImageDataset, DatasetName, ReadImageOptions } from './data/index.js';

// The evaluator.
export { evaluateRun, evaluateAdherence } from './eval/index.js';
export type { EvalOptions, EvalReport, AdherenceReport } from './eval/index.js';

// Forensics: the watermark in x_T, and the detectors of a model's samples.
export { generateKey, readKey, gaussianShading, detectWatermark, calibrateDetector, detectSynthetic, calibrateAutoencoderDetector, detectWithAutoencoder } from './forensics/index.js';
export type { WatermarkKey, WatermarkDetection, DetectOptions, WatermarkModel, DetectorCalibration, SyntheticDetection } from './forensics/index.js';

// The analyst's report on any image, content credentials and generator metadata.
export { Inspector, inspectImage, inspectFile, reportText, reportHtml } from './inspect/index.js';
export type { InspectReport, InspectorOptions, InspectOptions, Verdict } from './inspect/index.js';
export { signImage, readCredentials, makeSigningChain, readSigningCredentials } from './provenance/index.js';
export type { CredentialReport, GenerationRecord, SigningCredentials, TrustSettings } from './provenance/index.js';
export { readMetadata } from './metadata/index.js';
export type { MetadataReport } from './metadata/index.js';

// Errors about what a call asked for.
export { OptionError } from './engine/index.js';
