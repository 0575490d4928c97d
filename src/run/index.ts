/** A run folder: its validated config, its network, its weights and its text conditioning. */
export * from './config.js';
export * from './sampling-defaults.js';
export * from './run.js';
export * from './text.js';
export * from './export.js';
export * from './autoencoder.js';
