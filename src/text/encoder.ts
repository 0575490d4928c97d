/**
 * Text encoders. Every encoder meets one contract, `TextStates`: per-token states
 * [N, L, D] that the U-Net's cross-attention reads, a key mask [N, L] (1 = token,
 * 0 = padding) and a pooled vector [N, D] that is added to the time embedding.
 *
 *   ids ──token emb + position emb──► [pre-norm block] x layers ──LN──► states
 *                                                                 └─masked mean──► pooled
 *
 * The transformer here is trained jointly with the U-Net (it is part of the same
 * compiled training step). A pretrained encoder, frozen, plugs in through
 * `OnnxTextEncoder` (onnx-encoder.ts): it runs outside the U-Net's graph and its
 * states are fed in as inputs.
 */
import { ParamScope, Tensor, add, cast, div, gather, gelu, init, mul, reshape, stepFunction, sum } from '../engine/index.js';
import { TextStates, attentionBias, multiHeadAttention } from '../nn/attention.js';
import { layerNorm, linear } from '../nn/layers.js';
import { PAD } from './tokenizer.js';

export type { TextStates };

export interface TransformerEncoderConfig {
  kind: 'transformer';
  /** Tokens per prompt (the tokenizer's maxLength). */
  maxLength: number;
  vocabSize: number;
  /** Width D of token states. */
  width: number;
  layers: number;
  heads: number;
  /** Each token attends only to earlier ones (as CLIP's text tower); default bidirectional. */
  causal?: boolean;
}

export function validateEncoderConfig(c: TransformerEncoderConfig): void {
  const fail = (field: string, msg: string): never => {
    throw new Error(`text encoder config: ${field} ${msg}`);
  };
  for (const f of ['maxLength', 'vocabSize', 'width', 'layers', 'heads'] as const) {
    if (!Number.isInteger(c[f]) || c[f] < 1) fail(f, `must be a positive integer, got ${c[f]}`);
  }
  if (c.width % c.heads !== 0) fail('heads', `${c.heads} does not divide width ${c.width}`);
}

/** 1 where ids is a real token, 0 at padding: [N, L] float32. */
export function tokenMask(ids: Tensor): Tensor {
  return stepFunction(cast(ids, 'float32'), PAD + 0.5);
}

/** Pre-norm transformer encoder over token ids [N, L] (int64). Parameters live under `p`. */
export function transformerTextEncoder(p: ParamScope, c: TransformerEncoderConfig, ids: Tensor): TextStates {
  validateEncoderConfig(c);
  const l = ids.shape[1];
  if (l !== c.maxLength) throw new Error(`text encoder: ids have ${l} tokens per prompt, the encoder takes ${c.maxLength}`);
  const mask = tokenMask(ids);
  const bias = attentionBias(mask, c.causal ?? false);
  // N(0, 1) token embeddings (PyTorch's nn.Embedding default): tokens stand out against the
  // smaller position embeddings, so that prompts differ clearly from the first step.
  const tokens = p.param('token_embed.weight', [c.vocabSize, c.width], init.normal(1));
  const positions = p.param('position_embed', [c.maxLength, c.width], init.normal(0.02));
  let h = add(gather(tokens, ids), positions);
  for (let i = 0; i < c.layers; i++) {
    const b = p.child(`blocks.${i}`);
    const x = layerNorm(b.child('norm1'), h);
    h = add(h, multiHeadAttention(b.child('attn'), x, x, c.heads, bias));
    h = add(h, linear(b.child('mlp.2'), gelu(linear(b.child('mlp.0'), layerNorm(b.child('norm2'), h), 4 * c.width)), c.width));
  }
  const states = layerNorm(p.child('final_norm'), h);
  return { states, mask, pooled: maskedMean(states, mask) };
}

/** Mean of states [N, L, D] over the tokens where mask [N, L] is 1. */
export function maskedMean(states: Tensor, mask: Tensor): Tensor {
  const [n, l] = mask.shape;
  const m = reshape(mask, [n, l, 1]);
  return div(sum(mul(states, m), [1]), reshape(sum(mask, [1]), [n, 1]));
}
