/** A run folder: its validated config, its network, its weights and its text conditioning; and its export (a model folder in the diffusers layout). */
export * from './config.js';
export * from './conditioning.js';
export * from './sampling-defaults.js';
export * from './run.js';
export * from './text.js';
export * from './export.js';
export * from './autoencoder.js';
export { DIFFUSE_PIPELINE_CLASS, readExportedModel } from './export-layout.js';
export type { ExportManifest, ExportedTensor } from './export-layout.js';
export * from './export-folder.js';
