/**
 * Seeded noise generators.
 *
 * `TorchGenerator` reproduces PyTorch's CPU generator: `torch.manual_seed(s)`
 * followed by `torch.randn(n)` / `torch.rand(n)` gives the same float32 values
 * (Mersenne Twister mt19937 with PyTorch's seeding, 24-bit float uniforms, and
 * its Box-Muller arrangement: for n >= 16, normals are made 16 at a time from
 * uniforms j and j + 8; below 16, one double-precision pair per two values with
 * the second one cached). So the same seed gives the same image here and in a
 * Python diffusers pipeline. See docs/ENGINE.md, "Reproducing PyTorch's noise".
 *
 * `FastGenerator` is a lighter default for training noise where PyTorch parity
 * is not needed.
 */

export interface NoiseGenerator {
  /** n standard normal float32 values. */
  randn(n: number): Float32Array;
  /** n uniform float32 values in [0, 1). */
  rand(n: number): Float32Array;
  /** Serialisable state, for exact resumption. */
  getState(): number[];
  setState(state: readonly number[]): void;
}

const N = 624;
const M = 397;

export class TorchGenerator implements NoiseGenerator {
  private readonly mt = new Uint32Array(N);
  private index = N;
  /** PyTorch caches the second value of a double-precision Box-Muller pair. */
  private nextDoubleNormal: number | null = null;

  constructor(seed: number | bigint = 67280421310721n) {
    // at::mt19937(seed): state[0] = seed & 0xffffffff; state[j] = 1812433253 * (s ^ (s >> 30)) + j
    this.mt[0] = Number(BigInt(seed) & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const prev = this.mt[j - 1] ^ (this.mt[j - 1] >>> 30);
      this.mt[j] = (Math.imul(1812433253, prev) + j) >>> 0;
    }
  }

  /** The next 32-bit output of mt19937. */
  random(): number {
    if (this.index >= N) this.twist();
    let y = this.mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const mt = this.mt;
    for (let i = 0; i < N; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % N] & 0x7fffffff);
      let v = mt[(i + M) % N] ^ (y >>> 1);
      if (y & 1) v ^= 0x9908b0df;
      mt[i] = v >>> 0;
    }
    this.index = 0;
  }

  /** uniform_real_distribution<float>(0, 1): 24 random bits. */
  private uniformFloat(): number {
    return (this.random() & 0xffffff) * 2 ** -24;
  }

  /** uniform_real_distribution<double>(0, 1): 53 bits of random64() = (hi << 32) | lo. */
  private uniformDouble(): number {
    const hi = this.random();
    const lo = this.random();
    // low 53 bits: 21 bits of hi, all 32 of lo
    return ((hi & 0x1fffff) * 2 ** 32 + lo) * 2 ** -53;
  }

  rand(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uniformFloat();
    return out;
  }

  randn(n: number): Float32Array {
    const out = new Float32Array(n);
    if (n >= 16) {
      // normal_fill: all uniforms first, then Box-Muller over blocks of 16,
      // and if n % 16 != 0 the last 16 are redrawn and recomputed.
      for (let i = 0; i < n; i++) out[i] = this.uniformFloat();
      for (let i = 0; i + 16 <= n; i += 16) normalFill16(out, i);
      if (n % 16 !== 0) {
        const start = n - 16;
        for (let i = 0; i < 16; i++) out[start + i] = this.uniformFloat();
        normalFill16(out, start);
      }
      return out;
    }
    for (let i = 0; i < n; i++) out[i] = this.normalDouble();
    return out;
  }

  /** at::normal_distribution<double> with the generator's cached second sample. */
  private normalDouble(): number {
    if (this.nextDoubleNormal !== null) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = null;
      return v;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  getState(): number[] {
    return [...this.mt, this.index, this.nextDoubleNormal ?? Number.NaN];
  }
  setState(s: readonly number[]): void {
    if (s.length !== N + 2) throw new Error(`TorchGenerator: state has ${s.length} numbers, expected ${N + 2}`);
    this.mt.set(s.slice(0, N));
    this.index = s[N];
    this.nextDoubleNormal = Number.isNaN(s[N + 1]) ? null : s[N + 1];
  }
}

const f32 = Math.fround;
/** Fused multiply-add in float32: a*b is exact in float64 for float32 inputs, so one rounding remains. */
const fma32 = (a: number, b: number, c: number) => f32(a * b + c);

/**
 * Box-Muller on 16 float32 uniforms in place, as PyTorch's x86-64 kernel
 * (normal_fill_16_AVX2) computes it: pairs (j, j + 8), float32 arithmetic,
 * and the Cephes single-precision log and sincos polynomials of avx_mathfun,
 * with multiply-adds fused as GCC compiles them. Checked bit for bit against
 * torch.randn on 100,000 values (test/diffusion/random.test.ts).
 */
function normalFill16(data: Float32Array, at: number): void {
  const twoPi = f32(2 * Math.PI);
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[at + j]); // [0, 1) -> (0, 1] for the log
    const u2 = data[at + j + 8];
    const radius = f32(Math.sqrt(f32(-2 * logf(u1))));
    const [sin, cos] = sincosf(f32(twoPi * u2));
    data[at + j] = f32(radius * cos);
    data[at + j + 8] = f32(radius * sin);
  }
}

const bits = new Float32Array(1);
const bitsI = new Int32Array(bits.buffer);
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1,
  -2.4999993993e-1, 3.3333331174e-1,
].map(f32);

/** Cephes logf: split x = m * 2^e with m in [sqrt(1/2), sqrt 2), then a degree-9 polynomial in m - 1. */
function logf(v: number): number {
  bits[0] = Math.max(v, 1.17549435e-38);
  const exponent = bitsI[0] >>> 23;
  bitsI[0] = (bitsI[0] & ~0x7f800000) | 0x3f000000; // mantissa in [0.5, 1)
  let x = bits[0];
  let e = f32(exponent - 0x7f + 1);
  const small = x < f32(Math.SQRT1_2);
  const tmp = small ? x : 0;
  x = f32(x - 1);
  if (small) e = f32(e - 1);
  x = f32(x + tmp);
  const z = f32(x * x);
  let y = LOG_P[0];
  for (let i = 1; i < LOG_P.length; i++) y = fma32(y, x, LOG_P[i]);
  y = f32(y * x);
  y = fma32(y, z, f32(e * f32(-2.12194440e-4)));
  y = f32(y - f32(z * 0.5));
  x = f32(x + y);
  return fma32(e, f32(0.693359375), x);
}

/** Cephes sincosf for x >= 0: reduce by multiples of pi/4 in three parts, then the sin and cos polynomials. */
function sincosf(v: number): [number, number] {
  let x = v;
  let j = Math.trunc(f32(x * f32(4 / Math.PI)));
  j = (j + 1) & ~1;
  const y = j;
  const swapSin = (j & 4) !== 0;
  const useSinPoly = (j & 2) === 0;
  const negCos = (~(j - 2) & 4) !== 0;
  x = fma32(y, f32(-0.78515625), x);
  x = fma32(y, f32(-2.4187564849853515625e-4), x);
  x = fma32(y, f32(-3.77489497744594108e-8), x);
  const z = f32(x * x);
  let c = f32(2.443315711809948e-5);
  c = fma32(c, z, f32(-1.388731625493765e-3));
  c = fma32(c, z, f32(4.166664568298827e-2));
  c = f32(c * z);
  c = fma32(c, z, -f32(z * 0.5));
  c = f32(c + 1);
  let s = f32(-1.9515295891e-4);
  s = fma32(s, z, f32(8.3321608736e-3));
  s = fma32(s, z, f32(-1.6666654611e-1));
  s = f32(s * z);
  s = fma32(s, x, x);
  let sin = useSinPoly ? s : c;
  let cos = useSinPoly ? c : s;
  if (swapSin) sin = -sin;
  if (negCos) cos = -cos;
  return [sin, cos];
}

/** xoshiro128** with Box-Muller: fast, seedable, not PyTorch-compatible. */
export class FastGenerator implements NoiseGenerator {
  private s = new Uint32Array(4);
  constructor(seed = 0) {
    // splitmix32 to spread the seed over the state
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  private next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }
  rand(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.next() >>> 8) * 2 ** -24;
    return out;
  }
  randn(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u1 = ((this.next() >>> 8) + 1) * 2 ** -24; // (0, 1]
      const u2 = (this.next() >>> 8) * 2 ** -24;
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }
  getState(): number[] {
    return [...this.s];
  }
  setState(s: readonly number[]): void {
    this.s.set(s);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export type GeneratorKind = 'torch' | 'fast';
export function createGenerator(kind: GeneratorKind, seed: number): NoiseGenerator {
  return kind === 'torch' ? new TorchGenerator(seed) : new FastGenerator(seed);
}

/**
 * One generator per image, as diffusers' `generator=[torch.Generator().manual_seed(s) for s in seeds]`:
 * a draw for a batch of n images is n equal parts in image order (how x_T and every step's noise
 * are drawn), and image k's part comes from generator k. An image's noise then depends on its own
 * seed only, not on the other images of its batch or on the batch size, so any range of images
 * can be made alone, on any machine, with the same result. Per-image draws of another size (a
 * watermark's x_T) go through each generator directly (see drawPerImage).
 */
export class PerImageGenerator implements NoiseGenerator {
  constructor(readonly generators: readonly NoiseGenerator[]) {
    if (!generators.length) throw new Error('PerImageGenerator needs one generator per image, got none');
  }

  private split(n: number, draw: (g: NoiseGenerator, part: number) => Float32Array): Float32Array {
    const k = this.generators.length;
    if (n % k !== 0) throw new Error(`a per-image draw of ${n} values does not split into ${k} images`);
    const part = n / k;
    const out = new Float32Array(n);
    this.generators.forEach((g, i) => out.set(draw(g, part), i * part));
    return out;
  }

  randn(n: number): Float32Array {
    return this.split(n, (g, part) => g.randn(part));
  }

  rand(n: number): Float32Array {
    return this.split(n, (g, part) => g.rand(part));
  }

  /** Each generator's state, preceded by its length. */
  getState(): number[] {
    return this.generators.flatMap((g) => {
      const s = g.getState();
      return [s.length, ...s];
    });
  }

  setState(state: readonly number[]): void {
    let at = 0;
    for (const g of this.generators) {
      const len = state[at];
      g.setState(state.slice(at + 1, at + 1 + len));
      at += 1 + len;
    }
  }
}

/** Generators for images with these seeds (one each). */
export function perImageGenerator(kind: GeneratorKind, seeds: readonly number[]): PerImageGenerator {
  return new PerImageGenerator(seeds.map((s) => createGenerator(kind, s)));
}
