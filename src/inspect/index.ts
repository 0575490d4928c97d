/** Inspect: an analyst's report on an image from content credentials, the watermark and the detector. */
export * from './inspect.js';
export * from './format.js';
export * from './inspector.js';
