/**
 * Attention layers shared by the U-Net and the text encoder, and the contract
 * between a text encoder and the U-Net.
 */
import { ParamScope, Tensor, add, constant, init, linear as linearOp, matmul, mul, reshape, softmax, sub, transpose } from '../engine/index.js';
import { groupNorm, linear } from './layers.js';

/** What every text encoder gives the U-Net. */
export interface TextStates {
  /** [N, L, D] per-token states, read by cross-attention. */
  states: Tensor;
  /** [N, L] float: 1 for a token, 0 for padding (padding keys get no attention). */
  mask: Tensor;
  /** [N, D] one vector per prompt, added to the time embedding. */
  pooled: Tensor;
}

/**
 * Multi-head attention (Vaswani et al. 2017, eq. 1) of queries [N, Lq, Dq] over
 * keys/values [N, Lk, Dk]; the result has width Dq. `bias` (broadcast to
 * [N, heads, Lq, Lk]) is added to the scores: -1e4 masks a key out.
 */
export function multiHeadAttention(p: ParamScope, q: Tensor, kv: Tensor, heads: number, bias?: Tensor, zeroOut = false): Tensor {
  const [n, lq, d] = q.shape;
  const lk = kv.shape[1];
  const dh = d / heads;
  const split = (x: Tensor, len: number) => transpose(reshape(x, [n, len, heads, dh]), [0, 2, 1, 3]); // [N, H, L, dh]
  const qh = split(linear(p.child('q'), q, d), lq);
  const kh = split(linear(p.child('k'), kv, d), lk);
  const vh = split(linear(p.child('v'), kv, d), lk);
  let scores = mul(matmul(qh, transpose(kh, [0, 1, 3, 2])), 1 / Math.sqrt(dh));
  if (bias) scores = add(scores, bias);
  const out = matmul(softmax(scores), vh); // [N, H, Lq, dh]
  const merged = reshape(transpose(out, [0, 2, 1, 3]), [n, lq, d]);
  if (!zeroOut) return linear(p.child('out'), merged, d);
  const o = p.child('out');
  return linearOp(merged, o.param('weight', [d, d], init.zeros()), o.param('bias', [d], init.zeros()));
}

/** Score bias from a key mask [N, L]: 0 for tokens, -1e4 for padding, plus the causal triangle. */
export function attentionBias(mask: Tensor, causal = false): Tensor {
  const [n, l] = mask.shape;
  const bias = reshape(mul(sub(mask, 1), 1e4), [n, 1, 1, l]);
  if (!causal) return bias;
  const future = Array.from({ length: l * l }, (_, k) => (k % l > Math.floor(k / l) ? -1e4 : 0));
  return add(bias, constant(future, [1, 1, l, l], 'float32'));
}

/** Image features [N, C, H, W] attend to text states (Rombach et al. 2022, sec. 3.3), with a residual. */
export function crossAttentionBlock(p: ParamScope, x: Tensor, text: TextStates, heads: number, groups: number): Tensor {
  const [n, c, h, w] = x.shape;
  const q = transpose(reshape(groupNorm(p.child('norm'), x, groups), [n, c, h * w]), [0, 2, 1]); // [N, HW, C]
  // The output projection starts at zero (as LDM's zero_module): the block begins as the identity,
  // so an untrained text path does not disturb the image features.
  const out = multiHeadAttention(p.child('attn'), q, text.states, heads, attentionBias(text.mask), true);
  return add(x, reshape(transpose(out, [0, 2, 1]), [n, c, h, w]));
}
