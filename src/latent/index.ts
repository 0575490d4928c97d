/** Latent diffusion models from folders of ONNX components (Stable Diffusion-class, Optimum's layout). */
export * from './stable-diffusion.js';
