/** diffusers-compatible schedulers. */
export * from './common.js';
export * from './ddpm.js';
export * from './ddim.js';
