/** Inspect: an analyst's report on any image (credentials, metadata, the SD mark, NovelAI's signature) and, with a run, this model's watermark and detector. */
export * from './inspect.js';
export * from './format.js';
export * from './inspector.js';
