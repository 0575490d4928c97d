import { writeFileAtomic } from '../engine/index.js';
import { evaluateAdherence, evaluateRun } from '../eval/evaluate.js';
import { readRunConfig } from '../run/run.js';
import type { Command } from './flags.js';
import { UsageError, num } from './flags.js';
import { DIVERGED_WARNING, SAMPLING_FLAGS, divergedWarning, parseSampling, withRunDefaults } from './sampling-flags.js';
import { ProgressLine } from './progress.js';

export const commandEval: Command = {
  summary: "score a run's samples against held-out images (classifier Fréchet distance, precision, recall)",
  usage: 'diffuse eval --run DIR [--guidance W | --adherence [--guidance 0,1,3,5]] [--count N] [--scheduler ddim|ddpm|dpm++2m|euler|euler_a|heun] [--karras] [--steps N] [--eta E] [--seed S] [--json FILE]',
  options: {
    run: { type: 'string', description: 'run folder written by diffuse train' },
    count: { type: 'string', description: 'samples to generate (and held-out images to compare with)', default: '1000' },
    ...SAMPLING_FLAGS,
    json: { type: 'string', description: 'also write the report as JSON' },
    adherence: { type: 'boolean', description: 'text/class-conditional runs: how often the evaluator reads the prompted class, per guidance weight' },
    guidance: { type: 'string', description: 'class/text-conditional runs: sample each image conditioned on the label of the held-out image it is compared with, at this guidance weight (0 unconditional, 1 conditional without guidance; without it, the null condition); with --adherence, the weights to compare, comma-separated (default 0,1,3,5)' },
  },
  async run(v) {
    if (!v.run) throw new UsageError('--run DIR is required (a folder written by diffuse train)');
    const runDir = String(v.run);
    const flags = parseSampling(v);
    const config = readRunConfig(runDir);
    const { device, ...sampling } = withRunDefaults(flags, config);
    const bar = new ProgressLine(process.stderr, 15_000);
    if (v.adherence) {
      const guidances = String(v.guidance ?? '0,1,3,5').split(',').map((g) => Number(g.trim()));
      if (guidances.some((g) => !Number.isFinite(g) || g < 0)) throw new UsageError(`--guidance must be comma-separated numbers >= 0, got '${String(v.guidance)}'`);
      const r = await evaluateAdherence(runDir, config, { count: num(v, 'count', { int: true, min: 10 }) as number, ...sampling, runtime: { device }, guidances, log: (s) => bar.update(s) });
      bar.done();
      console.log(`\n${runDir}: prompt adherence, ${r.count} samples per guidance weight (${r.sampler}), ${r.seconds.toFixed(0)} s`);
      console.log(`conditions: ${r.conditions.map((c) => `"${c}"`).join(', ')}`);
      console.log('| guidance | read as the prompted class | per class');
      console.log('|----------|----------------------------|----------');
      for (const row of r.rows) console.log(`| ${String(row.guidance).padStart(8)} | ${`${(100 * row.rate).toFixed(1)}%`.padStart(26)} | ${row.perClass.map((p) => (100 * p).toFixed(0)).join(' ')}`);
      console.log("The reader is the evaluator's classifier, trained by Diffuse on the real training images, separate from the generator.");
      for (const row of r.rows) if (row.diverged > DIVERGED_WARNING) console.log(divergedWarning(row.diverged, 'they were clipped before scoring', `guidance ${row.guidance}: `));
      if (v.json) await writeFileAtomic(String(v.json), JSON.stringify(r, null, 2) + '\n');
      return;
    }
    const guidance = num(v, 'guidance', { min: 0 });
    const report = await evaluateRun(runDir, config, {
      count: num(v, 'count', { int: true, min: 10 }) as number,
      ...sampling,
      ...(guidance !== undefined ? { guidance } : {}),
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
    console.log(`evaluator check: overlays of two held-out images of different classes read with confidence >= 0.9: ${(100 * report.overlayConfident).toFixed(1)}% (no single class; lower is stricter)`);
    console.log('Fréchet distance in the evaluator classifier\'s 128-d feature space (a classifier Diffuse trains; not Inception FID).');
    if (report.diverged > DIVERGED_WARNING) console.log(divergedWarning(report.diverged, 'they were clipped before scoring'));
    if (v.json) await writeFileAtomic(String(v.json), JSON.stringify(report, null, 2) + '\n');
  },
};
