import { type UNetConfig } from '../../src/index.js';

/** A small U-Net with every block type: two levels, multi-head attention, middle attention. */
export const TINY_UNET: UNetConfig = {
  imageSize: 8,
  inChannels: 2,
  outChannels: 2,
  baseChannels: 8,
  channelMults: [1, 2],
  resBlocks: 1,
  attentionResolutions: [4],
  attentionHeads: 2,
  normGroups: 2,
  timeEmbedDim: 8,
  middleAttention: true,
};
