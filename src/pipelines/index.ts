/** Pipelines: one object that generates, edits and inverts with a trained run or its export. */
export * from './diffusion-pipeline.js';
export * from './sampling-pipeline.js';
export * from './guidance.js';
export * from './denoiser.js';
export * from './inpaint.js';
export * from './invert.js';
export * from './output.js';
export * from './sampling-plan.js';
export * from './exported-model.js';
