/** Image data sets and image files. */
export * from './dataset.js';
export * from './image-io.js';
