/**
 * The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022, arXiv 2112.10752,
 * sec. 3 and appendix G), laid out as diffusers' AutoencoderKL so that weights are exchangeable
 * by name (encoder.down_blocks.0.resnets.0.conv1.weight, quant_conv.bias, ...):
 *
 *   x ─conv_in─► [ResBlocks ─down(stride 2)] x levels ─► mid(Res, Attn, Res) ─GN─SiLU─conv_out─►
 *     ─quant_conv─► (mean, logvar)   z = mean + exp(logvar / 2) eps
 *   z ─post_quant_conv─conv_in─► mid(Res, Attn, Res) ─► [ResBlocks x (n+1) ─up(nearest, conv)] x levels
 *     ─GN─SiLU─conv_out─► x̂
 *
 * No timestep, no skip connections between encoder and decoder: the latent is the only way
 * through, so it must carry the image. Each stride-2 conv halves the side, so `blockOutChannels`
 * of length L downsamples by 2^(L-1).
 */
import { ParamScope, Tensor, abs, add, exp, matmul, mean, mul, pad, reshape, silu, slice, softmax, square, sub, sum, transpose, upsampleNearest } from '../engine/index.js';
import { conv2d, groupNorm, linear } from './layers.js';

export interface AutoencoderConfig {
  /** Image channels (3 for RGB, 1 for grey). */
  inChannels: number;
  /** Channels of the latent (Stable Diffusion's autoencoder has 4). */
  latentChannels: number;
  /** Channels of each level, first to last; the image side shrinks by 2 between levels. */
  blockOutChannels: readonly number[];
  /** ResBlocks per encoder level (the decoder has one more, as in diffusers). */
  layersPerBlock: number;
  /** Groups of every GroupNorm. */
  normGroups: number;
}

/** Side of the image divided by the side of its latent: 2^(levels - 1). */
export function downsamplingFactor(c: AutoencoderConfig): number {
  return 2 ** (c.blockOutChannels.length - 1);
}

/** Checks a config, with errors that name the field. */
export function validateAutoencoderConfig(c: AutoencoderConfig): void {
  const fail = (field: string, msg: string): never => {
    throw new Error(`autoencoder config: ${field} ${msg}`);
  };
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!posInt(c.inChannels)) fail('inChannels', `must be a positive integer, got ${c.inChannels}`);
  if (!posInt(c.latentChannels)) fail('latentChannels', `must be a positive integer, got ${c.latentChannels}`);
  if (!posInt(c.layersPerBlock)) fail('layersPerBlock', `must be a positive integer, got ${c.layersPerBlock}`);
  if (!c.blockOutChannels.length) fail('blockOutChannels', 'needs at least one level');
  for (const ch of c.blockOutChannels) {
    if (!posInt(ch)) fail('blockOutChannels', `must be positive integers, got ${ch}`);
    if (ch % c.normGroups !== 0) fail('normGroups', `${c.normGroups} does not divide ${ch} channels`);
  }
}

/** GroupNorm's epsilon in diffusers' autoencoder (1e-6, not the U-Net's 1e-5). */
const EPS = 1e-6;

/** GN -> SiLU -> conv -> GN -> SiLU -> conv, plus a 1x1-projected shortcut when the width changes (diffusers' ResnetBlock2D without a time embedding). */
function resnet(p: ParamScope, x: Tensor, outChannels: number, groups: number): Tensor {
  let h = conv2d(p.child('conv1'), silu(groupNorm(p.child('norm1'), x, groups, EPS)), outChannels, 3);
  h = conv2d(p.child('conv2'), silu(groupNorm(p.child('norm2'), h, groups, EPS)), outChannels, 3);
  const skip = x.shape[1] === outChannels ? x : conv2d(p.child('conv_shortcut'), x, outChannels, 1);
  return add(skip, h);
}

/** Single-head self-attention over all positions with linear projections, plus the input (diffusers' Attention as the autoencoder builds it). */
function attention(p: ParamScope, x: Tensor, groups: number): Tensor {
  const [n, c, hgt, wid] = x.shape;
  const tokens = transpose(reshape(groupNorm(p.child('group_norm'), x, groups, EPS), [n, c, hgt * wid]), [0, 2, 1]);
  const q = linear(p.child('to_q'), tokens, c);
  const k = linear(p.child('to_k'), tokens, c);
  const v = linear(p.child('to_v'), tokens, c);
  const weights = softmax(mul(matmul(q, transpose(k, [0, 2, 1])), 1 / Math.sqrt(c)));
  const out = linear(p.child('to_out').child(0), matmul(weights, v), c);
  return add(x, reshape(transpose(out, [0, 2, 1]), [n, c, hgt, wid]));
}

function midBlock(p: ParamScope, x: Tensor, groups: number): Tensor {
  const c = x.shape[1];
  let h = resnet(p.child('resnets').child(0), x, c, groups);
  h = attention(p.child('attentions').child(0), h, groups);
  return resnet(p.child('resnets').child(1), h, c, groups);
}

/** The encoder and quant_conv: images [N, C, H, W] in [-1, 1] -> [N, 2 * latent, H / f, W / f], the posterior's mean and log-variance stacked. */
export function encodeMoments(p: ParamScope, c: AutoencoderConfig, x: Tensor): Tensor {
  validateAutoencoderConfig(c);
  const e = p.child('encoder');
  const g = c.normGroups;
  const chans = c.blockOutChannels;
  let h = conv2d(e.child('conv_in'), x, chans[0], 3);
  for (let l = 0; l < chans.length; l++) {
    const b = e.child('down_blocks').child(l);
    for (let r = 0; r < c.layersPerBlock; r++) h = resnet(b.child('resnets').child(r), h, chans[l], g);
    if (l < chans.length - 1) {
      // Pad right and bottom by one, then a 3x3 stride-2 conv without padding (LDM's asymmetric downsampling).
      h = pad(h, [0, 0, 0, 0], [0, 0, 1, 1]);
      h = conv2d(b.child('downsamplers').child(0).child('conv'), h, chans[l], 3, { stride: 2, padding: 0 });
    }
  }
  h = midBlock(e.child('mid_block'), h, g);
  h = conv2d(e.child('conv_out'), silu(groupNorm(e.child('conv_norm_out'), h, g, EPS)), 2 * c.latentChannels, 3);
  return conv2d(p.child('quant_conv'), h, 2 * c.latentChannels, 1);
}

/** Splits stacked moments into the posterior's mean and log-variance. */
export function splitMoments(moments: Tensor): { mean: Tensor; logvar: Tensor } {
  const k = moments.shape[1] / 2;
  return { mean: slice(moments, 1, 0, k), logvar: slice(moments, 1, k, 2 * k) };
}

/** A draw from the posterior, z = mean + exp(logvar / 2) eps, with eps ~ N(0, I) given. */
export function samplePosterior(moments: Tensor, eps: Tensor): Tensor {
  const { mean: mu, logvar } = splitMoments(moments);
  return add(mu, mul(exp(mul(logvar, 0.5)), eps));
}

/**
 * KL(q(z|x) || N(0, I)) per image, summed over the latent's elements:
 * 0.5 sum(mean^2 + var - 1 - logvar) [N].
 */
export function klDivergence(moments: Tensor): Tensor {
  const { mean: mu, logvar } = splitMoments(moments);
  return mul(sum(sub(add(square(mu), exp(logvar)), add(logvar, 1)), [1, 2, 3]), 0.5);
}

/** post_quant_conv and the decoder: latents [N, latent, h, w] -> images [N, C, h f, w f]. */
export function decodeLatents(p: ParamScope, c: AutoencoderConfig, z: Tensor): Tensor {
  validateAutoencoderConfig(c);
  const d = p.child('decoder');
  const g = c.normGroups;
  const rev = [...c.blockOutChannels].reverse();
  let h = conv2d(p.child('post_quant_conv'), z, c.latentChannels, 1);
  h = conv2d(d.child('conv_in'), h, rev[0], 3);
  h = midBlock(d.child('mid_block'), h, g);
  for (let l = 0; l < rev.length; l++) {
    const b = d.child('up_blocks').child(l);
    for (let r = 0; r <= c.layersPerBlock; r++) h = resnet(b.child('resnets').child(r), h, rev[l], g);
    if (l < rev.length - 1) h = conv2d(b.child('upsamplers').child(0).child('conv'), upsampleNearest(h, 2), rev[l], 3);
  }
  return conv2d(d.child('conv_out'), silu(groupNorm(d.child('conv_norm_out'), h, g, EPS)), c.inChannels, 3);
}

/** The per-pixel mean of |x - x̂| per image [N]: the reconstruction term of LDM's autoencoder loss (without its perceptual and adversarial terms). */
export function l1PerImage(x: Tensor, recon: Tensor): Tensor {
  return mean(abs(sub(x, recon)), [1, 2, 3]);
}

/** Autoencoder presets, named for what they are for. */
export const AUTOENCODER_PRESETS = {
  /** For tests: 8 and 16 channels, downsampling 2. */
  tiny: { inChannels: 3, latentChannels: 4, blockOutChannels: [8, 16], layersPerBlock: 1, normGroups: 4 },
  /**
   * 64 px RGB on 2 CPU cores: downsampling 4 (64x64x3 -> 16x16x4, 12x fewer values). Narrow so
   * that it sees many epochs in minutes: on 2 cores, 43 training images/s against 15 with twice
   * the channels (32, 64, 128), one-minute runs of `diffuse train-vae --data emoji`.
   */
  f4: { inChannels: 3, latentChannels: 4, blockOutChannels: [16, 32, 64], layersPerBlock: 1, normGroups: 8 },
  /** Downsampling 8 (64x64x3 -> 8x8x4, 48x fewer values), as Stable Diffusion's autoencoder. */
  f8: { inChannels: 3, latentChannels: 4, blockOutChannels: [16, 32, 64, 64], layersPerBlock: 1, normGroups: 8 },
} satisfies Record<string, AutoencoderConfig>;

export type AutoencoderPresetName = keyof typeof AUTOENCODER_PRESETS;

/** A copy of a preset's config (throws with the known names for an unknown one). */
export function autoencoderPreset(name: string): AutoencoderConfig {
  if (!(name in AUTOENCODER_PRESETS)) throw new Error(`unknown autoencoder preset '${name}' (known: ${Object.keys(AUTOENCODER_PRESETS).join(', ')})`);
  const p = AUTOENCODER_PRESETS[name as AutoencoderPresetName];
  return { ...p, blockOutChannels: [...p.blockOutChannels] };
}
