/** What the studio page learns about the run from the server (/studio.json). */
import type { SchedulerConfig, TimestepSpacing } from '../samplers/common.js';
import type { SchedulerName } from '../samplers/registry.js';

export interface StudioInfo {
  run: string;
  /** [channels, height, width] */
  shape: [number, number, number];
  conditioning: 'none' | 'class' | 'text';
  /** The run's scheduler config (schedulerConfigOf), for Diffuse's schedulers in the page. */
  schedulerConfig: Partial<SchedulerConfig>;
  /** The run's defaults, as diffuse sample uses them. */
  defaultEta: number;
  spacing: Partial<Record<SchedulerName, TimestepSpacing>>;
  /** A few images of the run's data set, [-1, 1], for the Forward tab. */
  images: number[][];
}
