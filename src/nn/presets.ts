/** U-Net presets, named for what they are for. */
import { REFERENCE_UNET, UNetConfig } from './unet.js';

export const UNET_PRESETS = {
  /** For tests: a few thousand parameters, 8x8 or 16x16 input. */
  tiny: {
    imageSize: 8,
    inChannels: 1,
    outChannels: 1,
    baseChannels: 8,
    channelMults: [1, 2],
    resBlocks: 1,
    attentionResolutions: [4],
    attentionHeads: 1,
    normGroups: 4,
    timeEmbedDim: 8,
    middleAttention: false,
  },
  /** MNIST / Fashion-MNIST (28x28 grey) on 2 CPU cores: 28 -> 14 -> 7, attention at 7x7. */
  mnist: {
    imageSize: 28,
    inChannels: 1,
    outChannels: 1,
    baseChannels: 32,
    channelMults: [1, 2, 2],
    resBlocks: 1,
    attentionResolutions: [7],
    attentionHeads: 1,
    normGroups: 8,
    timeEmbedDim: 32,
    middleAttention: false,
  },
  /** 32x32 RGB (emoji, icons) on 2 CPU cores: 32 -> 16 -> 8, attention at 8x8. */
  color32: {
    imageSize: 32,
    inChannels: 3,
    outChannels: 3,
    baseChannels: 48,
    channelMults: [1, 2, 2],
    resBlocks: 1,
    attentionResolutions: [8],
    attentionHeads: 4,
    normGroups: 8,
    timeEmbedDim: 64,
    middleAttention: false,
  },
  /** The engine benchmark network: 32x32 RGB, 1.59M parameters. */
  reference: REFERENCE_UNET,
  /** 64x64 RGB (emoji, icons): four levels, attention at 16 and 8. */
  color64: {
    imageSize: 64,
    inChannels: 3,
    outChannels: 3,
    baseChannels: 64,
    channelMults: [1, 2, 2, 4],
    resBlocks: 2,
    attentionResolutions: [16, 8],
    attentionHeads: 4,
    normGroups: 16,
    timeEmbedDim: 64,
    middleAttention: true,
  },
} satisfies Record<string, UNetConfig>;

export type UNetPresetName = keyof typeof UNET_PRESETS;

export function unetPreset(name: string): UNetConfig {
  const p = (UNET_PRESETS as Record<string, UNetConfig>)[name];
  if (!p) throw new Error(`unknown model preset '${name}' (known: ${Object.keys(UNET_PRESETS).join(', ')})`);
  return { ...p };
}
