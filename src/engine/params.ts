/**
 * Parameters: named float32 arrays that live on the host between runs.
 *
 * A model is a function that asks a ParamScope for its parameters while it
 * builds its graph: `scope.param('weight', [64, 3, 3, 3], init.kaiming(27))`.
 * The first trace creates and initialises each parameter in the store; every
 * trace returns a graph input of the same name, so one store serves training
 * graphs (weights as inputs) and inference graphs (weights baked in).
 */
import { ShapeError, Shape, Tensor, input, sizeOf } from './tensor.js';

/** A small, fast, seedable generator (mulberry32) with Box-Muller normals. */
export class Rng {
  private state: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  uniform(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  fillNormal(out: Float32Array | Float64Array, std = 1): typeof out {
    for (let i = 0; i < out.length; i++) out[i] = this.normal() * std;
    return out;
  }
  fillUniform(out: Float32Array | Float64Array, lo = 0, hi = 1): typeof out {
    for (let i = 0; i < out.length; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }
  /** Generator state, for exact resumption. */
  getState(): number[] {
    return [this.state, this.spare ?? Number.NaN];
  }
  setState([s, spare]: readonly number[]): void {
    this.state = s >>> 0;
    this.spare = Number.isNaN(spare) ? null : spare;
  }
}

/** Initialisers: functions filling a new parameter. */
export type Init = (out: Float32Array, rng: Rng) => void;
export const init = {
  zeros: (): Init => (out) => out.fill(0),
  ones: (): Init => (out) => out.fill(1),
  normal: (std: number): Init => (out, rng) => void rng.fillNormal(out, std),
  uniform: (bound: number): Init => (out, rng) => void rng.fillUniform(out, -bound, bound),
  /** PyTorch's default for Linear/Conv weights: U(-1/sqrt(fanIn), 1/sqrt(fanIn)) (kaiming_uniform, a = sqrt 5). */
  torchDefault: (fanIn: number): Init => init.uniform(1 / Math.sqrt(fanIn)),
};

export interface Param {
  readonly shape: Shape;
  data: Float32Array;
}

/** All parameters of a model, by dotted name. */
export class ParamStore {
  readonly params = new Map<string, Param>();
  readonly rng: Rng;
  constructor(seed = 0) {
    this.rng = new Rng(seed);
  }
  get(name: string): Param | undefined {
    return this.params.get(name);
  }
  /** Creates (if new) and returns a parameter, checking its shape against an existing one. */
  ensure(name: string, shape: Shape, fill: Init): Param {
    const have = this.params.get(name);
    if (have) {
      if (have.shape.length !== shape.length || have.shape.some((d, i) => d !== shape[i])) {
        throw new ShapeError('param', `parameter '${name}' exists with another shape`, { stored: have.shape, requested: shape });
      }
      return have;
    }
    const data = new Float32Array(sizeOf(shape));
    fill(data, this.rng);
    const p = { shape: [...shape], data };
    this.params.set(name, p);
    return p;
  }
  /** Total number of scalars. */
  count(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.data.length;
    return n;
  }
  /** Name -> data, for baking weights into an inference graph. */
  values(): Map<string, Float32Array> {
    return new Map([...this.params].map(([k, p]) => [k, p.data]));
  }
}

/** Hands out named parameter tensors while a model traces its graph. */
export class ParamScope {
  constructor(
    readonly store: ParamStore,
    readonly prefix = '',
    /** Parameters used by this trace (shared between a scope and its children). */
    readonly used: Map<string, Tensor> = new Map(),
  ) {}

  param(name: string, shape: Shape, fill: Init): Tensor {
    const full = this.prefix + name;
    const known = this.used.get(full);
    if (known) {
      if (known.shape.some((d, i) => d !== shape[i]) || known.rank !== shape.length) {
        throw new ShapeError('param', `parameter '${full}' requested twice with different shapes`, { first: known.shape, second: shape });
      }
      return known;
    }
    this.store.ensure(full, shape, fill);
    const t = input(full, shape, 'float32');
    this.used.set(full, t);
    return t;
  }

  child(name: string | number): ParamScope {
    return new ParamScope(this.store, `${this.prefix}${name}.`, this.used);
  }
}
