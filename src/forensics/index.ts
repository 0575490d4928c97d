/** Forensics: the watermark in the initial noise (keys, embedding, detection). */
export * from './key.js';
export * from './gaussian-shading.js';
export * from './detect.js';
