/**
 * Diffuse in a web page: what runs without Node, for a bundler (esbuild, Vite, webpack) with
 * onnxruntime-web. Load what `diffuse export` wrote from a URL and sample it with the same
 * pipeline, schedulers and noise as Node:
 *
 *   import * as ort from 'onnxruntime-web';
 *   import { SamplingPipeline, openExportedModel, urlModelFiles } from 'diffuse/browser';
 *
 *   const { manifest, network, codec } = await openExportedModel(urlModelFiles('/models/emoji-latent/', ort));
 *   const pipe = new SamplingPipeline(manifest.run, network, codec);
 *   const { data, count, shape } = await pipe.generate({ count: 4, steps: 20, seed: 7 });
 *
 * The watermark too: `generate({ watermark: gaussianShading(validateKey(json), payload) })`
 * draws the same signs as Node (ChaCha20 in TypeScript), and detectInNoise tests an inverted x_T.
 * Nothing here imports a Node module; test/browser/bundle.test.ts bundles it for the browser to
 * keep it so. A Stable Diffusion folder (Optimum's layout) at a URL:
 * `StableDiffusionPipeline.fromFiles(urlModelFiles('/models/sd-turbo/', ort))`.
 */
export { SamplingPipeline } from '../pipelines/sampling-pipeline.js';
export type { GenerateOptions, ImageBatch, StepInfo } from '../pipelines/sampling-pipeline.js';
export { OnnxDenoiser, OnnxLatentCodec, openExportedModel, readExportedTokenizer } from '../pipelines/exported-model.js';
export type { OpenedExport } from '../pipelines/exported-model.js';
export { readExportedModel, DIFFUSE_PIPELINE_CLASS } from '../run/export-layout.js';
export type { ExportManifest } from '../run/export-layout.js';
export { urlModelFiles } from '../components/url-files.js';
export { StableDiffusionPipeline } from '../latent/stable-diffusion.js';
export type { LatentGenerateOptions, LatentImageBatch } from '../latent/stable-diffusion.js';
export type { UrlFilesOptions } from '../components/url-files.js';
export { OnnxComponent } from '../components/onnx-component.js';
export type { ModelFiles } from '../components/model-files.js';
export { DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, PNDMScheduler, makeScheduler, schedulerFromConfig } from '../samplers/index.js';
export { TorchGenerator, FastGenerator } from '../diffusion/index.js';
export { BpeTokenizer } from '../text/tokenizer.js';
export { gaussianShading, detectInNoise, readPayload, describePayload } from '../forensics/gaussian-shading.js';
export { generateKey, validateKey } from '../forensics/key.js';
export type { WatermarkKey } from '../forensics/key.js';
