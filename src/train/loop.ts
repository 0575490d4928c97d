/**
 * The loop every training run shares (U-Net and autoencoder): step until the step or time budget
 * or an abort ends it, log, checkpoint, write preview grids, report progress. What a step feeds
 * is the caller's: a pure function of the step number, so that a resumed run continues exactly.
 */
import { appendFile } from 'node:fs/promises';
import { NonFiniteError, TensorData, TrainStep } from '../engine/index.js';
import { OptionError } from '../engine/errors.js';

export interface Progress {
  step: number;
  maxSteps?: number;
  loss: number;
  gradNorm: number;
  lr: number;
  imagesPerSecond: number;
  elapsedSeconds: number;
  /** Seconds left by the step or time budget, whichever ends first. */
  etaSeconds?: number;
  event?: string;
}

/** When to stop and how often to log, checkpoint and preview. */
export interface LoopOptions {
  /** Stop after this many steps in total (counting resumed ones). */
  maxSteps?: number;
  /** Stop after this many minutes of this session. */
  minutes?: number;
  logEvery?: number;
  checkpointEvery?: number;
  /** Write a preview grid every N steps (0: only at the end). */
  sampleEvery?: number;
  /** Progress callback (the CLI draws its bar with it). */
  onProgress?: (p: Progress) => void;
  /** Aborting saves a checkpoint and returns (Ctrl-C in the CLI). */
  signal?: AbortSignal;
}

/** What the loop drives. */
export interface LoopSpec {
  step: TrainStep;
  batchSize: number;
  /** The feeds of a step's batch. */
  batch(step: number): Promise<Record<string, TensorData>>;
  lr(step: number): number;
  emaDecay(step: number): number;
  /** log.jsonl of the run. */
  logFile: string;
  checkpoint: string;
  save(): Promise<void>;
  /** Writes samples/NAME.png. */
  sample(name: string): Promise<void>;
}

export interface LoopResult {
  steps: number;
  finalLoss: number;
  stoppedBy: 'steps' | 'time' | 'signal';
}

export async function trainingLoop(spec: LoopSpec, opts: LoopOptions): Promise<LoopResult> {
  const { step } = spec;
  const B = spec.batchSize;
  const logEvery = opts.logEvery ?? 50;
  const checkpointEvery = opts.checkpointEvery ?? 500;
  const sampleEvery = opts.sampleEvery ?? 0;
  const started = performance.now();
  const startStep = step.step;
  const deadline = opts.minutes !== undefined ? started + opts.minutes * 60_000 : Infinity;
  let lossAvg = 0;
  let stoppedBy: LoopResult['stoppedBy'] = 'steps';
  let logLines: string[] = [];
  const flushLog = async () => {
    if (logLines.length) await appendFile(spec.logFile, logLines.join(''));
    logLines = [];
  };

  for (;;) {
    if (opts.maxSteps !== undefined && step.step >= opts.maxSteps) break;
    if (performance.now() >= deadline) {
      stoppedBy = 'time';
      break;
    }
    if (opts.signal?.aborted) {
      stoppedBy = 'signal';
      break;
    }
    const s = step.step;
    const lr = spec.lr(s);
    let r;
    try {
      r = await step.run(await spec.batch(s), { lr, emaDecay: spec.emaDecay(s) });
    } catch (e) {
      // The step did not touch the weights: keep the last good state on disk, then stop.
      await flushLog();
      await spec.save();
      throw e instanceof NonFiniteError ? new OptionError(`${e.message} The last good state is in ${spec.checkpoint}; resume with a lower \`lr\`.`) : e;
    }
    lossAvg = s === startStep ? r.loss : 0.98 * lossAvg + 0.02 * r.loss;
    const elapsed = (performance.now() - started) / 1000;
    const done = step.step - startStep;
    const ips = (done * B) / elapsed;
    const stepsLeft = opts.maxSteps !== undefined ? (opts.maxSteps - step.step) / (done / elapsed) : Infinity;
    const timeLeft = (deadline - performance.now()) / 1000;
    const eta = Math.min(stepsLeft, timeLeft);
    const progress: Progress = { step: step.step, maxSteps: opts.maxSteps, loss: lossAvg, gradNorm: r.gradNorm, lr, imagesPerSecond: ips, elapsedSeconds: elapsed, etaSeconds: Number.isFinite(eta) ? eta : undefined };
    if (step.step % logEvery === 0) {
      logLines.push(JSON.stringify({ step: step.step, loss: r.loss, loss_avg: lossAvg, grad_norm: r.gradNorm, lr, images_per_second: +ips.toFixed(1), elapsed_s: +elapsed.toFixed(1) }) + '\n');
      await flushLog();
    }
    opts.onProgress?.(progress);
    if (step.step % checkpointEvery === 0) await spec.save();
    if (sampleEvery > 0 && step.step % sampleEvery === 0) {
      const name = `step-${String(step.step).padStart(7, '0')}`;
      await spec.sample(name);
      opts.onProgress?.({ ...progress, event: `samples/${name}.png` });
    }
  }
  await flushLog();
  await spec.save();
  await spec.sample('final');
  return { steps: step.step, finalLoss: lossAvg, stoppedBy };
}
