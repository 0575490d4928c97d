/**
 * An independent float64 forward pass of the U-Net in plain TypeScript, reading
 * the same parameter names. Written loop by loop from the architecture, not
 * from the engine's ops, so that the engine's U-Net graph, its ONNX export and
 * its gradients can be checked against it.
 */
import { type UNetConfig } from '../../src/index.js';
import { refConv2d } from './gradcheck.js';

export type Params64 = Map<string, { shape: readonly number[]; data: Float64Array }>;

interface T4 {
  data: Float64Array;
  shape: number[]; // [N, C, H, W]
}

function get(p: Params64, name: string): Float64Array {
  const v = p.get(name);
  if (!v) throw new Error(`reference: missing parameter ${name}`);
  return v.data;
}

function conv(p: Params64, prefix: string, x: T4, stride = 1): T4 {
  const w = p.get(`${prefix}.weight`);
  if (!w) throw new Error(`reference: missing ${prefix}.weight`);
  const k = w.shape[2];
  const out = refConv2d(x.data, x.shape, w.data, [...w.shape], get(p, `${prefix}.bias`), { stride, padding: Math.floor(k / 2) });
  const [n] = x.shape;
  const o = w.shape[0];
  const h = Math.floor((x.shape[2] + 2 * Math.floor(k / 2) - k) / stride) + 1;
  return { data: out, shape: [n, o, h, h] };
}

function groupNorm(p: Params64, prefix: string, x: T4, groups: number, eps = 1e-5): T4 {
  const [n, c, h, w] = x.shape;
  const gamma = get(p, `${prefix}.weight`);
  const beta = get(p, `${prefix}.bias`);
  const out = new Float64Array(x.data.length);
  const per = (c / groups) * h * w;
  for (let i = 0; i < n; i++)
    for (let g = 0; g < groups; g++) {
      const base = (i * c + g * (c / groups)) * h * w;
      let mean = 0;
      for (let j = 0; j < per; j++) mean += x.data[base + j];
      mean /= per;
      let v = 0;
      for (let j = 0; j < per; j++) v += (x.data[base + j] - mean) ** 2;
      v /= per;
      const r = 1 / Math.sqrt(v + eps);
      for (let j = 0; j < per; j++) {
        const ch = g * (c / groups) + Math.floor(j / (h * w));
        out[base + j] = (x.data[base + j] - mean) * r * gamma[ch] + beta[ch];
      }
    }
  return { data: out, shape: x.shape };
}

const silu = (v: number) => v / (1 + Math.exp(-v));
const map = (x: T4, f: (v: number) => number): T4 => ({ data: x.data.map(f), shape: x.shape });
const addT = (a: T4, b: T4): T4 => ({ data: a.data.map((v, i) => v + b.data[i]), shape: a.shape });

function linear(p: Params64, prefix: string, x: Float64Array[], ): Float64Array[] {
  const w = p.get(`${prefix}.weight`) as { shape: readonly number[]; data: Float64Array };
  const b = get(p, `${prefix}.bias`);
  const [o, i] = w.shape;
  return x.map((row) => {
    const out = new Float64Array(o);
    for (let r = 0; r < o; r++) {
      let s = b[r];
      for (let c = 0; c < i; c++) s += w.data[r * i + c] * row[c];
      out[r] = s;
    }
    return out;
  });
}

function resBlock(p: Params64, prefix: string, x: T4, temb: Float64Array[], outCh: number, groups: number, scaleShift = false): T4 {
  let h = conv(p, `${prefix}.conv1`, map(groupNorm(p, `${prefix}.norm1`, x, groups), silu));
  const t = linear(p, `${prefix}.time_proj`, temb.map((r) => r.map(silu)));
  const [, , hh, ww] = h.shape;
  const image = (idx: number) => Math.floor(idx / (outCh * hh * ww));
  const channel = (idx: number) => Math.floor(idx / (hh * ww)) % outCh;
  if (scaleShift) {
    // GN(h) (1 + scale) + shift, scale and shift the two halves of the projection
    const normed = groupNorm(p, `${prefix}.norm2`, h, groups);
    h = { data: normed.data.map((v, idx) => v * (1 + t[image(idx)][channel(idx)]) + t[image(idx)][outCh + channel(idx)]), shape: h.shape };
    h = conv(p, `${prefix}.conv2`, map(h, silu));
  } else {
    h = { data: h.data.map((v, idx) => v + t[image(idx)][channel(idx)]), shape: h.shape };
    h = conv(p, `${prefix}.conv2`, map(groupNorm(p, `${prefix}.norm2`, h, groups), silu));
  }
  const skip = x.shape[1] === outCh ? x : conv(p, `${prefix}.skip`, x);
  return addT(skip, h);
}

function attention(p: Params64, prefix: string, x: T4, heads: number, groups: number): T4 {
  const [n, c, h, w] = x.shape;
  const hw = h * w;
  const d = c / heads;
  const qkv = conv(p, `${prefix}.qkv`, groupNorm(p, `${prefix}.norm`, x, groups));
  const out = new Float64Array(n * c * hw);
  for (let b = 0; b < n; b++)
    for (let hd = 0; hd < heads; hd++) {
      const at = (part: number, ch: number, pos: number) => qkv.data[((b * 3 * c) + part * c + hd * d + ch) * hw + pos];
      for (let i = 0; i < hw; i++) {
        const logits = new Float64Array(hw);
        let mx = -Infinity;
        for (let j = 0; j < hw; j++) {
          let s = 0;
          for (let ch = 0; ch < d; ch++) s += at(0, ch, i) * at(1, ch, j);
          logits[j] = s / Math.sqrt(d);
          mx = Math.max(mx, logits[j]);
        }
        let z = 0;
        for (let j = 0; j < hw; j++) z += (logits[j] = Math.exp(logits[j] - mx));
        for (let ch = 0; ch < d; ch++) {
          let s = 0;
          for (let j = 0; j < hw; j++) s += (logits[j] / z) * at(2, ch, j);
          out[(b * c + hd * d + ch) * hw + i] = s;
        }
      }
    }
  return addT(x, conv(p, `${prefix}.proj`, { data: out, shape: [n, c, h, w] }));
}

function upsample(x: T4): T4 {
  const [n, c, h, w] = x.shape;
  const out = new Float64Array(n * c * 4 * h * w);
  for (let i = 0; i < out.length; i++) {
    const xx = i % (2 * w);
    const yy = Math.floor(i / (2 * w)) % (2 * h);
    const nc = Math.floor(i / (4 * h * w));
    out[i] = x.data[nc * h * w + Math.floor(yy / 2) * w + Math.floor(xx / 2)];
  }
  return { data: out, shape: [n, c, 2 * h, 2 * w] };
}

function concatC(a: T4, b: T4): T4 {
  const [n, ca, h, w] = a.shape;
  const cb = b.shape[1];
  const out = new Float64Array(n * (ca + cb) * h * w);
  for (let i = 0; i < n; i++) {
    out.set(a.data.subarray(i * ca * h * w, (i + 1) * ca * h * w), i * (ca + cb) * h * w);
    out.set(b.data.subarray(i * cb * h * w, (i + 1) * cb * h * w), (i * (ca + cb) + ca) * h * w);
  }
  return { data: out, shape: [n, ca + cb, h, w] };
}

/** eps_theta(x, t) in float64; x is NCHW, t holds N timesteps. */
export function referenceUNet(p: Params64, c: UNetConfig, xData: Float64Array, xShape: number[], t: Float64Array): Float64Array {
  const g = c.normGroups;
  const half = c.timeEmbedDim / 2;
  let temb: Float64Array[] = Array.from(t, (tv) => {
    const e = new Float64Array(c.timeEmbedDim);
    for (let i = 0; i < half; i++) {
      const f = Math.exp((-Math.log(10000) * i) / half);
      e[i] = Math.sin(tv * f);
      e[half + i] = Math.cos(tv * f);
    }
    return e;
  });
  temb = linear(p, 'time_mlp.0', temb);
  temb = linear(p, 'time_mlp.2', temb.map((r) => r.map(silu)));

  let h = conv(p, 'stem', { data: xData, shape: xShape });
  const skips: T4[] = [];
  const levels = c.channelMults.length;
  for (let l = 0; l < levels; l++) {
    const ch = c.baseChannels * c.channelMults[l];
    for (let b = 0; b < c.resBlocks; b++) h = resBlock(p, `down.${l}.res.${b}`, h, temb, ch, g, c.scaleShiftNorm);
    if (c.attentionResolutions.includes(h.shape[2])) h = attention(p, `down.${l}.attn`, h, c.attentionHeads, g);
    if (l < levels - 1) {
      skips.push(h);
      h = conv(p, `down.${l}.downsample`, h, 2);
    }
  }
  const mid = c.baseChannels * c.channelMults[levels - 1];
  h = resBlock(p, 'mid.res.0', h, temb, mid, g, c.scaleShiftNorm);
  if (c.middleAttention) {
    h = attention(p, 'mid.attn', h, c.attentionHeads, g);
    h = resBlock(p, 'mid.res.1', h, temb, mid, g, c.scaleShiftNorm);
  }
  for (let l = levels - 2; l >= 0; l--) {
    const ch = c.baseChannels * c.channelMults[l];
    h = concatC(conv(p, `up.${l}.upsample`, upsample(h)), skips[l]);
    for (let b = 0; b < c.resBlocks; b++) h = resBlock(p, `up.${l}.res.${b}`, h, temb, ch, g, c.scaleShiftNorm);
    if (c.attentionResolutions.includes(h.shape[2])) h = attention(p, `up.${l}.attn`, h, c.attentionHeads, g);
  }
  return conv(p, 'out', map(groupNorm(p, 'out_norm', h, g), silu)).data;
}
