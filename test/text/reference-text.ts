/**
 * An independent float64 reference of the text encoder and of cross-attention,
 * in plain loops, for checking the engine's graphs.
 */
export type P64 = Map<string, Float64Array>;

const get = (p: P64, name: string) => {
  const v = p.get(name);
  if (!v) throw new Error(`reference: no parameter ${name}`);
  return v;
};

/** y[r, :] = x[r, :] W^T + b for x [rows, inF], W [outF, inF]. */
export function refLinear(p: P64, prefix: string, x: Float64Array, rows: number, inF: number, outF: number): Float64Array {
  const w = get(p, `${prefix}.weight`);
  const b = get(p, `${prefix}.bias`);
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < outF; o++) {
      let s = b[o];
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = s;
    }
  return y;
}

export function refLayerNorm(p: P64, prefix: string, x: Float64Array, rows: number, d: number, eps = 1e-5): Float64Array {
  const w = get(p, `${prefix}.weight`);
  const b = get(p, `${prefix}.bias`);
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let i = 0; i < d; i++) m += x[r * d + i];
    m /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i] - m) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i] - m) * inv * w[i] + b[i];
  }
  return y;
}

function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead (|x| small here).
  let sum = 0;
  let term = x;
  for (let n = 0; n < 80; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** Multi-head attention of q [lq, d] over kv [lk, dk] for one item; keyMask [lk] (0 = padding), causal optional. */
export function refAttention(p: P64, prefix: string, q: Float64Array, lq: number, d: number, kv: Float64Array, lk: number, dk: number, heads: number, keyMask: ArrayLike<number>, causal = false): Float64Array {
  const Q = refLinear(p, `${prefix}.q`, q, lq, d, d);
  const K = refLinear(p, `${prefix}.k`, kv, lk, dk, d);
  const V = refLinear(p, `${prefix}.v`, kv, lk, dk, d);
  const dh = d / heads;
  const out = new Float64Array(lq * d);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < lq; i++) {
      const s = new Float64Array(lk);
      for (let j = 0; j < lk; j++) {
        let dot = 0;
        for (let c = 0; c < dh; c++) dot += Q[i * d + h * dh + c] * K[j * d + h * dh + c];
        s[j] = dot / Math.sqrt(dh) + (keyMask[j] ? 0 : -1e4) + (causal && j > i ? -1e4 : 0);
      }
      const m = Math.max(...s);
      const e = s.map((v) => Math.exp(v - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j < lk; j++) for (let c = 0; c < dh; c++) out[i * d + h * dh + c] += (e[j] / z) * V[j * d + h * dh + c];
    }
  return refLinear(p, `${prefix}.out`, out, lq, d, d);
}

/** The transformer text encoder for one prompt of token ids: states [L, D] and pooled [D]. */
export function refEncoder(p: P64, cfg: { width: number; layers: number; heads: number; causal?: boolean }, ids: number[]): { states: Float64Array; pooled: Float64Array } {
  const L = ids.length;
  const D = cfg.width;
  const tok = get(p, 'token_embed.weight');
  const pos = get(p, 'position_embed');
  const mask: number[] = ids.map((id) => (id === 0 ? 0 : 1));
  let h = new Float64Array(L * D);
  for (let i = 0; i < L; i++) for (let c = 0; c < D; c++) h[i * D + c] = tok[ids[i] * D + c] + pos[i * D + c];
  for (let b = 0; b < cfg.layers; b++) {
    const x = refLayerNorm(p, `blocks.${b}.norm1`, h, L, D);
    const a = refAttention(p, `blocks.${b}.attn`, x, L, D, x, L, D, cfg.heads, mask, cfg.causal);
    h = h.map((v, i) => v + a[i]);
    const m = refLinear(p, `blocks.${b}.mlp.0`, refLayerNorm(p, `blocks.${b}.norm2`, h, L, D), L, D, 4 * D).map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
    const m2 = refLinear(p, `blocks.${b}.mlp.2`, m, L, 4 * D, D);
    h = h.map((v, i) => v + m2[i]);
  }
  const states = refLayerNorm(p, 'final_norm', h, L, D);
  const pooled = new Float64Array(D);
  const count = mask.reduce((a, b) => a + b, 0);
  for (let i = 0; i < L; i++) if (mask[i]) for (let c = 0; c < D; c++) pooled[c] += states[i * D + c] / count;
  return { states, pooled };
}
