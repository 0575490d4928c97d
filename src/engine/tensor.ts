/**
 * The symbolic tensor: a node in a dataflow graph with a static shape and dtype.
 *
 * Nothing is computed when a Tensor is made. A graph of Tensors is traced in
 * TypeScript, differentiated (autodiff.ts), compiled to one ONNX model (onnx.ts)
 * and executed by ONNX Runtime (runtime.ts). Shapes are concrete numbers: a
 * graph is compiled once per shape and cached, so every shape error surfaces at
 * trace time with the op's name and both shapes, never inside ONNX Runtime.
 */

export type DType = 'float32' | 'float64' | 'int64';
export type Shape = readonly number[];

/** Attribute values an op may carry. */
export type AttrValue = number | string | readonly number[] | boolean | undefined;
export type Attrs = Readonly<Record<string, AttrValue>>;

/** Typed storage for each dtype. */
export type DataOf<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'float64'
    ? Float64Array
    : BigInt64Array;
export type TensorData = Float32Array | Float64Array | BigInt64Array;

/** Emits ONNX nodes; implemented by the compiler (onnx.ts). */
export interface Emitter {
  /** Adds a node; returns its output names (fresh ones unless `outputs` is given). */
  node(opType: string, inputs: readonly string[], attrs?: Attrs, outputs?: readonly string[], domain?: string): string[];
  /** A constant int64 vector (shapes, axes, starts...). */
  ints(values: readonly number[]): string;
  /** A constant scalar or tensor of a float dtype. */
  floats(values: ArrayLike<number>, shape: Shape, dtype: DType): string;
  /** Whether a value is a constant of the model (a baked weight or a literal), not computed or fed. */
  isInitializer(name: string): boolean;
  /**
   * The channel block of ONNX Runtime's NCHWc CPU kernels where the model will run on them
   * (16 with AVX-512, 8 with AVX2), else 0: convolutions whose weights are fed or computed
   * (training) are then emitted as blocked convolutions (ops.ts, conv2d).
   */
  readonly convBlock: number;
}

/**
 * An operation: its ONNX emission and its gradient rule, side by side.
 * `grad` receives the output tensor (whose `inputs` and `attrs` describe the
 * call) and the gradient flowing into it, and returns one gradient per input
 * (null where none flows, as for integer inputs).
 */
export interface Op {
  readonly name: string;
  emit(e: Emitter, y: Tensor, inputs: readonly string[], output: string): void;
  grad?(y: Tensor, gy: Tensor): readonly (Tensor | null)[];
}

/** A leaf fed at run time (data, parameters, optimizer state, scalars). */
export const INPUT: Op = {
  name: 'input',
  emit() {
    throw new Error('inputs are graph inputs, not nodes');
  },
};

/** A leaf baked into the model. */
export const CONSTANT: Op = {
  name: 'constant',
  emit() {
    throw new Error('constants are initializers, not nodes');
  },
};

let nextId = 0;

export class Tensor {
  readonly id = nextId++;
  constructor(
    readonly op: Op,
    readonly inputs: readonly Tensor[],
    readonly shape: Shape,
    readonly dtype: DType,
    readonly attrs: Attrs = {},
    /** Input name for INPUT leaves; constant payload for CONSTANT leaves. */
    readonly name?: string,
    readonly data?: TensorData,
  ) {}

  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return sizeOf(this.shape);
  }
  toString(): string {
    return `${this.op.name}${this.name ? `(${this.name})` : ''}[${this.shape.join(',')}]:${this.dtype}`;
  }
}

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A shape error that names the op and every shape involved. */
export class ShapeError extends Error {
  constructor(op: string, message: string, shapes: Record<string, Shape>) {
    const desc = Object.entries(shapes)
      .map(([k, s]) => `${k} [${s.join(', ')}]`)
      .join(', ');
    super(`${op}: ${message} (${desc})`);
    this.name = 'ShapeError';
  }
}

/** A graph input: data, a parameter or optimizer state, fed at every run. */
export function input(name: string, shape: Shape, dtype: DType = 'float32'): Tensor {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError('input', `'${name}' has an invalid dimension ${d}`, { shape });
  }
  return new Tensor(INPUT, [], [...shape], dtype, {}, name);
}

/** A constant baked into the compiled model. */
export function constant(values: ArrayLike<number> | number, shape: Shape = [], dtype: DType = 'float32'): Tensor {
  const arr = typeof values === 'number' ? [values] : values;
  if (arr.length !== sizeOf(shape)) {
    throw new ShapeError('constant', `${arr.length} values do not fill the shape`, { shape });
  }
  const data =
    dtype === 'int64'
      ? BigInt64Array.from(Array.from(arr, (v) => BigInt(Math.trunc(v))))
      : dtype === 'float64'
        ? Float64Array.from(arr)
        : Float32Array.from(arr);
  return new Tensor(CONSTANT, [], [...shape], dtype, {}, undefined, data);
}

export function allocate(dtype: DType, n: number): TensorData {
  return dtype === 'float32' ? new Float32Array(n) : dtype === 'float64' ? new Float64Array(n) : new BigInt64Array(n);
}
