import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as E from '../../src/engine/index.js';

describe('bad input gets a clear error at trace time', () => {
  const x = E.input('x', [2, 3]);
  it('mismatched shapes name the op and both shapes', () => {
    assert.throws(() => E.add(x, E.input('y', [4, 3])), /add: shapes cannot be broadcast together \(a \[2, 3\], b \[4, 3\]\)/);
    assert.throws(() => E.matmul(x, E.input('w', [4, 5])), /matmul: inner dimensions differ \(3 vs 4\) \(a \[2, 3\], b \[4, 5\]\)/);
    assert.throws(
      () => E.conv2d(E.input('img', [1, 3, 8, 8]), E.input('k', [4, 2, 3, 3])),
      /conv2d: weight expects 2 input channels, input has 3 \(x \[1, 3, 8, 8\], weight \[4, 2, 3, 3\]\)/,
    );
    assert.throws(() => E.reshape(x, [4, -1]), /reshape: cannot reshape 6 elements/);
    assert.throws(() => E.concat([x, E.input('z', [3, 3])], 1), /concat: shapes differ off axis 1/);
    assert.throws(() => E.sum(x, [2]), /sum: axis 2 is out of range for rank 2/);
    assert.throws(() => E.groupNorm(E.input('f', [1, 6, 2, 2]), 4, E.input('g', [6]), E.input('b', [6])), /6 channels cannot be split into 4 groups/);
    assert.throws(() => E.mseLoss(x, E.input('t', [3, 2])), /mseLoss: prediction and target shapes differ/);
    assert.throws(() => E.add(x, E.input('i', [2, 3], 'int64')), /dtypes differ: float32 and int64/);
  });

  it('unknown op options are rejected, not silently defaulted', () => {
    const img = E.input('img', [1, 3, 8, 8]);
    const k = E.input('k', [4, 3, 3, 3]);
    assert.throws(() => E.conv2d(img, k, undefined, { strides: 2 } as never), /conv2d: unknown option 'strides' \(known: stride, padding, dilation, groups\)/);
    assert.throws(() => E.conv2d(img, k, undefined, { stride: 0 }), /conv2d: invalid stride 0/);
  });

  it('a parameter asked for with two shapes is an error', () => {
    const s = new E.ParamScope(new E.ParamStore());
    s.param('w', [2, 2], E.init.zeros());
    assert.throws(() => s.param('w', [3, 2], E.init.zeros()), /parameter 'w' requested twice with different shapes/);
  });

  it('compile and run errors name the input', async () => {
    const y = E.mul(x, 2);
    assert.throws(() => E.compileModel({ inputs: [], outputs: { y } }), /reads input 'x' but it was neither declared nor given a value/);
    const exe = await E.Executable.load(E.compileModel({ inputs: [x], outputs: { y } }));
    await assert.rejects(exe.run({}), /run: missing input 'x' \(float32 \[2, 3\]\)/);
    await assert.rejects(exe.run({ x: new Float32Array(5) }), /input 'x' expects float32 \[2, 3\] \(6 values\), got float32 with 5 values/);
    await assert.rejects(exe.run({ x: new Float32Array(6), q: new Float32Array(1) }), /unknown input 'q'/);
  });

  it('differentiating through a non-differentiable op says which', () => {
    const m = E.max(x, [1]);
    assert.throws(() => E.grad(E.sum(m), [x]), /op 'max' has no gradient rule/);
    assert.throws(() => E.grad(x, [x]), /the output must be a scalar/);
  });
});

describe('safetensors', () => {
  it('round-trips float32, float64 and int64 with metadata and 8-byte alignment', () => {
    const t = new Map<string, E.NamedTensor>([
      ['b.f32', { shape: [2, 2], data: Float32Array.of(1, -2, 3.5, 4) }],
      ['a.f64', { shape: [3], data: Float64Array.of(Math.PI, -0, 1e-300) }],
      ['c.i64', { shape: [], data: BigInt64Array.of(-7n) }],
    ]);
    const bytes = E.encodeSafetensors(t, { step: '12' });
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal((8 + headerLen) % 8, 0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
    assert.deepEqual(header['a.f64'], { dtype: 'F64', shape: [3], data_offsets: [0, 24] });
    const back = E.decodeSafetensors(bytes);
    assert.equal(back.metadata.step, '12');
    for (const [k, v] of t) {
      assert.deepEqual(back.tensors.get(k)!.shape, v.shape);
      assert.deepEqual(Array.from(back.tensors.get(k)!.data as ArrayLike<number | bigint>), Array.from(v.data as ArrayLike<number | bigint>));
    }
  });

  it('rejects truncated or corrupt files with the file name', () => {
    const bytes = E.encodeSafetensors(new Map([['w', { shape: [4], data: new Float32Array(4) }]]));
    assert.throws(() => E.decodeSafetensors(bytes.subarray(0, bytes.length - 4), 'w.safetensors'), /w\.safetensors: not a valid \.safetensors file: tensor 'w' data_offsets/);
    assert.throws(() => E.decodeSafetensors(new Uint8Array(3), 'x.st'), /x\.st: not a valid \.safetensors file/);
    const junk = new Uint8Array(16);
    new DataView(junk.buffer).setBigUint64(0, 4n, true);
    junk.set([123, 123, 123, 123], 8);
    assert.throws(() => E.decodeSafetensors(junk, 'j.st'), /header is not JSON/);
  });
});

describe('dropout', () => {
  it('drops about p of the elements, scales the rest by 1/(1-p), and is a pure function of the seed', async () => {
    const p = new E.Program(({ x, seed }) => ({ y: E.dropout(x, 0.25, seed) }));
    const ones = { data: new Float32Array(8 * 16 * 16 * 16).fill(1), shape: [8, 16, 16, 16] };
    const run = async (s: number) => (await p.run({ x: ones, seed: { data: Float32Array.of(s), shape: [] } })).y.data as Float32Array;
    const a = await run(3);
    const zeros = a.filter((v) => v === 0).length / a.length;
    assert.ok(Math.abs(zeros - 0.25) < 0.01, `dropped ${zeros}`);
    assert.ok(a.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6));
    assert.deepEqual(await run(3), a);
    const b = await run(4);
    const same = a.filter((v, i) => (v === 0) === (b[i] === 0)).length / a.length;
    assert.ok(same < 0.7, `masks for different seeds agree on ${same}`); // independent masks agree on 0.625
  });
});
