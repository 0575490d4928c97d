/**
 * One training step as one ONNX model: forward, loss, backward, gradient
 * clipping, AdamW and an optional EMA of the weights, in a single session run.
 *
 * Parameters, Adam moments and EMA weights are graph inputs and outputs; the
 * host keeps them between steps and swaps in the new values only after the
 * step came back finite, so a NaN never destroys the weights.
 */
import { grad } from './autodiff.js';
import { add, div, minimum, mul, sqrt, sub, sum } from './ops.js';
import { ParamScope, ParamStore } from './params.js';
import { Executable, RuntimeOptions } from './runtime.js';
import { DType, Shape, Tensor, TensorData, input } from './tensor.js';
import { NamedTensor, loadSafetensors, saveSafetensors } from './safetensors.js';

export interface AdamWOptions {
  /** Learning rate (can be changed per step). */
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay, applied to parameters of rank >= 2 (not to biases and norm scales). */
  weightDecay?: number;
  /** Clip gradients to this global L2 norm (off when undefined). */
  clipGradNorm?: number;
  /** Keep an exponential moving average of the weights with this decay (off when undefined). */
  emaDecay?: number;
  /** Stop with an error when the loss or gradient norm is NaN/Inf (default true). */
  checkFinite?: boolean;
}

export interface BatchSpec {
  readonly shape: Shape;
  readonly dtype?: DType;
}

export interface StepResult {
  loss: number;
  gradNorm: number;
  step: number;
}

/** Raised when a step's loss or gradients are not finite; the weights are left as they were. */
export class NonFiniteError extends Error {
  constructor(step: number, loss: number, gradNorm: number) {
    super(`training diverged at step ${step}: loss ${loss}, gradient norm ${gradNorm}. The weights were not updated; lower the learning rate or enable clipGradNorm.`);
    this.name = 'NonFiniteError';
  }
}

const M = 'adam_m/';
const V = 'adam_v/';
const EMA = 'ema/';
const NEW = 'new/';

export class TrainStep {
  /** Adam moments and EMA weights, by parameter name. */
  readonly m = new Map<string, Float32Array>();
  readonly v = new Map<string, Float32Array>();
  readonly ema = new Map<string, Float32Array>();
  /** Number of updates applied. */
  step = 0;

  private constructor(
    readonly store: ParamStore,
    readonly names: readonly string[],
    readonly options: Required<Omit<AdamWOptions, 'clipGradNorm' | 'emaDecay'>> & Pick<AdamWOptions, 'clipGradNorm' | 'emaDecay'>,
    private readonly exe: Executable,
    readonly batchNames: readonly string[],
  ) {
    for (const n of names) {
      const size = (store.get(n) as { data: Float32Array }).data.length;
      this.m.set(n, new Float32Array(size));
      this.v.set(n, new Float32Array(size));
      if (options.emaDecay !== undefined) this.ema.set(n, Float32Array.from((store.get(n) as { data: Float32Array }).data));
    }
  }

  /**
   * Traces `loss(scope, batch)` and compiles the whole step.
   * Parameters the loss asks for are created in `store` on first use.
   */
  static async create(opts: {
    store: ParamStore;
    batch: Readonly<Record<string, BatchSpec>>;
    loss: (scope: ParamScope, batch: Record<string, Tensor>) => Tensor;
    optimizer: AdamWOptions;
    runtime?: RuntimeOptions;
  }): Promise<TrainStep> {
    const o = {
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
      checkFinite: true,
      ...opts.optimizer,
    };
    const batch: Record<string, Tensor> = {};
    for (const [k, s] of Object.entries(opts.batch)) batch[k] = input(k, s.shape, s.dtype ?? 'float32');
    const scope = new ParamScope(opts.store);
    const loss = opts.loss(scope, batch);
    if (loss.size !== 1) throw new Error(`TrainStep: the loss must be a scalar, got shape [${loss.shape.join(', ')}]`);
    const names = [...scope.used.keys()];
    for (const n of names) if (n in batch) throw new Error(`TrainStep: batch input '${n}' has the same name as a parameter`);
    const params = names.map((n) => scope.used.get(n) as Tensor);
    let grads = grad(loss, params);

    // Global gradient norm and clipping.
    let sq: Tensor | undefined;
    for (const g of grads) {
      const s = sum(mul(g, g));
      sq = sq ? add(sq, s) : s;
    }
    const gradNorm = sqrt(sq as Tensor);
    if (o.clipGradNorm !== undefined) {
      const scale = minimum(div(o.clipGradNorm, add(gradNorm, 1e-6)), 1);
      grads = grads.map((g) => mul(g, scale));
    }

    const scalar = (name: string) => input(name, [], 'float32');
    const stepSize = scalar('opt.step_size'); // lr / (1 - beta1^t)
    const bc2Sqrt = scalar('opt.bc2_sqrt'); // sqrt(1 - beta2^t)
    const decay = scalar('opt.decay_factor'); // 1 - lr * weightDecay
    const emaDecay = scalar('opt.ema_decay');
    const inputs: Tensor[] = [...Object.values(batch), stepSize, bc2Sqrt, decay];
    const outputs: Record<string, Tensor> = { loss: loss.rank ? sum(loss) : loss, grad_norm: gradNorm };
    params.forEach((p, i) => {
      const n = names[i];
      const g = grads[i];
      const m = input(M + n, p.shape);
      const v = input(V + n, p.shape);
      inputs.push(p, m, v);
      // AdamW (Loshchilov & Hutter 2019), in PyTorch's arrangement:
      // m' = b1 m + (1-b1) g;  v' = b2 v + (1-b2) g^2
      // p' = p (1 - lr wd) - lr/(1-b1^t) * m' / (sqrt(v') / sqrt(1-b2^t) + eps)
      const m2 = add(mul(m, o.beta1), mul(g, 1 - o.beta1));
      const v2 = add(mul(v, o.beta2), mul(mul(g, g), 1 - o.beta2));
      const decayed = p.rank >= 2 && o.weightDecay > 0 ? mul(p, decay) : p;
      const p2 = sub(decayed, mul(stepSize, div(m2, add(div(sqrt(v2), bc2Sqrt), o.eps))));
      outputs[NEW + n] = p2;
      outputs[NEW + M + n] = m2;
      outputs[NEW + V + n] = v2;
      if (o.emaDecay !== undefined) {
        const e = input(EMA + n, p.shape);
        inputs.push(e);
        outputs[NEW + EMA + n] = add(mul(e, emaDecay), mul(p2, sub(1, emaDecay)));
      }
    });
    if (o.emaDecay !== undefined) inputs.push(emaDecay);
    const exe = await Executable.compile({ inputs, outputs, name: 'train_step' }, opts.runtime);
    return new TrainStep(opts.store, names, o, exe, Object.keys(batch));
  }

  /**
   * Runs one step on a batch. `lr` overrides the learning rate (for schedules);
   * `emaDecay` overrides the EMA decay (for warm-up).
   */
  async run(batch: Readonly<Record<string, TensorData>>, over: { lr?: number; emaDecay?: number } = {}): Promise<StepResult> {
    const o = this.options;
    const lr = over.lr ?? o.lr;
    const t = this.step + 1;
    const feeds: Record<string, TensorData> = {};
    for (const n of this.batchNames) {
      if (!(n in batch)) throw new Error(`TrainStep: batch is missing '${n}'`);
      feeds[n] = batch[n];
    }
    feeds['opt.step_size'] = Float32Array.of(lr / (1 - Math.pow(o.beta1, t)));
    feeds['opt.bc2_sqrt'] = Float32Array.of(Math.sqrt(1 - Math.pow(o.beta2, t)));
    feeds['opt.decay_factor'] = Float32Array.of(1 - lr * o.weightDecay);
    if (o.emaDecay !== undefined) feeds['opt.ema_decay'] = Float32Array.of(over.emaDecay ?? o.emaDecay);
    for (const n of this.names) {
      feeds[n] = (this.store.get(n) as { data: Float32Array }).data;
      feeds[M + n] = this.m.get(n) as Float32Array;
      feeds[V + n] = this.v.get(n) as Float32Array;
      if (o.emaDecay !== undefined) feeds[EMA + n] = this.ema.get(n) as Float32Array;
    }
    const out = await this.exe.run(feeds);
    const loss = (out.loss as Float32Array)[0];
    const gradNorm = (out.grad_norm as Float32Array)[0];
    if (o.checkFinite && !(Number.isFinite(loss) && Number.isFinite(gradNorm))) throw new NonFiniteError(t, loss, gradNorm);
    for (const n of this.names) {
      (this.store.get(n) as { data: Float32Array }).data = out[NEW + n] as Float32Array;
      this.m.set(n, out[NEW + M + n] as Float32Array);
      this.v.set(n, out[NEW + V + n] as Float32Array);
      if (o.emaDecay !== undefined) this.ema.set(n, out[NEW + EMA + n] as Float32Array);
    }
    this.step = t;
    return { loss, gradNorm, step: t };
  }

  /** Weights, Adam moments, EMA and step count as one .safetensors file (atomic). */
  async save(file: string, metadata: Record<string, string> = {}): Promise<void> {
    const tensors = new Map<string, NamedTensor>();
    for (const n of this.names) {
      const p = this.store.get(n) as { shape: Shape; data: Float32Array };
      tensors.set(n, p);
      tensors.set(M + n, { shape: p.shape, data: this.m.get(n) as Float32Array });
      tensors.set(V + n, { shape: p.shape, data: this.v.get(n) as Float32Array });
      const e = this.ema.get(n);
      if (e) tensors.set(EMA + n, { shape: p.shape, data: e });
    }
    await saveSafetensors(file, tensors, { ...metadata, 'diffuse.step': String(this.step), 'diffuse.format': 'train-state-1' });
  }

  /** Restores what `save` wrote; every parameter must be present with its shape. */
  async load(file: string): Promise<Record<string, string>> {
    const { tensors, metadata } = await loadSafetensors(file);
    const take = (name: string, shape: Shape): Float32Array => {
      const t = tensors.get(name);
      if (!t) throw new Error(`${file}: missing tensor '${name}' (was the checkpoint written by another model config?)`);
      if (!(t.data instanceof Float32Array) || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new Error(`${file}: tensor '${name}' is [${t.shape.join(', ')}], the model expects float32 [${shape.join(', ')}]`);
      }
      return t.data;
    };
    for (const n of this.names) {
      const p = this.store.get(n) as { shape: Shape; data: Float32Array };
      p.data = take(n, p.shape);
      this.m.set(n, take(M + n, p.shape));
      this.v.set(n, take(V + n, p.shape));
      if (this.options.emaDecay !== undefined) this.ema.set(n, tensors.has(EMA + n) ? take(EMA + n, p.shape) : Float32Array.from(p.data));
    }
    this.step = Number(metadata['diffuse.step'] ?? 0);
    return metadata;
  }

  async release(): Promise<void> {
    await this.exe.release();
  }
}
