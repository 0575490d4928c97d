/** What the studio page learns about the run from the server (/studio.json). */
import type { RunConfig } from '../run/config.js';

export interface StudioInfo {
  /** The run folder's name. */
  run: string;
  /** The run's config.json, whole: the page builds its schedulers and pipeline from it, as Node does. */
  config: RunConfig;
  /** [channels, height, width] */
  shape: [number, number, number];
  conditioning: 'none' | 'class' | 'text';
  /** A few images of the run's data set, [-1, 1], for the Forward tab and as sources to edit. */
  images: number[][];
  /** What the Inspect tab can check: a watermark key given, trust anchors given, a detector calibration found (or why not). */
  inspect: { key: boolean; trust: boolean; detector: string };
}
