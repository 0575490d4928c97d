/**
 * Layers: tiny functions that declare their parameters in a ParamScope and
 * apply them. Names and layouts follow PyTorch (weight [out, in, kh, kw],
 * bias [out]), so weights can be exchanged as .safetensors.
 */
import {
  ParamScope,
  Tensor,
  concat,
  conv2d as conv2dOp,
  cos,

  groupNorm as groupNormOp,
  init,
  layerNorm as layerNormOp,
  linear as linearOp,
  mul,
  reshape,
  sin,
  constant,
} from '../engine/index.js';

/** Conv2d with PyTorch's default initialisation, or all zeros with `zero` (a residual branch that starts as nothing). */
export function conv2d(
  p: ParamScope,
  x: Tensor,
  outChannels: number,
  kernel: number,
  opts: { stride?: number; padding?: number; bias?: boolean; zero?: boolean } = {},
): Tensor {
  const inChannels = x.shape[1];
  const fanIn = inChannels * kernel * kernel;
  const fill = opts.zero ? init.zeros() : init.torchDefault(fanIn);
  const w = p.param('weight', [outChannels, inChannels, kernel, kernel], fill);
  const b = opts.bias === false ? undefined : p.param('bias', [outChannels], fill);
  return conv2dOp(x, w, b, { stride: opts.stride ?? 1, padding: opts.padding ?? Math.floor(kernel / 2) });
}

/** Linear layer y = x W^T + b, PyTorch's default initialisation. */
export function linear(p: ParamScope, x: Tensor, outFeatures: number, bias = true): Tensor {
  const inFeatures = x.shape[x.rank - 1];
  const w = p.param('weight', [outFeatures, inFeatures], init.torchDefault(inFeatures));
  const b = bias ? p.param('bias', [outFeatures], init.torchDefault(inFeatures)) : undefined;
  return linearOp(x, w, b);
}

export function groupNorm(p: ParamScope, x: Tensor, groups: number, eps = 1e-5): Tensor {
  const c = x.shape[1];
  return groupNormOp(x, groups, p.param('weight', [c], init.ones()), p.param('bias', [c], init.zeros()), eps);
}

export function layerNorm(p: ParamScope, x: Tensor, eps = 1e-5): Tensor {
  const c = x.shape[x.rank - 1];
  return layerNormOp(x, p.param('weight', [c], init.ones()), p.param('bias', [c], init.zeros()), eps);
}

/**
 * Sinusoidal embedding of timesteps t [N] -> [N, dim] (Vaswani et al. 2017, as in DDPM):
 * [sin(t w_0), ..., sin(t w_{d/2-1}), cos(t w_0), ...], w_i = 10000^(-i / (d/2)).
 */
export function timestepEmbedding(t: Tensor, dim: number, maxPeriod = 10000): Tensor {
  if (dim % 2 !== 0) throw new Error(`timestepEmbedding: dim must be even, got ${dim}`);
  const half = dim / 2;
  const freqs = Array.from({ length: half }, (_, i) => Math.exp((-Math.log(maxPeriod) * i) / half));
  const args = mul(reshape(t, [t.size, 1]), constant(freqs, [1, half], t.dtype));
  return concat([sin(args), cos(args)], 1);
}

