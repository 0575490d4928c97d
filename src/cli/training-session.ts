/** What `diffuse train` and `diffuse train-vae` share around their loops: the stopping flags, Ctrl-C, the progress bar. */
import * as path from 'node:path';
import type { OptimizerConfig } from '../run/config.js';
import type { LoopOptions } from '../train/loop.js';
import { num } from './flags.js';
import { ProgressLine, formatDuration } from './progress.js';

/**
 * Runs `fn` with the loop options of the command's flags (--steps, --minutes, --sample-every,
 * --checkpoint-every): progress on `bar`, and Ctrl-C aborting the loop (it saves a checkpoint);
 * a second Ctrl-C quits at once.
 */
export async function trainingSession<T>(
  v: Record<string, unknown>,
  runDir: string,
  bar: ProgressLine,
  stop: { steps?: number; minutes?: number },
  fn: (loop: LoopOptions) => Promise<T>,
): Promise<T> {
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(130);
    bar.say('Ctrl-C: saving a checkpoint before exiting (press again to quit at once)');
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    const result = await fn({
      maxSteps: stop.steps,
      minutes: stop.minutes,
      sampleEvery: num(v, 'sample-every', { int: true, min: 0 }),
      checkpointEvery: num(v, 'checkpoint-every', { int: true, min: 1 }),
      signal: abort.signal,
      onProgress: (p) => {
        if (p.event) return bar.say(`step ${p.step}: wrote ${path.join(runDir, p.event)}`);
        bar.update(
          `step ${p.step}${p.maxSteps ? `/${p.maxSteps}` : ''} | loss ${p.loss.toFixed(4)} | ${p.imagesPerSecond.toFixed(0)} img/s | ${formatDuration(p.elapsedSeconds)} elapsed | ${p.etaSeconds !== undefined ? `${formatDuration(p.etaSeconds)} left` : ''}`,
        );
      },
    });
    bar.done();
    return result;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** The optimizer's fields from the flags both training commands share (--batch, --lr, --warmup, --weight-decay, --clip-grad, --ema, --seed). */
export function optimizerFlags(v: Record<string, unknown>): Omit<OptimizerConfig, 'lrDecay'> {
  return {
    batchSize: num(v, 'batch', { int: true, min: 1 }) as number,
    lr: num(v, 'lr', { min: 0 }) as number,
    warmupSteps: num(v, 'warmup', { int: true, min: 0 }) as number,
    weightDecay: num(v, 'weight-decay', { min: 0 }) as number,
    clipGradNorm: num(v, 'clip-grad', { min: 0 }) as number,
    emaDecay: num(v, 'ema', { min: 0, max: 0.999999 }) as number,
    seed: num(v, 'seed', { int: true, min: 0 }) as number,
  };
}
