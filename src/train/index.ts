/** Training runs: configuration, the training loop, run folders. */
export * from './config.js';
export * from './run.js';
export * from './trainer.js';
export * from './text.js';
