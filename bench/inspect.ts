/**
 * `diffuse inspect` on a folder of 1-2 megapixel JPEG and PNG files, without a run: images per
 * second for credentials + metadata (`--metadata-only`), and with the pixel checks (the Stable
 * Diffusion invisible mark, hidden metadata), against exiftool (Debian's libimage-exiftool-perl)
 * reading the same folder's metadata, all in the same run.
 *
 *   npm run bench:inspect [-- --count 600 --rounds 2 --dir /tmp/diffuse-bench-inspect-600]
 *
 * The folder is made once from the real photographs and signed files in test/fixtures/inspect
 * (resized to 1.0-1.9 megapixels; the signed files are copied as they are, so that a share of the
 * folder carries content credentials to validate): half JPEG (quality 85), half PNG.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { flag, log } from './args.js';
import { makeImageFolder } from './image-folder.js';

const count = Number(flag('count', '600'));
const rounds = Number(flag('rounds', '2'));
const dir = path.resolve(flag('dir', `/tmp/diffuse-bench-inspect-${count}`) as string);
const root = path.resolve(import.meta.dirname, '..');

/**
 * Wall time of a command, best of `rounds`; for diffuse, also the time its own timing line gives
 * (the files' inspection without the process's start-up).
 */
function time(cmd: string, args: string[]): { seconds: number; loop?: number; ok: boolean; out: string } {
  let best = Infinity;
  let loop: number | undefined;
  let ok = true;
  let out = '';
  for (let r = 0; r < rounds; r++) {
    const t = process.hrtime.bigint();
    const res = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30 });
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    ok &&= res.status === 0;
    out = res.stdout;
    if (res.status !== 0) log(`${cmd} ${args.slice(0, 3).join(' ')}: exit ${res.status}: ${res.stderr.split('\n').slice(-3).join(' ')}`);
    const own = /inspected \d+ of \d+ image\(s\) in ([\d.]+) s/.exec(res.stderr);
    if (s < best) {
      best = s;
      loop = own ? Number(own[1]) : undefined;
    }
  }
  return { seconds: best, loop, ok, out };
}

await makeImageFolder(dir, count);
const files = readdirSync(dir).length;
const px = await Promise.all(readdirSync(dir).slice(0, 20).map(async (f) => (await sharp(path.join(dir, f)).metadata()).width! * (await sharp(path.join(dir, f)).metadata()).height!));
log(`folder ${dir}: ${files} files (${(px.reduce((a, b) => a + b, 0) / px.length / 1e6).toFixed(2)} megapixels on average in the first 20), ${availableParallelism()} cores, best of ${rounds} round(s)`);

const diffuse = path.join(root, 'bin', 'diffuse.js');
const rows: { what: string; seconds: number; loop?: number; ok: boolean }[] = [];
const meta = time(process.execPath, [diffuse, 'inspect', dir, '--json', '--metadata-only']);
rows.push({ what: 'diffuse inspect --metadata-only (credentials + metadata)', ...meta });
const full = time(process.execPath, [diffuse, 'inspect', dir, '--json']);
rows.push({ what: 'diffuse inspect (+ SD invisible mark, hidden metadata)', ...full });
const exiftool = spawnSync('exiftool', ['-ver'], { encoding: 'utf8' });
if (exiftool.status === 0) rows.push({ what: `exiftool ${exiftool.stdout.trim()} -j -r (metadata)`, ...time('exiftool', ['-j', '-r', '-q', dir]) });
else log('exiftool not found (apt-get install libimage-exiftool-perl): its row is skipped');

const base = rows[rows.length - 1].what.startsWith('exiftool') ? rows[rows.length - 1].seconds : undefined;
console.log(`| what | seconds for ${files} files | images/s | time vs exiftool | without start-up: seconds, images/s |`);
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.what}${r.ok ? '' : ' (FAILED)'} | ${r.seconds.toFixed(2)} | ${(files / r.seconds).toFixed(1)} | ${base ? `${(r.seconds / base).toFixed(2)}x` : '-'} | ${r.loop !== undefined ? `${r.loop.toFixed(2)}, ${(files / r.loop).toFixed(1)}` : '-'} |`);
const found = full.out
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { openWatermark?: { found?: boolean }; credentials?: { state: string } });
log(`checks: ${found.filter((r) => r.credentials?.state !== 'absent').length} files with credentials, ${found.filter((r) => r.openWatermark?.found).length} with an SD mark found (expected 0: none is marked)`);
