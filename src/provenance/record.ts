/**
 * What Diffuse writes into the manifests it signs: its own assertion's label and record, and the
 * IPTC term for generated media. Kept apart from the signing code so that readers load no signer.
 */

/** IPTC's term for media made by a trained model (C2PA's digitalSourceType for generated images). */
export const TRAINED_ALGORITHMIC_MEDIA = 'http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia';
/** The label of Diffuse's own assertion. */
export const DIFFUSE_ASSERTION = 'diffuse.generation';
/** The version written into softwareAgent. */
export const DIFFUSE_VERSION = '0.1.0';

/** What made an image: stored in the diffuse.generation assertion. Keys never go here. */
export interface GenerationRecord {
  /** 'generate', 'img2img', 'inpaint'. */
  operation: 'generate' | 'img2img' | 'inpaint';
  /** The run folder's name (not its full path, which may name the user). */
  run: string;
  /** SHA-256 of the model's weights. */
  modelHash: string;
  scheduler: string;
  steps: number;
  seed: number;
  eta?: number;
  guidance?: number;
  prompt?: string;
  negativePrompt?: string;
  classLabel?: string;
  strength?: number;
  /** The watermark's payload (a 32-bit id), when the image carries one. */
  watermarkPayload?: number;
  /** Position of the image in its batch, or 'grid' for a grid of many. */
  index?: number | 'grid';
}

