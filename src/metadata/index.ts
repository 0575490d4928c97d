/** File metadata: generation parameters, IPTC source types, EXIF software and camera. */
export * from './generators.js';
export * from './png-text.js';
export * from './read.js';
export * from './novelai.js';
export * from './stealth.js';
