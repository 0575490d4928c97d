import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeSafetensors, encodeSafetensors, halfToFloat32 } from '../../src/engine/index.js';

/** A safetensors file written by hand, as PyTorch's safetensors.torch.save_file lays it out. */
function handWritten(dtype: string, shape: number[], data: Uint8Array): Uint8Array {
  let json = JSON.stringify({ w: { dtype, shape, data_offsets: [0, data.length] } });
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

describe('safetensors', () => {
  it('pads the header on its UTF-8 byte length, so non-ASCII metadata keeps the data aligned', () => {
    const tensors = new Map([['a', { shape: [3], data: Float32Array.of(1, 2, 3) }]]);
    for (const note of ['plain', 'café, naïve, 数字', '🙂🙂🙂']) {
      const bytes = encodeSafetensors(tensors, { note });
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      assert.equal((8 + n) % 8, 0, `data start for metadata '${note}'`);
      const back = decodeSafetensors(bytes);
      assert.equal(back.metadata.note, note);
      assert.deepEqual(back.tensors.get('a')?.data, Float32Array.of(1, 2, 3));
    }
  });

  it('reads F16 and BF16 tensors as float32, exactly', () => {
    // Bit patterns and their values from IEEE 754 binary16 and bfloat16 definitions.
    const f16: [number, number][] = [
      [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x3555, 0.333251953125], [0x0001, 2 ** -24], [0x0400, 2 ** -14], [0x8000, -0], [0x7c00, Infinity], [0xfc00, -Infinity],
    ];
    const bf16: [number, number][] = [[0x3f80, 1], [0x4049, 3.140625], [0xc2f7, -123.5], [0x0000, 0], [0x7f80, Infinity]];
    for (const [dtype, table] of [['F16', f16], ['BF16', bf16]] as const) {
      const bits = Uint16Array.from(table.map(([b]) => b));
      const { tensors } = decodeSafetensors(handWritten(dtype, [bits.length], new Uint8Array(bits.buffer)));
      const got = tensors.get('w')?.data as Float32Array;
      assert.ok(got instanceof Float32Array, `${dtype} becomes float32`);
      table.forEach(([b, v], i) => assert.ok(Object.is(got[i], v), `${dtype} 0x${b.toString(16)}: ${got[i]} vs ${v}`));
    }
    assert.ok(Number.isNaN(halfToFloat32(Uint16Array.of(0x7e00), 'F16')[0]));
  });

  it('names an unsupported dtype', () => {
    assert.throws(() => decodeSafetensors(handWritten('U8', [2], Uint8Array.of(1, 2)), 'w.safetensors'), /w\.safetensors: not a valid \.safetensors file: tensor 'w' has unsupported dtype U8 \(F32, F64, I64, F16 and BF16 are read\)/);
  });
});
