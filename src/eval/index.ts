/** Sample-quality evaluation. */
export * from './metrics.js';
export * from './classifier.js';
export * from './evaluate.js';
