/**
 * float32ToHalf against IEEE 754's definition, exhaustively: every half survives the round trip
 * through float32, every midpoint between neighbouring halves rounds to the even one, and a
 * float32 just beside a midpoint rounds to the nearer half.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { float32ToHalf, halfToFloat32 } from '../../src/engine/index.js';

const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
const asFloat = halfToFloat32(all, 'F16');

/** The float32 next to x, towards +infinity (dir 1) or zero (dir -1), for positive x. */
function nextTo(x: number, dir: 1 | -1): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] += dir;
  return f[0];
}

describe('float32ToHalf', () => {
  it('maps every half back to itself (NaNs to the quiet NaN)', () => {
    const back = float32ToHalf(asFloat);
    for (let h = 0; h < 65536; h++) {
      const nan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      assert.equal(back[h], nan ? 0x7e00 : h, `0x${h.toString(16)}`);
    }
  });

  it('rounds every midpoint to the even neighbour, and its float32 neighbours to the nearer half', () => {
    for (let h = 0; h < 0x7bff; h++) {
      // Positive finite halves h and h + 1 (the largest, 0x7bff, has infinity above it).
      const lo = asFloat[h];
      const hi = asFloat[h + 1];
      const mid = Math.fround((lo + hi) / 2);
      assert.equal((lo + hi) / 2, mid, 'the midpoint is a float32');
      const even = h % 2 === 0 ? h : h + 1;
      const got = float32ToHalf(Float32Array.from([mid, nextTo(mid, -1), nextTo(mid, 1), -mid]));
      assert.deepEqual([...got], [even, h, h + 1, 0x8000 | even], `between 0x${h.toString(16)} and 0x${(h + 1).toString(16)}`);
    }
  });

  it('overflows to infinity from 65520 (the midpoint above 65504) and keeps signs and zeros', () => {
    const got = float32ToHalf(Float32Array.from([65504, nextTo(65520, -1), 65520, 1e6, -1e6, Infinity, -Infinity, 0, -0, 2 ** -25, nextTo(2 ** -25, 1)]));
    assert.deepEqual([...got], [0x7bff, 0x7bff, 0x7c00, 0x7c00, 0xfc00, 0x7c00, 0xfc00, 0, 0x8000, 0, 1]);
  });
});
