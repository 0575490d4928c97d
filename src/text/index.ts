/** Text conditioning: tokenizer, encoders, and the contract they meet (TextStates). */
export * from './tokenizer.js';
export * from './hf-tokenizer.js';
export * from './clip-tokenizer.js';
export * from './encoder.js';
export * from './onnx-encoder.js';
export * from './tokenizer-folder.js';
