import { writeFileAtomic } from '../engine/index.js';
import { evaluateRun } from '../eval/evaluate.js';
import { readRunConfig } from '../train/run.js';
import type { Command } from './main.js';
import { UsageError, num } from './main.js';
import { SAMPLING_FLAGS, parseSampling } from './sampling-flags.js';
import { ProgressLine } from './progress.js';

export const commandEval: Command = {
  summary: "score a run's samples against held-out images (classifier Fréchet distance, precision, recall)",
  usage: 'diffuse eval --run DIR [--count N] [--scheduler ddim|ddpm|dpm++2m|euler|euler_a|heun] [--karras] [--steps N] [--eta E] [--seed S] [--json FILE]',
  options: {
    run: { type: 'string', description: 'run folder written by diffuse train' },
    count: { type: 'string', description: 'samples to generate (and held-out images to compare with)', default: '1000' },
    ...SAMPLING_FLAGS,
    json: { type: 'string', description: 'also write the report as JSON' },
  },
  async run(v) {
    if (!v.run) throw new UsageError('--run DIR is required (a folder written by diffuse train)');
    const runDir = String(v.run);
    const { device, ...sampling } = parseSampling(v);
    const config = readRunConfig(runDir);
    const bar = new ProgressLine(process.stderr, 15_000);
    const report = await evaluateRun(runDir, config, {
      count: num(v, 'count', { int: true, min: 10 }) as number,
      ...sampling,
      runtime: { device },
      log: (s) => bar.update(s),
    });
    bar.done();
    const row = (name: string, s: typeof report.samples) =>
      `| ${name.padEnd(30)} | ${s.frechet.toFixed(3).padStart(9)} | ${s.precision.toFixed(3).padStart(9)} | ${s.recall.toFixed(3).padStart(6)} | ${`${(100 * s.confident).toFixed(1)}%`.padStart(18)} |`;
    console.log(`\n${runDir}: ${report.count} samples (${report.sampler}) vs ${report.count} held-out ${config.data.source} images`);
    console.log('| images                         | Fréchet ↓ | precision | recall | confident (p>=0.9) |');
    console.log('|--------------------------------|-----------|-----------|--------|--------------------|');
    console.log(row('samples', report.samples));
    console.log(row('held-out real (floor)', report.realFloor));
    console.log(`class histogram of samples: [${report.samples.histogram.join(', ')}]`);
    console.log('Fréchet distance in the evaluator classifier\'s 128-d feature space (a classifier Diffuse trains; not Inception FID).');
    if (v.json) await writeFileAtomic(String(v.json), JSON.stringify(report, null, 2) + '\n');
  },
};
