/** Training runs: the training loop. */
export * from './trainer.js';
