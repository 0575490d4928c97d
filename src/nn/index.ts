/** Neural-network building blocks and the denoising U-Net. */
export * from './layers.js';
export * from './attention.js';
export * from './unet.js';
export * from './presets.js';
export * from './autoencoder.js';
