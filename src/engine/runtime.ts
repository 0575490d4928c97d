/**
 * Runs compiled models with ONNX Runtime.
 *
 * `onnxruntime-node` (CPU, or CUDA when asked for and installed) is the default;
 * any module with ONNX Runtime's JavaScript API (`onnxruntime-web` in a browser)
 * can be passed instead, since both take the same model bytes.
 */
import type * as Ort from 'onnxruntime-common';
import { CompileSpec, CompiledModel, ValueSpec, compileModel, convBlockProbe } from './onnx.js';
import { DType, Shape, TensorData, sizeOf } from './tensor.js';

/** The part of ONNX Runtime's JS API that Diffuse uses (onnxruntime-node and onnxruntime-web both provide it). */
export interface OrtModule {
  InferenceSession: typeof Ort.InferenceSession;
  Tensor: typeof Ort.Tensor;
}

export type Device = 'cpu' | 'cuda';

export interface RuntimeOptions {
  /** 'cpu' (default) or 'cuda' (onnxruntime-node with its CUDA provider installed; see README). */
  device?: Device;
  /** Intra-op threads (default: one per core in Node; ONNX Runtime's choice elsewhere). */
  threads?: number;
  /** Another ONNX Runtime module, e.g. onnxruntime-web. */
  ort?: OrtModule;
  /**
   * ONNX Runtime's memory pattern: one block planned from the first run for every intermediate
   * value (default off; DIFFUSE_ORT_MEMPATTERN=1 turns it on for comparisons). On the training
   * step it kept 1.6 GB where allocating as the run goes peaks at 0.9 GB, at the same speed
   * (docs/BENCHMARKS.md); the arithmetic, and so every result, is the same either way.
   */
  memoryPattern?: boolean;
  /**
   * Training convolutions on ONNX Runtime's blocked (NCHWc) CPU kernels where this machine has
   * them (default on; DIFFUSE_ORT_NCHWC=0 turns it off for comparisons). They sum in another
   * order than the plain kernel, so results differ from it in the last bits (docs/ENGINE.md).
   */
  blockedConv?: boolean;
}

let nodeOrt: Promise<OrtModule> | undefined;
/** Loads onnxruntime-node lazily, so that importing Diffuse in a browser bundle does not pull it in. */
export function defaultOrt(): Promise<OrtModule> {
  nodeOrt ??= import('onnxruntime-node').then((m) => (m as unknown as { default?: OrtModule }).default ?? (m as unknown as OrtModule));
  return nodeOrt;
}

const ORT_TYPE: Record<DType, Ort.Tensor.Type> = { float32: 'float32', float64: 'float64', int64: 'int64' };

/** A tensor on the host: data plus shape. */
export interface HostTensor {
  readonly data: TensorData;
  readonly shape: Shape;
}

export function dtypeOf(data: TensorData): DType {
  return data instanceof Float32Array ? 'float32' : data instanceof Float64Array ? 'float64' : 'int64';
}

/** An environment variable, where there is an environment (Node; not a browser). */
const envFlag = (name: string): string | undefined => (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env[name];
/** DIFFUSE_ORT_PROFILE: the file prefix of ONNX Runtime's profile, when asked for. */
const profilePrefix = (): string | undefined => envFlag('DIFFUSE_ORT_PROFILE') || undefined;

let probedBlock: Promise<number> | undefined;
/**
 * ONNX Runtime's NCHWc channel block for the runtime these options pick: the CPU provider of
 * onnxruntime-node reports it (16 with AVX-512, 8 with AVX2); 0 for CUDA, for another ONNX
 * Runtime module (onnxruntime-web has no blocked kernels), where it is turned off, or where the
 * probe fails (then plain convolutions are used: slower, never wrong).
 */
export function cpuConvBlock(opts: RuntimeOptions = {}): Promise<number> {
  if (opts.ort || (opts.device ?? 'cpu') !== 'cpu' || opts.blockedConv === false || envFlag('DIFFUSE_ORT_NCHWC') === '0') return Promise.resolve(0);
  probedBlock ??= (async () => {
    try {
      const ort = await defaultOrt();
      const session = await ort.InferenceSession.create(convBlockProbe(), { executionProviders: ['cpu'], logSeverityLevel: 3 });
      const y = (await session.run({ x: new ort.Tensor('float32', new Float32Array(4), [1, 4, 1, 1]) })).y;
      await session.release();
      const block = y.dims[1];
      // MLAS's blocked kernels exist for blocks of 8 and 16; anything else means none.
      return block === 8 || block === 16 ? block : 0;
    } catch {
      return 0;
    }
  })();
  return probedBlock;
}

/** A loaded model: feed named host arrays, get named host arrays back. */
export class Executable {
  private constructor(
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
    readonly inputs: readonly ValueSpec[],
    readonly outputs: readonly ValueSpec[],
  ) {}

  /**
   * Compiles a graph for the runtime these options pick and loads it: on onnxruntime-node's CPU,
   * convolutions with fed or computed weights use its blocked kernels (`cpuConvBlock`).
   */
  static async compile(spec: Omit<CompileSpec, 'convBlock'>, opts: RuntimeOptions = {}): Promise<Executable> {
    return Executable.load(compileModel({ ...spec, convBlock: await cpuConvBlock(opts) }), opts);
  }

  static async load(model: CompiledModel, opts: RuntimeOptions = {}): Promise<Executable> {
    const ort = opts.ort ?? (await defaultOrt());
    const device = opts.device ?? 'cpu';
    // ONNX Runtime's own default here is one thread; use every core unless told otherwise.
    const threads = opts.threads ?? (opts.ort ? undefined : (await import('node:os')).availableParallelism());
    const options: Ort.InferenceSession.SessionOptions = {
      executionProviders: device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      ...(threads ? { intraOpNumThreads: threads } : {}),
      // DIFFUSE_ORT_PROFILE=PREFIX: ONNX Runtime's profiler writes PREFIX_<time>.json per session, at release (bench/profile.ts reads them).
      ...(profilePrefix() ? { enableProfiling: true, profileFilePrefix: profilePrefix() } : {}),
      enableMemPattern: opts.memoryPattern ?? envFlag('DIFFUSE_ORT_MEMPATTERN') === '1',
    };
    let session: Ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(model.bytes, options);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (device === 'cuda') {
        throw new Error(`could not start ONNX Runtime on CUDA: ${msg}\nInstall onnxruntime-node with its CUDA provider (README, "GPU (CUDA)") or use the CPU.`);
      }
      throw new Error(`ONNX Runtime rejected the compiled model: ${msg}`);
    }
    return new Executable(ort, session, model.inputs, model.outputs);
  }

  /** Runs the model once. Every declared input must be fed with the declared dtype and size. */
  async run(feeds: Readonly<Record<string, TensorData>>): Promise<Record<string, TensorData>> {
    const ortFeeds: Record<string, Ort.Tensor> = {};
    for (const spec of this.inputs) {
      const data = feeds[spec.name];
      if (data === undefined) throw new Error(`run: missing input '${spec.name}' (${spec.dtype} [${spec.shape.join(', ')}])`);
      const dtype = dtypeOf(data);
      if (dtype !== spec.dtype || data.length !== sizeOf(spec.shape)) {
        throw new Error(
          `run: input '${spec.name}' expects ${spec.dtype} [${spec.shape.join(', ')}] (${sizeOf(spec.shape)} values), got ${dtype} with ${data.length} values`,
        );
      }
      ortFeeds[spec.name] = new this.ort.Tensor(ORT_TYPE[spec.dtype], data, spec.shape as number[]);
    }
    for (const name of Object.keys(feeds)) {
      if (!this.inputs.some((s) => s.name === name)) throw new Error(`run: unknown input '${name}'`);
    }
    const results = await this.session.run(ortFeeds);
    const out: Record<string, TensorData> = {};
    for (const spec of this.outputs) out[spec.name] = results[spec.name].data as TensorData;
    return out;
  }

  async release(): Promise<void> {
    if (profilePrefix()) this.session.endProfiling();
    await this.session.release();
  }
}
