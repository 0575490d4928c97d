/**
 * A Program: a traced function compiled to ONNX once per input shape and cached.
 */
import { Executable, HostTensor, RuntimeOptions, dtypeOf } from './runtime.js';
import { Tensor, TensorData, input, sizeOf } from './tensor.js';

export type BuildFn = (inputs: Record<string, Tensor>) => Record<string, Tensor>;

export interface ProgramOptions extends RuntimeOptions {
  /**
   * Values for graph inputs that are not fed (model weights), baked into the
   * model as constants: ONNX Runtime pre-packs them, which makes inference fast.
   */
  weights?: ReadonlyMap<string, TensorData>;
  name?: string;
}

export class Program {
  private readonly cache = new Map<string, Promise<Executable>>();
  constructor(
    private readonly build: BuildFn,
    private readonly opts: ProgramOptions = {},
  ) {}

  /** Number of distinct shapes compiled so far. */
  get compiledShapes(): number {
    return this.cache.size;
  }

  private executable(feeds: Readonly<Record<string, HostTensor>>): Promise<Executable> {
    const key = Object.entries(feeds)
      .map(([k, v]) => `${k}:${dtypeOf(v.data)}[${v.shape.join(',')}]`)
      .sort()
      .join(';');
    let exe = this.cache.get(key);
    if (!exe) {
      const inputs: Record<string, Tensor> = {};
      for (const [name, v] of Object.entries(feeds)) {
        if (v.data.length !== sizeOf(v.shape)) {
          throw new Error(`run: input '${name}' has ${v.data.length} values but shape [${v.shape.join(', ')}] needs ${sizeOf(v.shape)}`);
        }
        inputs[name] = input(name, v.shape, dtypeOf(v.data));
      }
      const outputs = this.build(inputs);
      exe = Executable.compile({ inputs: Object.values(inputs), outputs, initializers: this.opts.weights, name: this.opts.name }, this.opts);
      exe.catch(() => this.cache.delete(key));
      this.cache.set(key, exe);
    }
    return exe;
  }

  async run(feeds: Readonly<Record<string, HostTensor>>): Promise<Record<string, HostTensor>> {
    const exe = await this.executable(feeds);
    const raw = await exe.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.data])));
    const out: Record<string, HostTensor> = {};
    for (const spec of exe.outputs) out[spec.name] = { data: raw[spec.name], shape: spec.shape };
    return out;
  }

  async release(): Promise<void> {
    for (const exe of this.cache.values()) await (await exe).release();
    this.cache.clear();
  }
}
