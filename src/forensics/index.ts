/** Forensics: the watermark in the initial noise (keys, embedding, detection) and a detector of the model's samples. */
export * from './key.js';
export * from './key-file.js';
export * from './gaussian-shading.js';
export * from './rotation-search.js';
export * from './turn-search.js';
export * from './crop-search.js';
export * from './geometry-search.js';
export { SearchThreads, detectInMovedNoises } from './geometry-threads.js';
export * from './detect.js';
export * from './logistic.js';
export * from './processing.js';
export * from './synthetic.js';
export * from './autoencoder-detector.js';
export * from './jpeg-quality.js';
export * from './invisible-watermark.js';
