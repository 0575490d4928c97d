import { ImageDataset, RunConfig, TRAIN_DEFAULTS, unetPreset } from '../../src/index.js';
import { ParamScope, ParamStore, input } from '../../src/engine/index.js';
import { TextTokenizer, exportTextEncoder, transformerTextEncoder } from '../../src/text/index.js';

/** 96 synthetic 1x8x8 images: bright blobs at one of 4 positions (label = position). */
export function blobs(count = 96): ImageDataset {
  const images = new Float32Array(count * 64).fill(-1);
  const labels = new Int32Array(count);
  for (let k = 0; k < count; k++) {
    const c = k % 4;
    labels[k] = c;
    const [oy, ox] = [(c >> 1) * 4, (c & 1) * 4];
    for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) images[k * 64 + (oy + y + 0) * 8 + ox + x] = 1;
  }
  return { name: 'blobs', images, count, channels: 1, height: 8, width: 8, labels, classNames: ['tl', 'tr', 'bl', 'br'] };
}

export function tinyConfig(over: Partial<RunConfig> = {}): RunConfig {
  return {
    format: 'diffuse-run-1',
    data: { source: 'blobs', flip: false },
    preset: 'tiny',
    model: unetPreset('tiny'),
    schedule: { ...TRAIN_DEFAULTS.schedule, numTrainTimesteps: 100, betaEnd: 0.2 },
    predictionType: 'epsilon',
    lossWeighting: 'mse',
    minSnrGamma: 5,
    batchSize: 16,
    lr: 3e-3,
    warmupSteps: 5,
    weightDecay: 0,
    clipGradNorm: 1,
    emaDecay: 0.9,
    seed: 3,
    ...over,
  };
}

/** 96 flat 1x8x8 images at one of 4 grey levels (label = level) plus a little texture. */
export const LEVELS = [-0.8, -0.3, 0.3, 0.8];
export function levels(count = 96): ImageDataset {
  const images = new Float32Array(count * 64);
  const labels = new Int32Array(count);
  for (let k = 0; k < count; k++) {
    labels[k] = k % 4;
    for (let i = 0; i < 64; i++) images[k * 64 + i] = LEVELS[k % 4] + 0.1 * Math.sin(i * 0.9 + k);
  }
  return { name: 'levels', images, count, channels: 1, height: 8, width: 8, labels, classNames: ['black', 'dark', 'light', 'white'] };
}

/** The grey levels' names, darkest first. */
export const LEVEL_NAMES = ['black', 'dark grey', 'light grey', 'white'];

/** levels() with a caption per image: "a black square", ... */
export function captionedLevels(): ImageDataset {
  const d = levels();
  return { ...d, captions: Array.from(d.labels as Int32Array, (l) => `a ${LEVEL_NAMES[l]} square`) };
}

/** A frozen text encoder for `tokenizer`: a Diffuse transformer with random weights (width 12), written to `file` as ONNX (input_ids -> last_hidden_state, pooler_output). */
export async function writeFrozenEncoder(file: string, tokenizer: TextTokenizer & { vocabSize: number }): Promise<void> {
  const enc = { kind: 'transformer' as const, maxLength: tokenizer.maxLength, vocabSize: tokenizer.vocabSize, width: 12, layers: 1, heads: 2 };
  const store = new ParamStore(1);
  transformerTextEncoder(new ParamScope(store), enc, input('ids', [1, enc.maxLength], 'int64'));
  await exportTextEncoder(enc, store.values(), file);
}
