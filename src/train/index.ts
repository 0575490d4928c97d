/** Training runs: the training loop. */
export * from './trainer.js';
export * from './loop.js';
export * from './epochs.js';
export * from './latents.js';
export * from './autoencoder-trainer.js';
