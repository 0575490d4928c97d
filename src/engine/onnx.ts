/**
 * Compiles a symbolic graph into one ONNX model (opset 17), serialised with protobufjs.
 *
 * The schema below is the subset of onnx.proto (proto2) that Diffuse writes;
 * field numbers follow the ONNX IR specification.
 */
import protobuf from 'protobufjs';
import { topoSort } from './autodiff.js';
import { NCHWC_DOMAIN, ONNX_DTYPE } from './ops.js';
import { Attrs, DType, Emitter, INPUT, CONSTANT, Shape, Tensor, TensorData } from './tensor.js';

export const OPSET = 17;
const IR_VERSION = 8;

const schema = {
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            producerName: { type: 'string', id: 2 },
            producerVersion: { type: 'string', id: 3 },
            docString: { type: 'string', id: 6 },
            graph: { type: 'GraphProto', id: 7 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
          },
        },
        OperatorSetIdProto: { fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } } },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
            domain: { type: 'string', id: 7 },
          },
        },
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            s: { type: 'bytes', id: 4 },
            floats: { rule: 'repeated', type: 'float', id: 7 },
            ints: { rule: 'repeated', type: 'int64', id: 8 },
            type: { type: 'int32', id: 20 },
          },
        },
        ValueInfoProto: { fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } } },
        TypeProto: { fields: { tensorType: { type: 'TensorTypeProto', id: 1 } } },
        TensorTypeProto: { fields: { elemType: { type: 'int32', id: 1 }, shape: { type: 'TensorShapeProto', id: 2 } } },
        TensorShapeProto: { fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } } },
        Dimension: { fields: { dimValue: { type: 'int64', id: 1 } } },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            dataType: { type: 'int32', id: 2 },
            name: { type: 'string', id: 8 },
            rawData: { type: 'bytes', id: 9 },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(schema);
const ModelProto = root.lookupType('onnx.ModelProto');

// AttributeProto.AttributeType
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, FLOATS: 6, INTS: 7 } as const;

/** ONNX attributes that are floats even when their value is a whole number. */
const FLOAT_ATTRS = new Set(['epsilon', 'alpha', 'beta', 'gamma', 'momentum']);

interface NodeJson {
  input: string[];
  output: string[];
  opType: string;
  domain?: string;
  name?: string;
  attribute: object[];
}

/** Name, dtype and shape of a model input or output. */
export interface ValueSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

export interface CompileSpec {
  /** Leaves fed at run time, in order. */
  readonly inputs: readonly Tensor[];
  /** Named results. */
  readonly outputs: Readonly<Record<string, Tensor>>;
  /** Input leaves whose values are baked into the model (by input name): inference graphs bake weights. */
  readonly initializers?: ReadonlyMap<string, TensorData>;
  readonly name?: string;
  /**
   * ONNX Runtime's NCHWc channel block on the CPU that will run the model (`cpuConvBlock()`), or
   * 0 (the default) for a model that must run anywhere: convolutions with fed or computed
   * weights then use the blocked kernels (com.microsoft.nchwc), which only that CPU provider has.
   */
  readonly convBlock?: number;
}

export interface CompiledModel {
  readonly bytes: Uint8Array;
  readonly inputs: readonly ValueSpec[];
  readonly outputs: readonly ValueSpec[];
  /** Number of ONNX nodes, for diagnostics. */
  readonly nodeCount: number;
}

function attribute(name: string, v: Attrs[string]): object | null {
  if (v === undefined) return null;
  if (typeof v === 'string') return { name, type: ATTR.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'boolean') return { name, type: ATTR.INT, i: v ? 1 : 0 };
  if (typeof v === 'number') {
    return Number.isInteger(v) && !FLOAT_ATTRS.has(name) ? { name, type: ATTR.INT, i: v } : { name, type: ATTR.FLOAT, f: v };
  }
  return { name, type: ATTR.INTS, ints: [...v] };
}

function rawBytes(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function tensorProto(name: string, dtype: DType, shape: Shape, data: TensorData): object {
  return { name, dims: [...shape], dataType: ONNX_DTYPE[dtype], rawData: rawBytes(data) };
}

function valueInfo(v: ValueSpec): object {
  return {
    name: v.name,
    type: { tensorType: { elemType: ONNX_DTYPE[v.dtype], shape: { dim: v.shape.map((d) => ({ dimValue: d })) } } },
  };
}

function typed(values: ArrayLike<number>, dtype: DType): TensorData {
  if (dtype === 'int64') return BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
  return dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values);
}

/** Serialises the graph that computes `spec.outputs` from `spec.inputs`. */
export function compileModel(spec: CompileSpec): CompiledModel {
  const outputEntries = Object.entries(spec.outputs);
  if (outputEntries.length === 0) throw new Error('compile: no outputs');
  const order = topoSort(outputEntries.map(([, t]) => t));
  const baked = spec.initializers ?? new Map<string, TensorData>();

  const nodes: NodeJson[] = [];
  const initializers: object[] = [];
  const names = new Map<number, string>();
  let counter = 0;
  const fresh = () => `v${counter++}`;
  const constCache = new Map<string, string>();
  const initializerNames = new Set<string>();
  const domains = new Set<string>();

  const emitter: Emitter = {
    node(opType, inputs, attrs = {}, outputs, domain) {
      const outs = outputs ? [...outputs] : [fresh()];
      const attrList = Object.entries(attrs)
        .map(([k, v]) => attribute(k, v))
        .filter((a): a is object => a !== null);
      // Nodes of another domain are named after it, so that ONNX Runtime's profile tells them apart (bench/profile.ts).
      nodes.push({ input: [...inputs], output: outs, opType, attribute: attrList, ...(domain ? { domain, name: `${domain}.${opType}.${nodes.length}` } : {}) });
      if (domain) domains.add(domain);
      return outs;
    },
    isInitializer: (name) => initializerNames.has(name),
    convBlock: spec.convBlock ?? 0,
    ints(values) {
      return this.floats(values, [values.length], 'int64');
    },
    floats(values, shape, dtype) {
      const small = values.length <= 64;
      const key = small ? `${dtype}|${shape.join(',')}|${Array.from(values).join(',')}` : '';
      const hit = small ? constCache.get(key) : undefined;
      if (hit) return hit;
      const name = `c${counter++}`;
      initializers.push(tensorProto(name, dtype, shape, typed(values, dtype)));
      initializerNames.add(name);
      if (small) constCache.set(key, name);
      return name;
    },
  };

  // Declared inputs
  const inputSpecs: ValueSpec[] = [];
  const declared = new Set<number>();
  const inputNames = new Set<string>();
  for (const t of spec.inputs) {
    if (t.op !== INPUT || !t.name) throw new Error(`compile: ${t} is not an input leaf`);
    if (inputNames.has(t.name)) throw new Error(`compile: input name '${t.name}' is used twice`);
    inputNames.add(t.name);
    declared.add(t.id);
    names.set(t.id, t.name);
    inputSpecs.push({ name: t.name, dtype: t.dtype, shape: t.shape });
  }

  // Outputs computed by a node take the output's name directly.
  const outputNames = new Set<string>();
  for (const [name, t] of outputEntries) {
    if (inputNames.has(name)) throw new Error(`compile: output name '${name}' is also an input name`);
    outputNames.add(name);
    if (t.op !== INPUT && t.op !== CONSTANT && !names.has(t.id)) names.set(t.id, name);
  }

  for (const t of order) {
    if (t.op === INPUT) {
      if (declared.has(t.id)) continue;
      const value = t.name !== undefined ? baked.get(t.name) : undefined;
      if (!value) throw new Error(`compile: the graph reads input '${t.name}' but it was neither declared nor given a value`);
      if (value.length !== t.size) {
        throw new Error(`compile: value for '${t.name}' has ${value.length} elements, expected ${t.size} [${t.shape.join(', ')}]`);
      }
      const name = `w.${t.name}`;
      names.set(t.id, name);
      initializers.push(tensorProto(name, t.dtype, t.shape, value));
      initializerNames.add(name);
      continue;
    }
    if (t.op === CONSTANT) {
      names.set(t.id, emitter.floats(Array.from(t.data as ArrayLike<number | bigint>, Number), t.shape, t.dtype));
      continue;
    }
    const out = names.get(t.id) ?? fresh();
    names.set(t.id, out);
    t.op.emit(emitter, t, t.inputs.map((i) => names.get(i.id) as string), out);
  }

  const outputSpecs: ValueSpec[] = [];
  for (const [name, t] of outputEntries) {
    const have = names.get(t.id) as string;
    if (have !== name) emitter.node('Identity', [have], {}, [name]);
    outputSpecs.push({ name, dtype: t.dtype, shape: t.shape });
  }

  dropUnreadOptionalOutputs(nodes, outputNames);

  const model = {
    irVersion: IR_VERSION,
    producerName: 'diffuse',
    producerVersion: '0.1.0',
    opsetImport: [{ domain: '', version: OPSET }, ...[...domains].sort().map((domain) => ({ domain, version: 1 }))],
    graph: {
      name: spec.name ?? 'diffuse',
      node: nodes,
      initializer: initializers,
      input: inputSpecs.map(valueInfo),
      output: outputSpecs.map(valueInfo),
    },
  };
  const err = ModelProto.verify(model);
  if (err) throw new Error(`compile: invalid model: ${err}`);
  const bytes = ModelProto.encode(ModelProto.fromObject(model)).finish();
  return { bytes, inputs: inputSpecs, outputs: outputSpecs, nodeCount: nodes.length };
}

/**
 * A one-node model that asks ONNX Runtime's CPU provider for its NCHWc channel block: ReorderInput
 * pads 4 channels up to the block, so the output's channel count is the block size.
 */
export function convBlockProbe(): Uint8Array {
  const x = valueInfo({ name: 'x', dtype: 'float32', shape: [1, 4, 1, 1] });
  const y = { name: 'y', type: { tensorType: { elemType: ONNX_DTYPE.float32 } } };
  const model = {
    irVersion: IR_VERSION,
    producerName: 'diffuse',
    opsetImport: [{ domain: '', version: OPSET }, { domain: NCHWC_DOMAIN, version: 1 }],
    graph: { name: 'nchwc-probe', node: [{ input: ['x'], output: ['y'], opType: 'ReorderInput', domain: NCHWC_DOMAIN, attribute: [] }], input: [x], output: [y] },
  };
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

/** Ops whose outputs after the first are optional in ONNX (LayerNormalization's mean and 1/std). */
const OPTIONAL_TRAILING_OUTPUTS = new Set(['LayerNormalization']);

/**
 * Drops the optional trailing outputs that no node and no graph output reads: an inference graph
 * does not keep LayerNormalization's 1/std for a backward pass, and onnxruntime-web's WebGPU
 * kernel refuses the node when it is asked for them.
 */
function dropUnreadOptionalOutputs(nodes: NodeJson[], graphOutputs: ReadonlySet<string>): void {
  const read = new Set<string>(graphOutputs);
  for (const n of nodes) for (const i of n.input) read.add(i);
  read.delete(''); // an omitted optional input, not a value
  for (const n of nodes) {
    if (!OPTIONAL_TRAILING_OUTPUTS.has(n.opType)) continue;
    while (n.output.length > 1 && !read.has(n.output[n.output.length - 1])) n.output.pop();
    for (let k = 1; k < n.output.length; k++) if (!read.has(n.output[k])) n.output[k] = '';
  }
}

/** Reads back the op types of a model (for tests and diagnostics). */
export function modelOpTypes(bytes: Uint8Array): string[] {
  return modelNodes(bytes).map((n) => n.opType);
}

/** Reads back each node's op type and output names (for tests and diagnostics). */
export function modelNodes(bytes: Uint8Array): { opType: string; outputs: string[] }[] {
  const m = ModelProto.toObject(ModelProto.decode(bytes)) as { graph?: { node?: { opType: string; output?: string[] }[] } };
  return (m.graph?.node ?? []).map((n) => ({ opType: n.opType, outputs: n.output ?? [] }));
}
