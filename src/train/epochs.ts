import { FastGenerator } from '../diffusion/index.js';
import { shuffled } from '../data/index.js';
import { OptionError } from '../engine/errors.js';

/**
 * Which images a step trains on: consecutive slices of a shuffle drawn afresh each epoch from
 * (seed, epoch), so that any step's batch is known without replaying the run (exact resume).
 * The last partial batch of an epoch is dropped.
 */
export class EpochOrder {
  private cache: { epoch: number; order: number[] } | undefined;
  constructor(
    readonly count: number,
    readonly batchSize: number,
    readonly seed: number,
  ) {
    if (Math.floor(count / batchSize) < 1) throw new OptionError(`batch size ${batchSize} is larger than the ${count} training images; lower \`batchSize\``);
  }

  indices(step: number): number[] {
    const B = this.batchSize;
    const perEpoch = Math.floor(this.count / B);
    const offset = (step % perEpoch) * B;
    return this.epoch(Math.floor(step / perEpoch)).slice(offset, offset + B);
  }

  private epoch(epoch: number): number[] {
    if (this.cache?.epoch !== epoch) this.cache = { epoch, order: shuffled(this.count, new FastGenerator(this.seed * 1_000_003 + epoch)) };
    return this.cache.order;
  }
}
