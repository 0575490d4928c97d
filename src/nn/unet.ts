/**
 * The denoising U-Net: eps_theta(x_t, t).
 *
 *   t ──sinusoid──Linear──SiLU──Linear──► temb ──────────────┐ (into every ResBlock)
 *   (+ class embedding, + Linear(pooled text))               │
 *   x ──stem conv──► level 0 ──down──► level 1 ... ──► middle │
 *                      │ skip                                 │
 *   out ◄──conv◄─SiLU◄─GN◄── level 0 ◄──concat◄──up+conv ◄────┘
 *
 * Each encoder level is `resBlocks` ResBlocks (plus self-attention at chosen
 * resolutions, and cross-attention to the text states) followed by a stride-2 conv; each decoder level upsamples,
 * concatenates the encoder level's output and runs its ResBlocks.
 */
import {
  ParamScope,
  Tensor,
  add,
  concat,
  dropout,
  gather,
  init,
  matmul,
  mul,
  reshape,
  silu,
  slice,
  softmax,
  transposeLast,
  upsampleNearest,
} from '../engine/index.js';
import { TextStates, crossAttentionBlock } from './attention.js';
import { conv2d, groupNorm, linear, timestepEmbedding } from './layers.js';

export interface UNetConfig {
  /** Height and width of the (square) input. */
  imageSize: number;
  inChannels: number;
  outChannels: number;
  /** Channels of the first level. */
  baseChannels: number;
  /** Channel multiplier per level; the number of levels is its length. */
  channelMults: readonly number[];
  /** ResBlocks per level. */
  resBlocks: number;
  /** Resolutions (e.g. 16) at which self-attention follows the ResBlocks. */
  attentionResolutions: readonly number[];
  /** Attention heads (channels must divide evenly). */
  attentionHeads: number;
  /** Groups of every GroupNorm. */
  normGroups: number;
  /** Width of the sinusoidal time embedding (the MLP widens it 4x). */
  timeEmbedDim: number;
  /** Add self-attention and a second ResBlock to the middle block. */
  middleAttention: boolean;
  /**
   * Start the last conv of every ResBlock, the output projection of every attention block and
   * the final conv at zero (ADM, Dhariwal & Nichol 2021): each block begins as the identity.
   */
  zeroInit?: boolean;
  /**
   * Let the time embedding scale and shift each ResBlock's second GroupNorm,
   * GN(h) (1 + s) + b (ADM's "scale-shift norm", AdaGN), instead of adding it to h.
   */
  scaleShiftNorm?: boolean;
  /** Dropout rate inside ResBlocks (before their second conv), during training only. */
  dropout?: number;
  /** Class-conditional: number of classes (label `numClasses` means "no label"). */
  numClasses?: number;
  /** Text-conditional: width D of the text encoder's states. */
  contextDim?: number;
  /** Resolutions at which cross-attention to the text follows the ResBlocks (the middle block too, at its resolution). */
  crossAttentionResolutions?: readonly number[];
}

/** Conditioning and training-time inputs of the U-Net besides x_t and t. */
export interface UNetExtras {
  /** int64 [N] class labels, for class-conditional models. */
  label?: Tensor;
  /** A scalar that seeds the dropout masks (training only; without it dropout is off). */
  dropoutSeed?: Tensor;
  /** The text encoder's output, for text-conditional models. */
  text?: TextStates;
}

/** The benchmark network of the engine issue: 1,590,787 parameters at 32x32x3. */
export const REFERENCE_UNET: UNetConfig = {
  imageSize: 32,
  inChannels: 3,
  outChannels: 3,
  baseChannels: 64,
  channelMults: [1, 2],
  resBlocks: 2,
  attentionResolutions: [16],
  attentionHeads: 1,
  normGroups: 8,
  timeEmbedDim: 64,
  middleAttention: false,
};

/** Checks a config, with errors that name the field. */
export function validateUNetConfig(c: UNetConfig): void {
  const fail = (field: string, msg: string) => {
    throw new Error(`UNet config: ${field} ${msg}`);
  };
  const levels = c.channelMults.length;
  if (levels < 1) fail('channelMults', 'needs at least one level');
  if (c.imageSize % 2 ** (levels - 1) !== 0) fail('imageSize', `${c.imageSize} is not divisible by 2^${levels - 1}`);
  for (const m of c.channelMults) {
    const ch = c.baseChannels * m;
    if (ch % c.normGroups !== 0) fail('normGroups', `${c.normGroups} does not divide ${ch} channels`);
    if (ch % c.attentionHeads !== 0) fail('attentionHeads', `${c.attentionHeads} does not divide ${ch} channels`);
  }
  if (c.timeEmbedDim % 2 !== 0) fail('timeEmbedDim', 'must be even');
  const sizes = c.channelMults.map((_, l) => c.imageSize / 2 ** l);
  for (const r of c.attentionResolutions) if (!sizes.includes(r)) fail('attentionResolutions', `${r} is not a resolution of this model (levels: ${sizes.join(', ')})`);
  if (c.resBlocks < 1) fail('resBlocks', 'must be at least 1');
  if (c.contextDim !== undefined && !(Number.isInteger(c.contextDim) && c.contextDim > 0)) fail('contextDim', `must be a positive integer, got ${c.contextDim}`);
  if (c.crossAttentionResolutions?.length && c.contextDim === undefined) fail('crossAttentionResolutions', 'needs contextDim (the text encoder width)');
  if (c.dropout !== undefined && !(c.dropout >= 0 && c.dropout < 1)) fail('dropout', `must be in [0, 1), got ${c.dropout}`);
}

/**
 * GN -> SiLU -> conv -> + proj(temb) -> GN -> SiLU -> [dropout] -> conv, plus a (1x1-projected) residual.
 * With `scaleShift` the projection is twice as wide and acts after the second GN instead: GN(h) (1 + s) + b.
 */
export function resBlock(
  p: ParamScope,
  x: Tensor,
  temb: Tensor,
  outChannels: number,
  groups: number,
  opts: { drop?: (h: Tensor) => Tensor; zeroInit?: boolean; scaleShift?: boolean } = {},
): Tensor {
  const { drop, zeroInit = false, scaleShift = false } = opts;
  const [n] = x.shape;
  let h = conv2d(p.child('conv1'), silu(groupNorm(p.child('norm1'), x, groups)), outChannels, 3);
  if (scaleShift) {
    const t = reshape(linear(p.child('time_proj'), silu(temb), 2 * outChannels), [n, 2 * outChannels, 1, 1]);
    const [scale, shift] = [slice(t, 1, 0, outChannels), slice(t, 1, outChannels, 2 * outChannels)];
    h = silu(add(mul(groupNorm(p.child('norm2'), h, groups), add(scale, 1)), shift));
  } else {
    const t = linear(p.child('time_proj'), silu(temb), outChannels);
    h = add(h, reshape(t, [n, outChannels, 1, 1]));
    h = silu(groupNorm(p.child('norm2'), h, groups));
  }
  h = conv2d(p.child('conv2'), drop ? drop(h) : h, outChannels, 3, { zero: zeroInit });
  const skip = x.shape[1] === outChannels ? x : conv2d(p.child('skip'), x, outChannels, 1);
  return add(skip, h);
}

/** Multi-head self-attention over all positions, with a residual. */
export function attentionBlock(p: ParamScope, x: Tensor, heads: number, groups: number, zeroInit = false): Tensor {
  const [n, c, hgt, wid] = x.shape;
  const hw = hgt * wid;
  const d = c / heads;
  const qkv = reshape(conv2d(p.child('qkv'), groupNorm(p.child('norm'), x, groups), 3 * c, 1), [n, 3, heads, d, hw]);
  const pick = (i: number) => reshape(slice(qkv, 1, i, i + 1), [n, heads, d, hw]);
  const [q, k, v] = [pick(0), pick(1), pick(2)];
  // softmax(Q^T K / sqrt(d)) over key positions, then V A^T: [n, heads, d, hw]
  const attn = softmax(mul(matmul(transposeLast(q), k), 1 / Math.sqrt(d)));
  const out = reshape(matmul(v, transposeLast(attn)), [n, c, hgt, wid]);
  return add(x, conv2d(p.child('proj'), out, c, 1, { zero: zeroInit }));
}

/**
 * eps_theta(x, t): x [N, C, H, W], t [N] float timesteps; `extras` carries labels and the dropout seed.
 * Parameters are declared in `p` on first use.
 */
export function unet(p: ParamScope, c: UNetConfig, x: Tensor, t: Tensor, extras: UNetExtras = {}): Tensor {
  validateUNetConfig(c);
  const groups = c.normGroups;
  const tdim = c.timeEmbedDim * 4;
  const { label, dropoutSeed, text } = extras;
  // Each ResBlock gets its own mask stream: the seed is offset per call.
  let dropCalls = 0;
  const drop = c.dropout && dropoutSeed ? (h: Tensor) => dropout(h, c.dropout as number, add(dropoutSeed, 1000 * ++dropCalls)) : undefined;
  const zero = c.zeroInit ?? false;
  const res = (q: ParamScope, h: Tensor, ch: number) => resBlock(q, h, temb, ch, groups, { drop, zeroInit: zero, scaleShift: c.scaleShiftNorm });

  let temb = timestepEmbedding(t, c.timeEmbedDim);
  temb = linear(p.child('time_mlp.0'), temb, tdim);
  temb = linear(p.child('time_mlp.2'), silu(temb), tdim);
  if (c.numClasses !== undefined) {
    if (!label) throw new Error('unet: this model is class-conditional; pass labels');
    // N(0, 1) as PyTorch's nn.Embedding: the label must move the time embedding from the start.
    const table = p.param('label_embed.weight', [c.numClasses + 1, tdim], init.normal(1));
    temb = add(temb, gather(table, label));
  }
  if (c.contextDim !== undefined) {
    if (!text) throw new Error('unet: this model is text-conditional; pass the text encoder states');
    if (text.states.shape[2] !== c.contextDim) throw new Error(`unet: text states are ${text.states.shape[2]} wide, the model was built for ${c.contextDim}`);
    temb = add(temb, linear(p.child('text_proj'), text.pooled, tdim));
  }
  const crossAt = new Set(c.crossAttentionResolutions ?? []);
  const attend = (q: ParamScope, h: Tensor) => {
    if (c.attentionResolutions.includes(h.shape[2])) h = attentionBlock(q.child('attn'), h, c.attentionHeads, groups, zero);
    if (text && crossAt.has(h.shape[2])) h = crossAttentionBlock(q.child('cross_attn'), h, text, c.attentionHeads, groups);
    return h;
  };

  let h = conv2d(p.child('stem'), x, c.baseChannels, 3);
  const skips: Tensor[] = [];
  const levels = c.channelMults.length;
  for (let l = 0; l < levels; l++) {
    const ch = c.baseChannels * c.channelMults[l];
    const lp = p.child(`down.${l}`);
    for (let b = 0; b < c.resBlocks; b++) h = res(lp.child(`res.${b}`), h, ch);
    h = attend(lp, h);
    if (l < levels - 1) {
      skips.push(h);
      h = conv2d(lp.child('downsample'), h, ch, 3, { stride: 2 });
    }
  }

  const mid = c.baseChannels * c.channelMults[levels - 1];
  h = res(p.child('mid.res.0'), h, mid);
  if (text && crossAt.has(h.shape[2])) h = crossAttentionBlock(p.child('mid.cross_attn'), h, text, c.attentionHeads, groups);
  if (c.middleAttention) {
    h = attentionBlock(p.child('mid.attn'), h, c.attentionHeads, groups, zero);
    h = res(p.child('mid.res.1'), h, mid);
  }

  for (let l = levels - 2; l >= 0; l--) {
    const ch = c.baseChannels * c.channelMults[l];
    const lp = p.child(`up.${l}`);
    h = conv2d(lp.child('upsample'), upsampleNearest(h, 2), ch, 3);
    h = concat([h, skips[l]], 1);
    for (let b = 0; b < c.resBlocks; b++) h = res(lp.child(`res.${b}`), h, ch);
    h = attend(lp, h);
  }

  return conv2d(p.child('out'), silu(groupNorm(p.child('out_norm'), h, groups)), c.outChannels, 3, { zero });
}
