/** The engine: symbolic tensors, autodiff, ONNX compilation and ONNX Runtime execution. */
export * from './tensor.js';
export * from './ops.js';
export { grad, topoSort } from './autodiff.js';
export { countFlops } from './flops.js';
export { compileModel, modelNodes, modelOpTypes, OPSET } from './onnx.js';
export type { CompileSpec, CompiledModel, ValueSpec } from './onnx.js';
export { Executable, cpuConvBlock, defaultOrt, dtypeOf } from './runtime.js';
export type { OrtModule, RuntimeOptions, HostTensor, Device } from './runtime.js';
export { Program } from './program.js';
export type { BuildFn, ProgramOptions } from './program.js';
export { ParamScope, ParamStore, Rng, init } from './params.js';
export type { Init, Param } from './params.js';
export { TrainStep, NonFiniteError } from './optim.js';
export type { AdamWOptions, BatchSpec, StepResult } from './optim.js';
export * from './safetensors.js';
export { OptionError } from './errors.js';
