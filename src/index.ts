/**
 * Diffuse: denoising diffusion models in TypeScript, on ONNX Runtime.
 * @packageDocumentation
 */
export * from './engine/index.js';
/** Layers with parameters (`nn.conv2d(scope, x, 64, 3)`) and the U-Net. */
export * as nn from './nn/index.js';
export { unet, REFERENCE_UNET, validateUNetConfig } from './nn/unet.js';
export type { UNetConfig } from './nn/unet.js';
export * from './diffusion/index.js';
export * from './samplers/index.js';
export { UNET_PRESETS, unetPreset } from './nn/presets.js';
export type { UNetPresetName } from './nn/presets.js';
export * from './data/index.js';
export * from './run/index.js';
export * from './pipelines/index.js';
export * from './latent/index.js';
export * from './forensics/index.js';
export * from './provenance/index.js';
export * from './metadata/index.js';
export * from './inspect/index.js';
export * from './train/index.js';
export * from './eval/index.js';
/** Text: the BPE tokenizer, the transformer text encoder and the frozen ONNX encoder plug-in. */
export * from './text/index.js';
