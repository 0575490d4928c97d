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
