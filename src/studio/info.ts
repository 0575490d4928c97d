/** What the studio page learns from the server (/studio.json): a run of Diffuse's, or a model folder. */
import type { RunConfig } from '../run/config.js';

/** What the Inspect tab can check: a watermark key given, trust anchors given, a detector calibration found (or why not). */
export interface InspectChecks {
  key: boolean;
  trust: boolean;
  detector: string;
}

/** A training run of Diffuse's: the page runs its exported denoiser. */
export interface RunStudioInfo {
  kind: 'run';
  /** The run folder's name. */
  run: string;
  /** The run's config.json, whole: the page builds its schedulers and pipeline from it, as Node does. */
  config: RunConfig;
  /** [channels, height, width] of the images (a latent run's are the autoencoder's). */
  shape: [number, number, number];
  /** The export's files the server serves (under /model/), by component folder ('' for the folder itself). */
  files: Record<string, string[]>;
  /** A latent run: the U-Net works on latents of this shape, and its images are vae_decoder's output for latents / scalingFactor. */
  latent?: { scalingFactor: number; latentShape: [number, number, number] };
  conditioning: 'none' | 'class' | 'text';
  /** A few images of the run's data set, [-1, 1], for the Forward tab and as sources to edit. */
  images: number[][];
  inspect: InspectChecks;
}

/** A Stable Diffusion-class model folder (Optimum's layout): the page opens its files from /model/. */
export interface ModelStudioInfo {
  kind: 'model';
  /** The folder's name. */
  run: string;
  /** The files the server serves, by component folder ('' for the folder itself): the page opens only these. */
  files: Record<string, string[]>;
  /** The image side the U-Net was made for, in pixels. */
  defaultSize: number;
  /** Pixels per latent position along each side. */
  vaeScale: number;
  /** An inpainting U-Net (9 input channels): it only inpaints. */
  inpainting: boolean;
  /** The folder scheduler's class name (diffusers'). */
  scheduler: string;
  /** Bytes of the U-Net's files: over a gigabyte, the page runs the model on the server by default (32-bit WebAssembly cannot). */
  unetBytes: number;
  inspect: InspectChecks;
}

export type StudioInfo = RunStudioInfo | ModelStudioInfo;
