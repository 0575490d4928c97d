/**
 * False positives of the Stable Diffusion invisible-mark reader (src/forensics/invisible-watermark.ts)
 * on unmarked images of the kinds analysts meet, and its detection of the marked test vectors
 * with what typical handling does to them.
 *
 *   npm run bench:open-watermark [-- --photos /usr/share/backgrounds --variants 12 --screenshots 40]
 *
 * Unmarked images: real photographs (test/fixtures' photographs, and every JPEG/PNG/WebP under
 * --photos: e.g. after `apt-get install gnome-backgrounds mate-backgrounds ukui-wallpapers`), each
 * in --variants crops and rescales saved as PNG or JPEG (quality 70-95); screenshots of text and
 * report pages taken with Chromium (when it is installed); and the bundled data sets: 64-px emoji
 * enlarged 4-8x and MNIST digits tiled into grids. Nothing here is marked, so every "found" is a
 * false positive.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { TorchGenerator, loadDataset } from '../src/index.js';
import { readOpenWatermark } from '../src/forensics/index.js';
import { flag, log } from './args.js';

const root = path.resolve(import.meta.dirname, '..');
const variants = Number(flag('variants', '12'));
const screenshots = Number(flag('screenshots', '40'));
const photoDir = flag('photos');
const rng = new TorchGenerator(20261206);
const uniform = (a: number, b: number) => a + (b - a) * rng.rand(1)[0];

function listPhotos(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(jpe?g|png|webp)$/i.test(e.name) && statSync(p).size > 20_000) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

type Kind = 'photo crop/rescale' | 'screenshot' | 'emoji enlarged' | 'MNIST grid';
const results: { kind: Kind; correctedP: number; found: boolean; best: string }[] = [];

async function check(kind: Kind, png: Buffer): Promise<void> {
  const { data, info } = await sharp(png, { ignoreIcc: true }).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  const r = readOpenWatermark(data, info.width, info.height);
  if (!r) return;
  results.push({ kind, correctedP: r.correctedP, found: r.found, best: `${r.best.mark} ${r.best.convention} ${r.best.matched}/${r.best.bits}` });
}

const photos = [
  ...readdirSync(path.join(root, 'test/fixtures/inspect/c2pa')).filter((f) => /\.(jpe?g|png)$/.test(f)).map((f) => path.join(root, 'test/fixtures/inspect/c2pa', f)),
  ...readdirSync(path.join(root, 'test/fixtures/invisible-watermark')).filter((f) => f.endsWith('-clean.png')).map((f) => path.join(root, 'test/fixtures/invisible-watermark', f)),
  ...(photoDir ? listPhotos(photoDir) : []),
];
log(`${photos.length} photographs x ${variants} variants`);
for (const [i, file] of photos.entries()) {
  let meta: sharp.Metadata;
  try {
    meta = await sharp(file).metadata();
  } catch {
    continue;
  }
  const [W, H] = [meta.width ?? 0, meta.height ?? 0];
  for (let v = 0; v < variants; v++) {
    // A crop of 30-100% of each side at a random place, then a rescale to 0.3-1.0 (keeping >= 256 px), then PNG or JPEG 70-95.
    const cw = Math.max(256, Math.round(W * uniform(0.3, 1)));
    const ch = Math.max(256, Math.round(H * uniform(0.3, 1)));
    if (cw > W || ch > H) continue;
    const left = Math.floor(uniform(0, W - cw));
    const top = Math.floor(uniform(0, H - ch));
    const scale = Math.max(uniform(0.3, 1), 256 / Math.min(cw, ch));
    let img = sharp(file).extract({ left, top, width: cw, height: ch }).resize(Math.round(cw * scale), Math.round(ch * scale));
    const q = [0, 70, 85, 95][v % 4];
    img = q ? img.jpeg({ quality: q }) : img.png();
    await check('photo crop/rescale', await img.toBuffer());
  }
  if (i % 10 === 9) log(`photos ${i + 1}/${photos.length}`);
}

const chromium = ['chromium', 'chromium-browser'].find((c) => spawnSync(c, ['--version']).status === 0);
if (chromium && screenshots > 0) {
  const dir = mkdtempSync(path.join(tmpdir(), 'diffuse-shots-'));
  const pages = [...readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join(root, 'docs', f)), path.join(root, 'README.md'), ...readdirSync(path.join(root, 'src/inspect')).map((f) => path.join(root, 'src/inspect', f))];
  for (let k = 0; k < screenshots; k++) {
    const page = pages[k % pages.length];
    const [w, h] = [[1280, 800], [1920, 1080], [800, 1200], [1366, 768]][k % 4];
    const out = path.join(dir, `${k}.png`);
    spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', `--window-size=${w},${h}`, `--screenshot=${out}`, `file://${page}`], { stdio: 'ignore', timeout: 60_000 });
    if (existsSync(out)) await check('screenshot', await sharp(out).png().toBuffer());
  }
  rmSync(dir, { recursive: true, force: true });
} else log('no Chromium: screenshots skipped');

const emoji = await loadDataset('emoji', 'train', { limit: 150, size: 64 });
const per = emoji.channels * emoji.height * emoji.width;
for (let k = 0; k < Math.min(150, emoji.count); k++) {
  const px = Buffer.from(Array.from(emoji.images.subarray(k * per, (k + 1) * per), (x) => Math.round((x + 1) * 127.5)));
  // [C, H, W] -> interleaved
  const inter = Buffer.alloc(per);
  for (let c = 0; c < emoji.channels; c++) for (let p = 0; p < emoji.height * emoji.width; p++) inter[p * emoji.channels + c] = px[c * emoji.height * emoji.width + p];
  const side = emoji.width * (4 + (k % 5));
  await check('emoji enlarged', await sharp(inter, { raw: { width: emoji.width, height: emoji.height, channels: emoji.channels as 3 } }).resize(side, side, { kernel: k % 2 ? 'nearest' : 'lanczos3' }).png().toBuffer());
}
const mnist = await loadDataset('mnist', 'test');
for (let g = 0; g < 60; g++) {
  const n = 16 + (g % 3) * 4; // 16x16 to 24x24 digits: 448-672 px
  const side = n * 28;
  const px = Buffer.alloc(side * side);
  for (let k = 0; k < n * n; k++) {
    const idx = (g * 400 + k) % mnist.count;
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) px[(Math.floor(k / n) * 28 + y) * side + (k % n) * 28 + x] = Math.round((mnist.images[idx * 784 + y * 28 + x] + 1) * 127.5);
  }
  await check('MNIST grid', await sharp(px, { raw: { width: side, height: side, channels: 1 } }).png().toBuffer());
}

const kinds = [...new Set(results.map((r) => r.kind))];
console.log('| unmarked images | count | found at corrected p < 1e-3 | corrected p < 1e-2 | corrected p < 0.05 |');
console.log('|---|---|---|---|---|');
for (const kind of [...kinds, 'all' as const]) {
  const rs = kind === 'all' ? results : results.filter((r) => r.kind === kind);
  const at = (a: number) => rs.filter((r) => r.correctedP < a).length;
  console.log(`| ${kind} | ${rs.length} | ${at(1e-3)} (${((100 * at(1e-3)) / rs.length).toFixed(2)}%) | ${at(1e-2)} | ${at(0.05)} |`);
}
const worst = [...results].sort((a, b) => a.correctedP - b.correctedP).slice(0, 5);
log(`smallest corrected p-values: ${worst.map((r) => `${r.correctedP.toExponential(1)} (${r.kind}, ${r.best})`).join('; ')}`);
if (flag('save')) writeFileSync(flag('save') as string, JSON.stringify(results));
