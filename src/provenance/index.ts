/** Provenance: content credentials (C2PA) on the images Diffuse writes, and reading them back. */
export * from './certificates.js';
export * from './sign.js';
export * from './read.js';
export * from './source-type.js';
