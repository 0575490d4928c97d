/**
 * One network of a model folder (`unet/model.onnx`, ...) in an ONNX Runtime session, fed by input
 * name: each input is given in the dtype and rank the file declares, because exports differ
 * (Optimum today: int64 input_ids and a float32 scalar timestep; diffusers' old ONNX script and
 * early Optimum: int32 input_ids and an int64 timestep of shape [1]; `--dtype fp16` exports: float16
 * inputs and outputs). Float values stay float32 outside the network: a float16 input is
 * rounded to half precision (ties to even) on the way in, a float16 output widened on the way out.
 * Node-free: model-folder.ts opens the files of a folder on disk, the studio page opens URLs.
 */
import type * as Ort from 'onnxruntime-common';
import { float32ToHalf, halfToFloat32 } from '../engine/half.js';
import type { OrtModule } from '../engine/runtime.js';

/** An input value before conversion: floats, or integers given as numbers. */
export interface ComponentInput {
  data: Float32Array | number[];
  /** Dimensions of the value; a scalar is []. */
  dims: number[];
}

/** The inputs a pipeline feeds a component and the outputs it reads, by name. */
export interface ComponentNeeds {
  inputs: string[];
  outputs: string[];
}

interface InputInfo {
  type: Ort.Tensor.Type;
  rank: number;
}

export class OnnxComponent {
  private constructor(
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
    /** The .onnx file (a path or a URL), for errors. */
    readonly file: string,
    private readonly inputs: Map<string, InputInfo>,
  ) {}

  /**
   * Creates the session for a model (a path in Node, a URL or the bytes in a browser) with any ONNX
   * Runtime module, and checks that it has the named inputs and outputs. `file` names it in errors.
   */
  static async create(ort: OrtModule, model: string | Uint8Array, file: string, need: ComponentNeeds, options: Ort.InferenceSession.SessionOptions = {}): Promise<OnnxComponent> {
    let session: Ort.InferenceSession;
    try {
      session = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
    } catch (e) {
      throw new Error(`${file}: ONNX Runtime cannot load it (${String((e as Error).message ?? e).split('\n')[0]})`);
    }
    const missing = [...need.inputs.filter((n) => !session.inputNames.includes(n)).map((n) => `input '${n}'`), ...need.outputs.filter((n) => !session.outputNames.includes(n)).map((n) => `output '${n}'`)];
    if (missing.length) {
      await session.release();
      throw new Error(`${file}: has no ${missing.join(', ')} (inputs: ${session.inputNames.join(', ')}; outputs: ${session.outputNames.join(', ')})`);
    }
    const inputs = new Map<string, InputInfo>();
    for (const m of session.inputMetadata) {
      if (!m.isTensor) continue;
      inputs.set(m.name, { type: m.type, rank: m.shape.length });
    }
    return new OnnxComponent(ort, session, file, inputs);
  }

  /** The declared type of an input ('float32', 'int64', ...). */
  inputType(name: string): Ort.Tensor.Type | undefined {
    return this.inputs.get(name)?.type;
  }

  /**
   * Runs the network. A value whose rank differs from the declared one by leading dimensions of 1
   * (a scalar timestep for a [1] input, or the reverse) is reshaped to the declared rank.
   */
  async run(feeds: Record<string, ComponentInput>, outputs: string[]): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>> {
    const tensors: Record<string, Ort.Tensor> = {};
    for (const [name, v] of Object.entries(feeds)) {
      const info = this.inputs.get(name);
      if (!info) throw new Error(`${this.file}: has no input '${name}'`);
      let dims = v.dims;
      if (info.rank !== dims.length) {
        const size = dims.reduce((a, b) => a * b, 1);
        if (size !== 1 || info.rank > 1) throw new Error(`${this.file}: input '${name}' has rank ${info.rank}, given ${JSON.stringify(dims)}`);
        dims = info.rank === 0 ? [] : [1];
      }
      tensors[name] = this.tensor(info.type, v.data, dims, name);
    }
    let out: Ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(tensors, outputs);
    } catch (e) {
      throw new Error(`${this.file}: ${(e as Error).message.split('\n')[0]}`);
    }
    const result: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
    for (const name of outputs) {
      const t = out[name];
      // A float16 output is the bits in a Uint16Array, or, where the JS engine has Float16Array (Chromium's does), the values.
      if (t.type === 'float16') result[name] = { data: t.data instanceof Uint16Array ? halfToFloat32(t.data, 'F16') : Float32Array.from(t.data as ArrayLike<number>), dims: t.dims };
      else if (t.type === 'float32') result[name] = { data: t.data as Float32Array, dims: t.dims };
      else throw new Error(`${this.file}: output '${name}' is ${t.type}; float32 and float16 outputs only`);
    }
    return result;
  }

  private tensor(type: Ort.Tensor.Type, data: Float32Array | number[], dims: number[], name: string): Ort.Tensor {
    switch (type) {
      case 'float32':
        return new this.ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);
      case 'float16':
        return new this.ort.Tensor('float16', float32ToHalf(data instanceof Float32Array ? data : Float32Array.from(data)), dims);
      case 'int64':
        return new this.ort.Tensor('int64', BigInt64Array.from(Array.from(data, (x) => BigInt(Math.round(x)))), dims);
      case 'int32':
        return new this.ort.Tensor('int32', Int32Array.from(data, (x) => Math.round(x)), dims);
      default:
        throw new Error(`${this.file}: input '${name}' is ${type}; float32, float16, int64 and int32 inputs only`);
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
