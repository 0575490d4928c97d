import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { imageBytes, imageFromBytes, quantize8, resizeRoundTrip } from '../../src/forensics/index.js';

describe('8-bit image processing', () => {
  // Two 2x3 colour images, planar in [-1, 1], values that do not sit on the 8-bit levels.
  const shape: [number, number, number] = [3, 2, 3];
  const data = Float32Array.from({ length: 2 * 18 }, (_, i) => Math.sin(i * 1.7) * 1.2);
  const batch = { data, count: 2, shape };

  it('writes pixels interleaved (HWC), clipped and rounded to 256 levels', () => {
    const b = imageBytes(batch, 1);
    assert.equal(b.length, 18);
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < 6; i++) {
        const v = Math.min(1, Math.max(-1, data[18 + c * 6 + i]));
        assert.equal(b[i * 3 + c], Math.round((v + 1) * 127.5), `channel ${c}, pixel ${i}`);
      }
  });

  it('reads them back to the planar values that quantize8 gives', () => {
    const q = quantize8(batch).data.subarray(18, 36);
    const back = imageFromBytes(imageBytes(batch, 1), 3, shape);
    for (let i = 0; i < 18; i++) assert.ok(Math.abs(back[i] - q[i]) < 1e-6, `value ${i}: ${back[i]} vs ${q[i]}`);
  });

  it('repeats a grey file into every channel of a colour shape', () => {
    const grey = Uint8Array.of(0, 255, 51, 102, 204, 153);
    const x = imageFromBytes(grey, 1, shape);
    for (let c = 0; c < 3; c++) assert.deepEqual(Array.from(x.subarray(c * 6, c * 6 + 6), (v) => Math.round((v + 1) * 127.5)), Array.from(grey));
  });

  it('keeps size and count through a resize round trip', async () => {
    const out = await resizeRoundTrip(batch, 0.5);
    assert.deepEqual(out.shape, shape);
    assert.equal(out.data.length, data.length);
  });
});
