/**
 * The .safetensors format: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__: {...}},
 * then the raw little-endian data. Files are written atomically (temp + rename). Half-precision
 * tensors (F16, BF16: what PyTorch saves with .half() or .bfloat16()) are read as float32.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { halfToFloat32 } from './half.js';
import { DType, Shape, TensorData, sizeOf } from './tensor.js';

export { float32ToHalf, halfToFloat32 } from './half.js';

const CODE: Record<DType, string> = { float32: 'F32', float64: 'F64', int64: 'I64' };
const BYTES: Record<string, number> = { F32: 4, F64: 8, I64: 8, F16: 2, BF16: 2 };

export interface NamedTensor {
  readonly shape: Shape;
  readonly data: TensorData;
}

function dtypeCode(data: TensorData): string {
  return data instanceof Float32Array ? CODE.float32 : data instanceof Float64Array ? CODE.float64 : CODE.int64;
}

/** Serialises tensors (sorted by name) and string metadata. */
export function encodeSafetensors(tensors: ReadonlyMap<string, NamedTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name) as NamedTensor;
    if (t.data.length !== sizeOf(t.shape)) throw new Error(`safetensors: '${name}' has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    header[name] = { dtype: dtypeCode(t.data), shape: [...t.shape], data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  // Pad the UTF-8 bytes (not the string's length: metadata may hold non-ASCII text) so that the data start 8-byte aligned.
  const json = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(json.length + ((8 - (json.length % 8)) % 8)).fill(0x20);
  head.set(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const name of names) {
    const d = (tensors.get(name) as NamedTensor).data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}

export interface Safetensors {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

/** Parses safetensors bytes; `source` names the file in error messages. */
export function decodeSafetensors(bytes: Uint8Array, source = 'safetensors'): Safetensors {
  const fail = (m: string): never => {
    throw new Error(`${source}: not a valid .safetensors file: ${m}`);
  };
  if (bytes.length < 8) fail('shorter than its 8-byte header length');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > bytes.length - 8) fail(`header length ${n} exceeds the file size ${bytes.length}`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch {
    return fail('header is not JSON');
  }
  const dataStart = 8 + n;
  const tensors = new Map<string, NamedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    if (!e.dtype || !(e.dtype in BYTES)) fail(`tensor '${name}' has unsupported dtype ${e.dtype} (F32, F64, I64, F16 and BF16 are read)`);
    if (!Array.isArray(e.shape) || !Array.isArray(e.data_offsets)) fail(`tensor '${name}' lacks shape or data_offsets`);
    const [b, end] = e.data_offsets as [number, number];
    const count = sizeOf(e.shape as number[]);
    if (end - b !== count * BYTES[e.dtype as string] || dataStart + end > bytes.length) {
      fail(`tensor '${name}' data_offsets [${b}, ${end}] do not match shape [${(e.shape as number[]).join(', ')}] or the file size`);
    }
    // Copy: the result must not alias the file buffer, and typed arrays need aligned offsets.
    // (Uint8Array.from, not .slice: a Node Buffer's slice is a view.)
    const raw = Uint8Array.from(bytes.subarray(dataStart + b, dataStart + end));
    const data =
      e.dtype === 'F32'
        ? new Float32Array(raw.buffer)
        : e.dtype === 'F64'
          ? new Float64Array(raw.buffer)
          : e.dtype === 'I64'
            ? new BigInt64Array(raw.buffer)
            : halfToFloat32(new Uint16Array(raw.buffer), e.dtype as 'F16' | 'BF16');
    tensors.set(name, { shape: e.shape as number[], data });
  }
  return { tensors, metadata };
}

/** Writes a file atomically: a temporary file in the same folder, fsynced, then renamed over the target. */
export async function writeFileAtomic(file: string, bytes: Uint8Array | string): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const handle = await fs.open(tmp, 'w');
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

export async function saveSafetensors(file: string, tensors: ReadonlyMap<string, NamedTensor>, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}

export async function loadSafetensors(file: string): Promise<Safetensors> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  return decodeSafetensors(bytes, file);
}
