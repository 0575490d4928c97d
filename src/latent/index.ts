/** Latent diffusion models from folders of ONNX components (Stable Diffusion-class, Optimum's layout). */
export * from './onnx-component.js';
export * from './stable-diffusion.js';
export * from './model-files.js';
export * from './model-folder.js';
