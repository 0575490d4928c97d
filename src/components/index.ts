/**
 * Models as components: a folder in the diffusers layout (model_index.json, unet/, vae_encoder/,
 * vae_decoder/, text_encoder/, tokenizer/, scheduler/) read through ModelFiles, each network an
 * OnnxComponent in any ONNX Runtime (onnxruntime-node from a folder on disk, onnxruntime-web from
 * the studio's URLs).
 */
export * from './onnx-component.js';
export * from './model-files.js';
export * from './model-folder.js';
export * from './url-files.js';
