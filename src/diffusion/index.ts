/** Noise schedules, the forward process, training objectives and random numbers. */
export * from './random.js';
export * from './schedule.js';
export * from './forward.js';
