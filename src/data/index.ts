/** Image data sets and image files. */
export * from './dataset.js';
export * from './captions.js';
export * from './emoji.js';
export { DataError } from './errors.js';
export * from './image-io.js';
export * from './read-image.js';
export * from './safe-file.js';
export * from './image-header.js';
export * from './png-chunks.js';
export { imagePaths } from './image-paths.js';
export { DATASET_PACKAGES } from './packages.js';
