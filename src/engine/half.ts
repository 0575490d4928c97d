/**
 * Half-precision floats (IEEE 754 binary16, and bfloat16) to and from float32, without Node: the
 * safetensors reader, float16 ONNX exports in Node and in the browser page all use them.
 */

/**
 * IEEE 754 half precision (F16: 1 sign, 5 exponent, 10 fraction bits) or bfloat16 (BF16: the upper
 * 16 bits of a float32) to float32, exactly (every such value is a float32).
 */
export function halfToFloat32(bits: Uint16Array, kind: 'F16' | 'BF16'): Float32Array {
  if (kind === 'BF16') {
    const out = new Uint32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
    return new Float32Array(out.buffer);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    out[i] = exp === 0 ? sign * 2 ** -14 * (frac / 1024) : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

/**
 * float32 to IEEE 754 half precision, rounding to nearest with ties to even (as numpy's
 * astype(float16) and PyTorch's .half() do): beyond the largest half (65504) to infinity, below
 * the smallest subnormal's half to zero, NaN to the quiet NaN 0x7e00.
 */
export function float32ToHalf(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const sign = (bits[i] >>> 16) & 0x8000;
    const a = Math.abs(v);
    let h: number;
    if (Number.isNaN(v)) h = 0x7e00;
    else if (a >= 65520) h = 0x7c00; // 65520 lies halfway between 65504 and 65536 and ties to the even one, infinity
    else if (a < 2 ** -14) h = roundHalfEven(a * 2 ** 24); // subnormal: multiples of 2^-24 (1024 becomes the smallest normal)
    else {
      // Normal: a = 2^e x (1 + f/1024); every step below is exact in float64.
      const e = ((bits[i] >>> 23) & 0xff) - 127;
      const f = roundHalfEven((a / 2 ** e - 1) * 1024);
      h = ((e + 15) << 10) + f; // f = 1024 carries into the exponent, as it should
    }
    out[i] = sign | h;
  }
  return out;
}

/** Rounds half to even (the values here are exact multiples of 1/2 or finer). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
