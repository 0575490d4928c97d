/**
 * What a run is conditioned on. Its own module, free of Node imports (config.ts reads files), so
 * that the browser's sampling pipeline can ask it.
 */
import type { RunConfig } from './config.js';

/** What a run's network is conditioned on: a caption (text), a class label, or nothing. */
export type Conditioning = 'none' | 'class' | 'text';

/** What a run is conditioned on, from its config: the one place that answers "is this run conditional?". */
export function conditioningOf(config: Pick<RunConfig, 'text' | 'model'>): Conditioning {
  return config.text ? 'text' : config.model.numClasses !== undefined ? 'class' : 'none';
}
