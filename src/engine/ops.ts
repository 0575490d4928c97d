/**
 * Every op of the engine: shape check, ONNX emission and gradient rule side by side.
 *
 * Ops are plain functions returning new symbolic Tensors. Composite ops (mean,
 * gelu, groupNorm...) are built from primitives and differentiate for free;
 * primitives carry their own `grad`. Gradient rules are written with the same
 * ops, so a backward pass is just more graph.
 */
import { constant, Op, Shape, ShapeError, Tensor, DType, Attrs, Emitter, sizeOf } from './tensor.js';

// ---------------------------------------------------------------------------
// helpers

type Operand = Tensor | number;

/** Rejects option keys an op does not know (a typo must not silently fall back to a default). */
export function checkOptions(op: string, opts: object, known: readonly string[]): void {
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) throw new Error(`${op}: unknown option '${k}' (known: ${known.join(', ')})`);
  }
}

function define(op: Op): Op {
  return op;
}

function make(op: Op, inputs: readonly Tensor[], shape: Shape, dtype: DType, attrs: Attrs = {}): Tensor {
  return new Tensor(op, inputs, shape, dtype, attrs);
}

function isFloat(d: DType): boolean {
  return d === 'float32' || d === 'float64';
}

/** Numbers become constants of the other operand's dtype. */
function lift(a: Operand, like: Tensor): Tensor {
  return typeof a === 'number' ? constant(a, [], like.dtype) : a;
}

function pair(a: Operand, b: Operand, op: string): [Tensor, Tensor] {
  if (typeof a === 'number' && typeof b === 'number') throw new Error(`${op}: at least one operand must be a tensor`);
  const ta = typeof a === 'number' ? lift(a, b as Tensor) : a;
  const tb = typeof b === 'number' ? lift(b, ta) : b;
  if (ta.dtype !== tb.dtype) {
    throw new ShapeError(op, `dtypes differ: ${ta.dtype} and ${tb.dtype}`, { a: ta.shape, b: tb.shape });
  }
  return [ta, tb];
}

function normAxis(axis: number, rank: number, op: string, shape: Shape): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new ShapeError(op, `axis ${axis} is out of range for rank ${rank}`, { x: shape });
  return a;
}

/** NumPy broadcasting of two shapes, with an error naming the op. */
export function broadcastShapes(a: Shape, b: Shape, op = 'broadcast'): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(op, `shapes cannot be broadcast together`, { a, b });
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Sums a broadcast gradient back down to `shape`. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, true) : g;
  return reshape(s, shape);
}

// ---------------------------------------------------------------------------
// elementwise binary ops (broadcasting)

function binary(name: string, onnx: string, grad?: Op['grad']): (a: Operand, b: Operand) => Tensor {
  const op = define({
    name,
    emit: (e, _y, [a, b], out) => void e.node(onnx, [a, b], {}, [out]),
    grad,
  });
  return (a, b) => {
    const [ta, tb] = pair(a, b, name);
    return make(op, [ta, tb], broadcastShapes(ta.shape, tb.shape, name), ta.dtype);
  };
}

export const add = binary('add', 'Add', (y, g) => [sumTo(g, y.inputs[0].shape), sumTo(g, y.inputs[1].shape)]);
export const sub = binary('sub', 'Sub', (y, g) => [sumTo(g, y.inputs[0].shape), sumTo(neg(g), y.inputs[1].shape)]);
export const mul = binary('mul', 'Mul', (y, g) => {
  const [a, b] = y.inputs;
  return [sumTo(mul(g, b), a.shape), sumTo(mul(g, a), b.shape)];
});
export const div = binary('div', 'Div', (y, g) => {
  const [a, b] = y.inputs;
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -y/b
  return [sumTo(div(g, b), a.shape), sumTo(neg(div(mul(g, y), b)), b.shape)];
});
/** Elementwise maximum / minimum: used for clipping, not differentiated. */
export const maximum = binary('maximum', 'Max');
export const minimum = binary('minimum', 'Min');

// ---------------------------------------------------------------------------
// elementwise unary ops

function unary(name: string, emit: Op['emit'], grad?: Op['grad'], floatOnly = true): (x: Tensor) => Tensor {
  const op = define({ name, emit, grad });
  return (x) => {
    if (floatOnly && !isFloat(x.dtype)) throw new ShapeError(name, `needs a float tensor, got ${x.dtype}`, { x: x.shape });
    return make(op, [x], x.shape, x.dtype);
  };
}
const simple =
  (onnx: string): Op['emit'] =>
  (e, _y, [x], out) =>
    void e.node(onnx, [x], {}, [out]);

export const neg = unary('neg', simple('Neg'), (_y, g) => [neg(g)], false);
export const exp = unary('exp', simple('Exp'), (y, g) => [mul(g, y)]);
export const log = unary('log', simple('Log'), (y, g) => [div(g, y.inputs[0])]);
export const sqrt = unary('sqrt', simple('Sqrt'), (y, g) => [div(g, mul(y, 2))]);
export const sin = unary('sin', simple('Sin'), (y, g) => [mul(g, cos(y.inputs[0]))]);
export const cos = unary('cos', simple('Cos'), (y, g) => [neg(mul(g, sin(y.inputs[0])))]);
export const tanh = unary('tanh', simple('Tanh'), (y, g) => [mul(g, sub(1, mul(y, y)))]);
export const sigmoid = unary('sigmoid', simple('Sigmoid'), (y, g) => [mul(g, mul(y, sub(1, y)))]);
export const erf = unary('erf', simple('Erf'), (y, g) => {
  const x = y.inputs[0];
  return [mul(g, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI)))];
});
/** The sign of x: -1, 0 or 1 (not differentiated: its derivative is 0 almost everywhere). */
export const sign = unary('sign', simple('Sign'));
/** |x|, with the subgradient sign(x) (0 at 0, as PyTorch's). */
export const abs = unary('abs', simple('Abs'), (y, g) => [mul(g, sign(y.inputs[0]))]);
/** SiLU (swish): x * sigmoid(x). */
export const silu = unary(
  'silu',
  (e, _y, [x], out) => {
    const [s] = e.node('Sigmoid', [x]);
    e.node('Mul', [x, s], {}, [out]);
  },
  (y, g) => {
    // d/dx x s(x) = s + x s (1 - s) = s + y - s y, with y = x s(x) the output.
    const s = sigmoid(y.inputs[0]);
    return [mul(g, add(s, sub(y, mul(s, y))))];
  },
);

/** x ** p for a constant exponent p. */
const powOp = define({
  name: 'pow',
  emit: (e, y, [x], out) => void e.node('Pow', [x, e.floats([y.attrs.p as number], [], y.dtype)], {}, [out]),
  grad: (y, g) => {
    const p = y.attrs.p as number;
    return [mul(g, mul(pow(y.inputs[0], p - 1), p))];
  },
});
export function pow(x: Tensor, p: number): Tensor {
  if (!isFloat(x.dtype)) throw new ShapeError('pow', `needs a float tensor, got ${x.dtype}`, { x: x.shape });
  return make(powOp, [x], x.shape, x.dtype, { p });
}

export const square = (x: Tensor): Tensor => mul(x, x);
export const rsqrt = (x: Tensor): Tensor => div(1, sqrt(x));

/** GELU with the exact erf form: 0.5 x (1 + erf(x / sqrt 2)). */
export function gelu(x: Tensor): Tensor {
  return mul(mul(x, 0.5), add(1, erf(mul(x, Math.SQRT1_2))));
}

/** Passes values, blocks gradients. */
const stopOp = define({ name: 'stopGradient', emit: (e, _y, [x], out) => void e.node('Identity', [x], {}, [out]), grad: () => [null] });
export function stopGradient(x: Tensor): Tensor {
  return make(stopOp, [x], x.shape, x.dtype);
}

const castOp = define({
  name: 'cast',
  emit: (e, y, [x], out) => void e.node('Cast', [x], { to: ONNX_DTYPE[y.dtype] }, [out]),
  grad: (y, g) => [isFloat(y.inputs[0].dtype) ? cast(g, y.inputs[0].dtype) : null],
});
export const ONNX_DTYPE: Record<DType, number> = { float32: 1, int64: 7, float64: 11 };
export function cast(x: Tensor, dtype: DType): Tensor {
  return x.dtype === dtype ? x : make(castOp, [x], x.shape, dtype, {});
}

// ---------------------------------------------------------------------------
// reductions

function checkAxes(axes: readonly number[], x: Tensor, op: string): number[] {
  const norm = axes.map((a) => normAxis(a, x.rank, op, x.shape));
  if (new Set(norm).size !== norm.length) throw new ShapeError(op, `repeated axis in [${axes.join(', ')}]`, { x: x.shape });
  return norm.sort((a, b) => a - b);
}
function reducedShape(shape: Shape, axes: readonly number[], keep: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keep) out.push(1);
  });
  return out;
}

const sumOp = define({
  name: 'sum',
  emit: (e, y, [x], out) =>
    void e.node('ReduceSum', [x, e.ints(y.attrs.axes as number[])], { keepdims: y.attrs.keepdims ? 1 : 0 }, [out]),
  grad: (y, g) => {
    const x = y.inputs[0];
    const kept = reducedShape(x.shape, y.attrs.axes as number[], true);
    return [expand(reshape(g, kept), x.shape)];
  },
});
/** Sum over `axes` (all axes when omitted). */
export function sum(x: Tensor, axes?: readonly number[], keepdims = false): Tensor {
  const ax = checkAxes(axes ?? x.shape.map((_, i) => i), x, 'sum');
  if (ax.length === 0) return x;
  return make(sumOp, [x], reducedShape(x.shape, ax, keepdims), x.dtype, { axes: ax, keepdims });
}

export function mean(x: Tensor, axes?: readonly number[], keepdims = false): Tensor {
  const ax = checkAxes(axes ?? x.shape.map((_, i) => i), x, 'mean');
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  return div(sum(x, ax, keepdims), n);
}

const maxOp = define({
  name: 'max',
  emit: (e, y, [x], out) =>
    void e.node('ReduceMax', [x], { axes: y.attrs.axes as number[], keepdims: y.attrs.keepdims ? 1 : 0 }, [out]),
});
/** Maximum over axes (not differentiated). */
export function max(x: Tensor, axes?: readonly number[], keepdims = false): Tensor {
  const ax = checkAxes(axes ?? x.shape.map((_, i) => i), x, 'max');
  return make(maxOp, [x], reducedShape(x.shape, ax, keepdims), x.dtype, { axes: ax, keepdims });
}

// ---------------------------------------------------------------------------
// shape ops

const reshapeOp = define({
  name: 'reshape',
  emit: (e, y, [x], out) => void e.node('Reshape', [x, e.ints(y.shape)], {}, [out]),
  grad: (y, g) => [reshape(g, y.inputs[0].shape)],
});
/** Reshape; one dimension may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((d) => d !== -1);
  const rest = x.size / sizeOf(known);
  const target = shape.map((d) => (d === -1 ? rest : d));
  if (shape.filter((d) => d === -1).length > 1 || !Number.isInteger(rest) || sizeOf(target) !== x.size) {
    throw new ShapeError('reshape', `cannot reshape ${x.size} elements`, { x: x.shape, target: shape });
  }
  if (target.length === x.rank && target.every((d, i) => d === x.shape[i])) return x;
  return make(reshapeOp, [x], target, x.dtype);
}

const transposeOp = define({
  name: 'transpose',
  emit: (e, y, [x], out) => void e.node('Transpose', [x], { perm: y.attrs.perm as number[] }, [out]),
  grad: (y, g) => {
    const perm = y.attrs.perm as number[];
    const inv = perm.map((_, i) => perm.indexOf(i));
    return [transpose(g, inv)];
  },
});
export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const sorted = [...perm].sort((a, b) => a - b);
  if (perm.length !== x.rank || sorted.some((p, i) => p !== i)) {
    throw new ShapeError('transpose', `perm [${perm.join(', ')}] is not a permutation of ${x.rank} axes`, { x: x.shape });
  }
  if (perm.every((p, i) => p === i)) return x;
  return make(transposeOp, [x], perm.map((p) => x.shape[p]), x.dtype, { perm: [...perm] });
}
/** Swaps the last two axes. */
export function transposeLast(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  [perm[x.rank - 2], perm[x.rank - 1]] = [perm[x.rank - 1], perm[x.rank - 2]];
  return transpose(x, perm);
}

const expandOp = define({
  name: 'expand',
  emit: (e, y, [x], out) => void e.node('Expand', [x, e.ints(y.shape)], {}, [out]),
  grad: (y, g) => [sumTo(g, y.inputs[0].shape)],
});
/** Broadcasts x to `shape`. */
export function expand(x: Tensor, shape: Shape): Tensor {
  const b = broadcastShapes(x.shape, shape, 'expand');
  if (b.length !== shape.length || b.some((d, i) => d !== shape[i])) {
    throw new ShapeError('expand', 'x cannot be broadcast to the target', { x: x.shape, target: shape });
  }
  if (x.rank === shape.length && x.shape.every((d, i) => d === shape[i])) return x;
  return make(expandOp, [x], [...shape], x.dtype);
}

export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = axis < 0 ? axis + x.rank + 1 : axis;
  const s = [...x.shape];
  s.splice(a, 0, 1);
  return reshape(x, s);
}

const concatOp = define({
  name: 'concat',
  emit: (e, y, ins, out) => void e.node('Concat', ins, { axis: y.attrs.axis as number }, [out]),
  grad: (y, g) => {
    const axis = y.attrs.axis as number;
    let at = 0;
    return y.inputs.map((x) => {
      const s = slice(g, axis, at, at + x.shape[axis]);
      at += x.shape[axis];
      return s;
    });
  },
});
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors given');
  const first = xs[0];
  const a = normAxis(axis, first.rank, 'concat', first.shape);
  let total = 0;
  for (const x of xs) {
    const ok = x.rank === first.rank && x.shape.every((d, i) => i === a || d === first.shape[i]) && x.dtype === first.dtype;
    if (!ok) throw new ShapeError('concat', `shapes differ off axis ${a}`, { first: first.shape, other: x.shape });
    total += x.shape[a];
  }
  if (xs.length === 1) return first;
  const shape = [...first.shape];
  shape[a] = total;
  return make(concatOp, xs, shape, first.dtype, { axis: a });
}

const sliceOp = define({
  name: 'slice',
  emit: (e, y, [x], out) => {
    const { axis, start, end, step } = y.attrs as { axis: number; start: number; end: number; step: number };
    e.node('Slice', [x, e.ints([start]), e.ints([end]), e.ints([axis]), e.ints([step])], {}, [out]);
  },
  grad: (y, g) => {
    const { axis, start, step } = y.attrs as { axis: number; start: number; step: number };
    if (step !== 1) throw new Error('slice: the gradient of a strided slice is not supported');
    const x = y.inputs[0];
    const before = x.shape.map((_, i) => (i === axis ? start : 0));
    const after = x.shape.map((d, i) => (i === axis ? d - start - y.shape[axis] : 0));
    return [pad(g, before, after)];
  },
});
/** x[start:end:step] along one axis (step > 0). */
export function slice(x: Tensor, axis: number, start: number, end: number, step = 1): Tensor {
  const a = normAxis(axis, x.rank, 'slice', x.shape);
  const d = x.shape[a];
  if (!(step >= 1) || start < 0 || end > d || start >= end) {
    throw new ShapeError('slice', `range ${start}:${end}:${step} is invalid for axis ${a} of size ${d}`, { x: x.shape });
  }
  if (start === 0 && end === d && step === 1) return x;
  const shape = [...x.shape];
  shape[a] = Math.ceil((end - start) / step);
  return make(sliceOp, [x], shape, x.dtype, { axis: a, start, end, step });
}

const padOp = define({
  name: 'pad',
  emit: (e, y, [x], out) => {
    const pads = [...(y.attrs.before as number[]), ...(y.attrs.after as number[])];
    e.node('Pad', [x, e.ints(pads)], { mode: 'constant' }, [out]);
  },
  grad: (y, g) => {
    const before = y.attrs.before as number[];
    let r = g;
    y.inputs[0].shape.forEach((d, i) => (r = slice(r, i, before[i], before[i] + d)));
    return [r];
  },
});
/** Zero padding: `before[i]` and `after[i]` elements on axis i. */
export function pad(x: Tensor, before: readonly number[], after: readonly number[]): Tensor {
  if (before.length !== x.rank || after.length !== x.rank || [...before, ...after].some((p) => p < 0)) {
    throw new ShapeError('pad', `needs ${x.rank} non-negative pads before and after`, { x: x.shape, before, after });
  }
  if ([...before, ...after].every((p) => p === 0)) return x;
  return make(padOp, [x], x.shape.map((d, i) => d + before[i] + after[i]), x.dtype, {
    before: [...before],
    after: [...after],
  });
}

const flipOp = define({
  name: 'flip',
  emit: (e, y, [x], out) => {
    const axes = y.attrs.axes as number[];
    const big = -Number.MAX_SAFE_INTEGER;
    e.node(
      'Slice',
      [x, e.ints(axes.map(() => -1)), e.ints(axes.map(() => big)), e.ints(axes), e.ints(axes.map(() => -1))],
      {},
      [out],
    );
  },
  grad: (y, g) => [flip(g, y.attrs.axes as number[])],
});
/** Reverses the order of elements along `axes`. */
export function flip(x: Tensor, axes: readonly number[]): Tensor {
  return make(flipOp, [x], x.shape, x.dtype, { axes: checkAxes(axes, x, 'flip') });
}

const scatterRowsOp = define({
  name: 'scatterAddRows',
  emit: (e, y, [idx, upd], out) => {
    const zero = e.floats([0], [], y.dtype);
    const [zeros] = e.node('Expand', [zero, e.ints(y.shape)]);
    const [idx1] = e.node('Unsqueeze', [idx, e.ints([-1])]);
    e.node('ScatterND', [zeros, idx1, upd], { reduction: 'add' }, [out]);
  },
});
function scatterAddRows(indices: Tensor, updates: Tensor, rows: number): Tensor {
  const shape = [rows, ...updates.shape.slice(indices.rank)];
  return make(scatterRowsOp, [indices, updates], shape, updates.dtype);
}

const gatherOp = define({
  name: 'gather',
  emit: (e, _y, [table, idx], out) => void e.node('Gather', [table, idx], { axis: 0 }, [out]),
  grad: (y, g) => [scatterAddRows(y.inputs[1], g, y.inputs[0].shape[0]), null],
});
/** Rows of `table` picked by int64 `indices`: an embedding lookup. */
export function gather(table: Tensor, indices: Tensor): Tensor {
  if (indices.dtype !== 'int64') throw new ShapeError('gather', `indices must be int64, got ${indices.dtype}`, { indices: indices.shape });
  if (table.rank < 1) throw new ShapeError('gather', 'table must have at least one axis', { table: table.shape });
  return make(gatherOp, [table, indices], [...indices.shape, ...table.shape.slice(1)], table.dtype);
}

// ---------------------------------------------------------------------------
// linear algebra and neural-network primitives

const matmulOp = define({
  name: 'matmul',
  emit: (e, _y, [a, b], out) => void e.node('MatMul', [a, b], {}, [out]),
  grad: (y, g) => {
    const [a, b] = y.inputs;
    return [sumTo(matmul(g, transposeLast(b)), a.shape), sumTo(matmul(transposeLast(a), g), b.shape)];
  },
});
/** Batched matrix product [..., m, k] x [..., k, n] with broadcast batch axes. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.rank < 2 || b.rank < 2) throw new ShapeError('matmul', 'both operands need at least 2 axes', { a: a.shape, b: b.shape });
  if (a.dtype !== b.dtype) throw new ShapeError('matmul', `dtypes differ: ${a.dtype} and ${b.dtype}`, { a: a.shape, b: b.shape });
  const [m, k] = a.shape.slice(-2);
  const [k2, n] = b.shape.slice(-2);
  if (k !== k2) throw new ShapeError('matmul', `inner dimensions differ (${k} vs ${k2})`, { a: a.shape, b: b.shape });
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
  return make(matmulOp, [a, b], [...batch, m, n], a.dtype);
}

/** y = x W^T + b, with W stored [out, in] as in PyTorch. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  if (weight.rank !== 2 || x.shape[x.rank - 1] !== weight.shape[1]) {
    throw new ShapeError('linear', `input features ${x.shape[x.rank - 1]} do not match weight [out, in]`, {
      x: x.shape,
      weight: weight.shape,
    });
  }
  const y = matmul(x, transpose(weight, [1, 0]));
  return bias ? add(y, bias) : y;
}

const softmaxOp = define({
  name: 'softmax',
  emit: (e, _y, [x], out) => void e.node('Softmax', [x], { axis: -1 }, [out]),
  grad: (y, g) => [mul(y, sub(g, sum(mul(g, y), [y.rank - 1], true)))],
});
/** Softmax over the last axis. */
export function softmax(x: Tensor): Tensor {
  if (x.rank < 1) throw new ShapeError('softmax', 'needs at least one axis', { x: x.shape });
  return make(softmaxOp, [x], x.shape, x.dtype);
}

const invStdName = (normalized: string) => `${normalized}:invstd`;

const normalizeOp = define({
  name: 'normalize',
  emit: (e, y, [x], out) => {
    const k = y.attrs.axes as number;
    const inner = y.shape.slice(y.rank - k);
    // LayerNormalization is a fused native kernel (unit scale, no bias); its third
    // output, 1/sqrt(var + eps), is kept for the backward pass.
    e.node(
      'LayerNormalization',
      [x, e.floats(new Array(sizeOf(inner)).fill(1), inner, y.dtype)],
      { axis: y.rank - k, epsilon: y.attrs.eps as number },
      [out, '', invStdName(out)],
    );
  },
  grad: (y, g) => {
    // y = (x - mu) * r,  r = 1/sqrt(var + eps)
    // dx = r * (g - mean(g) - y * mean(g * y))     (means over the normalised axes)
    const k = y.attrs.axes as number;
    const axes = y.shape.map((_, i) => i).slice(y.rank - k);
    const r = make(invStdOp, [y], y.shape.map((d, i) => (i < y.rank - k ? d : 1)), y.dtype);
    const gm = mean(g, axes, true);
    const gym = mean(mul(g, y), axes, true);
    // Small per-group factors first, so that only four passes touch full-size tensors.
    return [sub(mul(g, r), add(mul(gm, r), mul(y, mul(gym, r))))];
  },
});
/** The saved 1/sqrt(var + eps) of a normalize node (its input is that node). */
const invStdOp = define({
  name: 'normalizeInvStd',
  // The statistic is stashed in float32 (ONNX Runtime has no float64 stash), so cast it for float64 graphs.
  emit: (e, y, [normalized], out) =>
    void (y.dtype === 'float32'
      ? e.node('Identity', [invStdName(normalized)], {}, [out])
      : e.node('Cast', [invStdName(normalized)], { to: ONNX_DTYPE[y.dtype] }, [out])),
});
/** (x - mean) / sqrt(var + eps) over the last `axes` axes; no affine part. */
export function normalize(x: Tensor, axes: number, eps = 1e-5): Tensor {
  if (axes < 1 || axes > x.rank) throw new ShapeError('normalize', `cannot normalise over the last ${axes} axes`, { x: x.shape });
  return make(normalizeOp, [x], x.shape, x.dtype, { axes, eps });
}

/** Layer norm over the last axis with learned scale and shift. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const c = x.shape[x.rank - 1];
  if (weight.size !== c || bias.size !== c) {
    throw new ShapeError('layerNorm', `weight and bias need ${c} elements`, { x: x.shape, weight: weight.shape, bias: bias.shape });
  }
  return add(mul(normalize(x, 1, eps), weight), bias);
}

/** Group norm on NCHW (or NC...) input with per-channel scale and shift. */
export function groupNorm(x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const [n, c] = x.shape;
  if (x.rank < 2 || c % groups !== 0) {
    throw new ShapeError('groupNorm', `${c} channels cannot be split into ${groups} groups`, { x: x.shape });
  }
  if (weight.size !== c || bias.size !== c) {
    throw new ShapeError('groupNorm', `weight and bias need ${c} elements`, { x: x.shape, weight: weight.shape, bias: bias.shape });
  }
  const normed = reshape(normalize(reshape(x, [n, groups, -1]), 1, eps), x.shape);
  const perChannel = [c, ...x.shape.slice(2).map(() => 1)];
  return add(mul(normed, reshape(weight, perChannel)), reshape(bias, perChannel));
}

// ---------------------------------------------------------------------------
// convolution

/** How conv gradients are formulated; benchmarked in bench/engine.ts. */
export const convOptions: {
  /** 'flipped': a forward conv of the output gradient with flipped, transposed weights (stride 1); 'transpose': ConvTranspose. */
  inputGrad: 'flipped' | 'transpose';
  /** 'im2col': one batched GEMM over patches; 'swapped': a conv with batch and channel axes swapped. */
  weightGrad: 'im2col' | 'swapped';
} = { inputGrad: 'flipped', weightGrad: 'im2col' };

interface ConvAttrs {
  stride: number;
  padding: number;
  dilation: number;
  groups: number;
}

const convOp = define({
  name: 'conv2d',
  emit: (e, y, ins, out) => {
    const { stride, padding, dilation, groups } = y.attrs as unknown as ConvAttrs;
    const w = y.inputs[1];
    const attrs = {
      kernel_shape: w.shape.slice(2),
      strides: [stride, stride],
      pads: [padding, padding, padding, padding],
      dilations: [dilation, dilation],
    };
    const [o, c] = w.shape;
    const B = e.convBlock;
    // A fed or computed weight (training) is re-packed by the plain kernel on every run; the
    // blocked kernel is faster even with the layout changes around it (docs/ENGINE.md). A baked
    // weight is left to ONNX Runtime, which blocks it once at load and chains blocked nodes.
    if (B > 1 && groups === 1 && y.dtype === 'float32' && c % B === 0 && o % B === 0 && !e.isInitializer(ins[1])) {
      blockedConv(e, ins, w.shape, B, attrs, out);
      return;
    }
    e.node('Conv', ins, { ...attrs, group: groups }, [out]);
  },
  grad: (y, g) => {
    const [x, w, b] = y.inputs;
    const a = y.attrs as unknown as ConvAttrs;
    const grads: (Tensor | null)[] = [convInputGrad(g, w, x.shape, a), convWeightGrad(x, g, w.shape, a)];
    // Spatial axes first: ONNX Runtime reduces contiguous inner axes much faster.
    if (b) grads.push(sumLeading(sum(g, [2, 3])));
    return grads;
  },
});

/** ONNX Runtime's domain of blocked-layout (NCHWc) CPU kernels. */
export const NCHWC_DOMAIN = 'com.microsoft.nchwc';

/**
 * One convolution on ONNX Runtime's NCHWc kernels: the input reordered into blocks of B channels
 * ([N, C/B, H, W, B] in memory), the OIHW weight into [O/B, C/B, kH, kW, B_in, B_out] (MLAS's
 * OIHWBiBo), and the output back to NCHW.
 */
function blockedConv(e: Emitter, ins: readonly string[], wShape: Shape, B: number, attrs: Attrs, out: string): void {
  const [o, c, kh, kw] = wShape;
  const [x, w, bias] = ins;
  const [xb] = e.node('ReorderInput', [x], {}, undefined, NCHWC_DOMAIN);
  const [w6] = e.node('Reshape', [w, e.ints([o / B, B, c / B, B, kh, kw])]);
  const [wt] = e.node('Transpose', [w6], { perm: [0, 2, 4, 5, 3, 1] });
  const [wb] = e.node('Reshape', [wt, e.ints([o, c, kh, kw])]);
  const [yb] = e.node('Conv', bias ? [xb, wb, bias] : [xb, wb], attrs, undefined, NCHWC_DOMAIN);
  e.node('ReorderOutput', [yb], { channels: o }, [out], NCHWC_DOMAIN);
}

function convOut(size: number, k: number, a: ConvAttrs): number {
  return Math.floor((size + 2 * a.padding - a.dilation * (k - 1) - 1) / a.stride) + 1;
}

/** 2-D convolution, NCHW input, OIHW weight (O x C/groups x kH x kW), optional bias [O]. */
export function conv2d(
  x: Tensor,
  weight: Tensor,
  bias?: Tensor,
  opts: { stride?: number; padding?: number; dilation?: number; groups?: number } = {},
): Tensor {
  checkOptions('conv2d', opts, ['stride', 'padding', 'dilation', 'groups']);
  const a: ConvAttrs = { stride: opts.stride ?? 1, padding: opts.padding ?? 0, dilation: opts.dilation ?? 1, groups: opts.groups ?? 1 };
  const shapes: Record<string, Shape> = { x: x.shape, weight: weight.shape };
  if (bias) shapes.bias = bias.shape;
  if (x.rank !== 4 || weight.rank !== 4) throw new ShapeError('conv2d', 'input must be NCHW and weight OIHW', shapes);
  const [n, c, h, wd] = x.shape;
  const [o, ci, kh, kw] = weight.shape;
  if (c % a.groups !== 0 || o % a.groups !== 0) throw new ShapeError('conv2d', `channels are not divisible by groups=${a.groups}`, shapes);
  if (ci * a.groups !== c) throw new ShapeError('conv2d', `weight expects ${ci * a.groups} input channels, input has ${c}`, shapes);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== o)) throw new ShapeError('conv2d', `bias must be [${o}]`, shapes);
  for (const [k, v] of Object.entries(a)) {
    if (!Number.isInteger(v) || v < (k === 'padding' ? 0 : 1)) throw new ShapeError('conv2d', `invalid ${k} ${v}`, shapes);
  }
  const ho = convOut(h, kh, a);
  const wo = convOut(wd, kw, a);
  if (ho < 1 || wo < 1) throw new ShapeError('conv2d', 'kernel is larger than the padded input', shapes);
  return make(convOp, bias ? [x, weight, bias] : [x, weight], [n, o, ho, wo], x.dtype, { ...a });
}

/** Sum over axis 0 as a ones-vector GEMM: about twice as fast as ReduceSum over the outermost axis. */
function sumLeading(x: Tensor): Tensor {
  const [n, ...rest] = x.shape;
  if (n === 1) return reshape(x, rest);
  const flat = matmul(constant(new Array(n).fill(1), [1, n], x.dtype), reshape(x, [n, x.size / n]));
  return reshape(flat, rest);
}

/** Regroups OIHW weights (O x C/G) into the transposed layout (C x O/G), flipped in space. */
function flippedTransposedWeight(w: Tensor, groups: number): Tensor {
  const [o, cg, kh, kw] = w.shape;
  const og = o / groups;
  const wg = reshape(w, [groups, og, cg, kh, kw]);
  const t = reshape(transpose(wg, [0, 2, 1, 3, 4]), [groups * cg, og, kh, kw]);
  return flip(t, [2, 3]);
}

const convTransposeOp = define({
  name: 'convTranspose2d',
  emit: (e, y, ins, out) => {
    const { stride, padding, dilation, groups, outPadH, outPadW } = y.attrs as unknown as ConvAttrs & { outPadH: number; outPadW: number };
    e.node('ConvTranspose', ins, {
      kernel_shape: y.inputs[1].shape.slice(2),
      strides: [stride, stride],
      pads: [padding, padding, padding, padding],
      dilations: [dilation, dilation],
      group: groups,
      output_padding: [outPadH, outPadW],
    }, [out]);
  },
});

function convInputGrad(g: Tensor, w: Tensor, xShape: Shape, a: ConvAttrs): Tensor {
  const [kh, kw] = w.shape.slice(2);
  const flippedPad = a.dilation * (kh - 1) - a.padding;
  if (convOptions.inputGrad === 'flipped' && a.stride === 1 && kh === kw && flippedPad >= 0) {
    // dx = conv(g, flip(W^T)) with 'full' padding: an ordinary forward conv.
    return conv2d(g, flippedTransposedWeight(w, a.groups), undefined, {
      padding: flippedPad,
      dilation: a.dilation,
      groups: a.groups,
    });
  }
  const [, , h, wd] = xShape;
  const [, , ho, wo] = g.shape;
  const outPadH = h - ((ho - 1) * a.stride - 2 * a.padding + a.dilation * (kh - 1) + 1);
  const outPadW = wd - ((wo - 1) * a.stride - 2 * a.padding + a.dilation * (kw - 1) + 1);
  return make(convTransposeOp, [g, w], xShape, g.dtype, { ...a, outPadH, outPadW });
}

/**
 * im2col by a depthwise conv with one-hot kernels: patches[n, c*kk + k] is input channel c shifted
 * by kernel offset k, in the forward conv's geometry. (Gather, Slice + Concat and one GEMM per
 * offset were each slower in ONNX Runtime 1.30, measured on 2026-12-07.)
 */
function im2col(x: Tensor, kh: number, kw: number, a: ConvAttrs): Tensor {
  const c = x.shape[1];
  const kk = kh * kw;
  const eye = new Float32Array(c * kk * kk);
  for (let ch = 0; ch < c; ch++) for (let k = 0; k < kk; k++) eye[(ch * kk + k) * kk + k] = 1;
  return conv2d(x, constant(eye, [c * kk, 1, kh, kw], x.dtype), undefined, { stride: a.stride, padding: a.padding, dilation: a.dilation, groups: c });
}

function convWeightGrad(x: Tensor, g: Tensor, wShape: Shape, a: ConvAttrs): Tensor {
  if (a.groups > 1) {
    // Each group is an independent convolution.
    const cg = x.shape[1] / a.groups;
    const og = g.shape[1] / a.groups;
    const parts = [];
    for (let i = 0; i < a.groups; i++) {
      const xi = slice(x, 1, i * cg, (i + 1) * cg);
      const gi = slice(g, 1, i * og, (i + 1) * og);
      parts.push(convWeightGrad(xi, gi, [og, cg, wShape[2], wShape[3]], { ...a, groups: 1 }));
    }
    return concat(parts, 0);
  }
  const [n, c] = x.shape;
  const [o, , kh, kw] = wShape;
  const [, , ho, wo] = g.shape;
  if (convOptions.weightGrad === 'swapped') {
    // dW^T[c, o] = conv(x^T [C, N, H, W], g^T [O, N, Ho, Wo]) with the stride as dilation.
    const xt = transpose(x, [1, 0, 2, 3]);
    const gt = transpose(g, [1, 0, 2, 3]);
    const full = conv2d(xt, gt, undefined, { padding: a.padding, dilation: a.stride, stride: a.dilation });
    const cropped = slice(slice(full, 2, 0, kh), 3, 0, kw);
    return transpose(cropped, [1, 0, 2, 3]);
  }
  // A 1x1 convolution's only patch is the input itself: no gathering.
  const kk = kh * kw;
  const patches = kk === 1 && a.stride === 1 && a.padding === 0 ? x : im2col(x, kh, kw, a);
  const cols = reshape(patches, [n, c * kk, ho * wo]);
  // dW^T = sum_n patches_n @ g_n^T: [C*kk, O] (measured a little faster than the [O, C*kk] orientation);
  // ONNX Runtime fuses the transposes into its GEMM.
  const dwT = sumLeading(matmul(cols, transposeLast(reshape(g, [n, o, ho * wo]))));
  return reshape(transpose(dwT, [1, 0]), wShape);
}

// ---------------------------------------------------------------------------
// composites used by models

const upsampleOp = define({
  name: 'upsampleNearest',
  emit: (e, y, [x], out) => {
    const f = y.attrs.factor as number;
    if (y.dtype === 'float64') {
      // Resize has no float64 kernel: broadcast each pixel into an f x f block.
      const [n, c, h, w] = y.inputs[0].shape;
      const [six] = e.node('Reshape', [x, e.ints([n, c, h, 1, w, 1])]);
      const [big] = e.node('Expand', [six, e.ints([n, c, h, f, w, f])]);
      e.node('Reshape', [big, e.ints(y.shape)], {}, [out]);
      return;
    }
    // Resize(X, roi, scales): ONNX Runtime's nearest kernel is far faster than reshape + Expand.
    // 'asymmetric' maps output pixel i to input pixel floor(i / f) (the default half_pixel mode does not).
    e.node('Resize', [x, '', e.floats([1, 1, f, f], [4], 'float32')], {
      mode: 'nearest',
      nearest_mode: 'floor',
      coordinate_transformation_mode: 'asymmetric',
    }, [out]);
  },
  // Each input pixel fed factor^2 output pixels: sum them back.
  grad: (y, g) => {
    const f = y.attrs.factor as number;
    const [n, c, h, w] = y.inputs[0].shape;
    // AveragePool has no float64 kernel.
    return [g.dtype === 'float64' ? sum(reshape(g, [n, c, h, f, w, f]), [3, 5]) : sumPool(g, f)];
  },
});

const sumPoolOp = define({
  name: 'sumPool',
  // AveragePool times f^2: ONNX Runtime's ReduceSum over the interleaved axes [3, 5] of
  // [N, C, H, f, W, f] is several times slower.
  emit: (e, y, [x], out) => {
    const f = y.attrs.factor as number;
    const [avg] = e.node('AveragePool', [x], { kernel_shape: [f, f], strides: [f, f] });
    e.node('Mul', [avg, e.floats([f * f], [], 'float32')], {}, [out]);
  },
  // The adjoint of summing each f x f block is copying the block's gradient to each of its pixels.
  grad: (y, g) => [upsampleNearest(g, y.attrs.factor as number)],
});
/** Sum over non-overlapping f x f blocks of float32 NCHW (the adjoint of `upsampleNearest`). */
function sumPool(x: Tensor, factor: number): Tensor {
  const [n, c, h, w] = x.shape;
  return make(sumPoolOp, [x], [n, c, h / factor, w / factor], x.dtype, { factor });
}
/** Nearest-neighbour upsampling of NCHW by an integer factor. */
export function upsampleNearest(x: Tensor, factor = 2): Tensor {
  if (x.rank !== 4 || !Number.isInteger(factor) || factor < 1) {
    throw new ShapeError('upsampleNearest', `input must be NCHW and the factor a positive integer (got ${factor})`, { x: x.shape });
  }
  const [n, c, h, w] = x.shape;
  return make(upsampleOp, [x], [n, c, h * factor, w * factor], x.dtype, { factor });
}

/** Average pooling of NCHW with kernel = stride = k (non-overlapping windows). */
export function avgPool(x: Tensor, k = 2): Tensor {
  const [n, c, h, w] = x.shape;
  if (x.rank !== 4 || h % k !== 0 || w % k !== 0) throw new ShapeError('avgPool', `input must be NCHW with H, W divisible by ${k}`, { x: x.shape });
  return mean(reshape(x, [n, c, h / k, k, w / k, k]), [3, 5]);
}

const stepOp = define({
  name: 'step',
  emit: (e, y, [x, thr], out) => {
    const [b] = e.node('GreaterOrEqual', [x, thr]);
    e.node('Cast', [b], { to: ONNX_DTYPE[y.dtype] }, [out]);
  },
});
/** 1 where x >= threshold, else 0 (not differentiated). */
export function stepFunction(x: Tensor, threshold: Operand): Tensor {
  const [a, b] = pair(x, threshold, 'step');
  return make(stepOp, [a, b], broadcastShapes(a.shape, b.shape, 'step'), a.dtype);
}

const floorOp = define({ name: 'floor', emit: (e, _y, [x], out) => void e.node('Floor', [x], {}, [out]) });
/** Elementwise floor (not differentiated). */
export function floor(x: Tensor): Tensor {
  return make(floorOp, [x], x.shape, x.dtype);
}

/**
 * Inverted dropout with a mask that is a pure function of (element index, seed):
 * a sine hash of broadcast index vectors, so that no random state lives in the
 * graph and a resumed run draws the same masks. `seed` is a scalar input.
 */
export function dropout(x: Tensor, p: number, seed: Tensor): Tensor {
  if (!(p >= 0 && p < 1)) throw new ShapeError('dropout', `rate must be in [0, 1), got ${p}`, { x: x.shape });
  if (p === 0) return x;
  // index = sum_i i_k * stride_k, built from one small vector per axis
  let index: Tensor | undefined;
  let stride = 1;
  for (let a = x.rank - 1; a >= 0; a--) {
    const n = x.shape[a];
    const shape = x.shape.map((d, i) => (i === a ? d : 1));
    const v = constant(Array.from({ length: n }, (_, i) => (i * stride) % 65521), shape, x.dtype);
    index = index ? add(index, v) : v;
    stride *= n;
  }
  const h = mul(sin(add(mul(index as Tensor, 12.9898), mul(seed, 78.233))), 43758.5453);
  const u = sub(h, floor(h)); // fract: uniform in [0, 1)
  return mul(x, mul(stepFunction(u, p), 1 / (1 - p)));
}

/** log(sum(exp(x))) over the last axis (kept), shifted by the max for stability. */
export function logSumExp(x: Tensor): Tensor {
  const m = stopGradient(max(x, [x.rank - 1], true));
  return add(m, log(sum(exp(sub(x, m)), [x.rank - 1], true)));
}

/** log softmax over the last axis. */
export function logSoftmax(x: Tensor): Tensor {
  return sub(x, logSumExp(x));
}

/** Mean cross-entropy of logits [B, K] against one-hot (or soft) targets [B, K]. */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  if (logits.rank !== 2 || targets.shape.some((d, i) => d !== logits.shape[i])) {
    throw new ShapeError('crossEntropy', 'logits and targets must both be [batch, classes]', { logits: logits.shape, targets: targets.shape });
  }
  return neg(mean(sum(mul(targets, logSoftmax(logits)), [1])));
}

/** Mean of squared differences: the diffusion loss. */
export function mseLoss(pred: Tensor, target: Tensor): Tensor {
  if (pred.rank !== target.rank || pred.shape.some((d, i) => d !== target.shape[i])) {
    throw new ShapeError('mseLoss', 'prediction and target shapes differ', { pred: pred.shape, target: target.shape });
  }
  return mean(square(sub(pred, target)));
}
