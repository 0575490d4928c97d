/**
 * Pictures for learners: the forward process on one image, and schedules side by side.
 * Figures are drawn as SVG and rendered to PNG by sharp.
 */
import { promises as fs } from 'node:fs';
import { BETA_SCHEDULES, BetaScheduleName, NoiseSchedule, TorchGenerator, qSample } from '../diffusion/index.js';
import { DataError, ensureWritable, loadDataset, toGrid, upscale } from '../data/index.js';
import type { Command } from './flags.js';
import { UsageError, num } from './flags.js';

const ALIASES: Record<string, BetaScheduleName> = { cosine: 'squaredcos_cap_v2' };

function scheduleName(s: string): BetaScheduleName {
  const name = ALIASES[s] ?? s;
  if (!BETA_SCHEDULES.includes(name as BetaScheduleName)) {
    throw new UsageError(`unknown schedule '${s}' (known: ${BETA_SCHEDULES.join(', ')}, cosine)`);
  }
  return name as BetaScheduleName;
}

/** An image as [C, H, W] in [-1, 1]: a file, or 'mnist:INDEX' / 'fashion-mnist:INDEX'. */
async function readImage(spec: string, size?: number): Promise<{ data: Float32Array; shape: number[] }> {
  const m = /^(mnist|fashion-mnist):(\d+)$/.exec(spec);
  if (m) {
    const ds = await loadDataset(m[1], 'test');
    const i = Number(m[2]);
    if (i >= ds.count) throw new UsageError(`${m[1]} has ${ds.count} test images; index ${i} is out of range`);
    const per = ds.channels * ds.height * ds.width;
    return { data: ds.images.slice(i * per, (i + 1) * per), shape: [ds.channels, ds.height, ds.width] };
  }
  const { default: sharp } = await import('sharp');
  try {
    await fs.access(spec);
  } catch {
    throw new DataError(`${spec}: no such file (give an image file, or mnist:INDEX)`);
  }
  let img = sharp(spec).flatten({ background: '#ffffff' }).toColourspace('srgb');
  const meta = await sharp(spec).metadata().catch(() => {
    throw new DataError(`${spec}: cannot decode image`);
  });
  const side = size ?? Math.min(128, Math.max(meta.width ?? 64, meta.height ?? 64));
  img = img.resize(side, side, { fit: 'cover' });
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const c = info.channels >= 3 ? 3 : 1;
  const out = new Float32Array(c * side * side);
  for (let ch = 0; ch < c; ch++) for (let i = 0; i < side * side; i++) out[ch * side * side + i] = data[i * info.channels + ch] / 127.5 - 1;
  return { data: out, shape: [c, side, side] };
}

async function pngDataUri(images: Float32Array, shape: number[], scale: number): Promise<{ uri: string; w: number; h: number }> {
  const { default: sharp } = await import('sharp');
  const p = upscale(toGrid(images, 1, shape, 1, 0), scale);
  const png = await sharp(Buffer.from(p.data), { raw: { width: p.width, height: p.height, channels: p.channels } }).png().toBuffer();
  return { uri: `data:image/png;base64,${png.toString('base64')}`, w: p.width, h: p.height };
}

async function writeSvgPng(file: string, svg: string): Promise<void> {
  const { default: sharp } = await import('sharp');
  await ensureWritable(file);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await sharp(Buffer.from(svg)).png().toFile(tmp);
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw new Error(`${file}: cannot write the image (${(e as Error).message.split('\n')[0]}); choose another --out path`);
  }
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

export const commandNoise: Command = {
  summary: 'draw the forward process: one image at evenly spaced timesteps, clean to pure noise',
  usage: 'diffuse noise IMAGE|mnist:INDEX [--schedule cosine] [--steps 8] [--timesteps 1000] [--seed 0] --out strip.png',
  positionals: true,
  options: {
    schedule: { type: 'string', description: `beta schedule: ${BETA_SCHEDULES.join(', ')}, cosine`, default: 'linear' },
    steps: { type: 'string', description: 'images in the strip', default: '8' },
    timesteps: { type: 'string', description: 'training timesteps T', default: '1000' },
    seed: { type: 'string', description: 'noise seed (one noise draw is used for every t)', default: '0' },
    size: { type: 'string', description: 'resize a file image to SIZE x SIZE' },
    out: { type: 'string', description: 'PNG to write', default: 'noise.png' },
  },
  async run(v, positionals) {
    if (positionals.length !== 1) throw new UsageError('give one image: a file path or mnist:INDEX');
    const schedule = new NoiseSchedule({ betaSchedule: scheduleName(String(v.schedule)), numTrainTimesteps: num(v, 'timesteps', { int: true, min: 2 }) });
    const steps = num(v, 'steps', { int: true, min: 2, max: 32 }) as number;
    const img = await readImage(positionals[0], num(v, 'size', { int: true, min: 8 }));
    const T = schedule.length;
    const noise = new TorchGenerator(num(v, 'seed', { int: true, min: 0 }) as number).randn(img.data.length);
    const scale = Math.max(1, Math.round(96 / img.shape[2]));
    const cells: string[] = [];
    const pad = 10;
    let x = pad;
    let cellH = 0;
    for (let k = 0; k < steps; k++) {
      const t = Math.round((k * (T - 1)) / (steps - 1));
      const noisy = qSample(schedule, img.data, noise, [t]);
      const { uri, w, h } = await pngDataUri(noisy, img.shape, scale);
      cellH = h;
      cells.push(`<image x="${x}" y="${pad + 22}" width="${w}" height="${h}" href="${uri}"/>`);
      cells.push(`<text x="${x + w / 2}" y="${pad + 14}" text-anchor="middle">t = ${t}</text>`);
      cells.push(`<text x="${x + w / 2}" y="${pad + 22 + h + 16}" text-anchor="middle">ᾱ = ${schedule.alphasCumprod[t].toFixed(3)}</text>`);
      x += w + pad;
    }
    const width = x;
    const height = pad + 22 + cellH + 30;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>${cells.join('')}</svg>`;
    const out = String(v.out);
    await writeSvgPng(out, svg);
    console.log(`wrote ${out}: ${positionals[0]} under the ${schedule.config.betaSchedule} schedule at ${steps} timesteps from 0 to ${T - 1}`);
  },
};

export const commandSchedule: Command = {
  summary: 'plot schedules side by side: alpha_bar(t) and log-SNR(t)',
  usage: 'diffuse schedule --schedule linear,cosine[,scaled_linear,sigmoid] [--timesteps 1000] [--zero-snr] --out schedule.png',
  options: {
    schedule: { type: 'string', description: 'comma-separated schedules', default: 'linear,cosine' },
    timesteps: { type: 'string', description: 'training timesteps T', default: '1000' },
    'zero-snr': { type: 'boolean', description: 'also draw each schedule rescaled to zero terminal SNR (dashed)' },
    out: { type: 'string', description: 'PNG to write', default: 'schedule.png' },
  },
  async run(v) {
    const names = String(v.schedule).split(',').map((s) => s.trim()).filter(Boolean);
    if (names.length === 0) throw new UsageError('--schedule needs at least one name');
    const T = num(v, 'timesteps', { int: true, min: 2 }) as number;
    const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
    const series: { label: string; s: NoiseSchedule; color: string; dash: boolean }[] = [];
    names.forEach((n, i) => {
      const cfg = n === 'scaled_linear' ? { betaStart: 0.00085, betaEnd: 0.012 } : {};
      series.push({ label: n, s: new NoiseSchedule({ betaSchedule: scheduleName(n), numTrainTimesteps: T, ...cfg }), color: colors[i % colors.length], dash: false });
      if (v['zero-snr']) series.push({ label: `${n}, zero SNR`, s: new NoiseSchedule({ betaSchedule: scheduleName(n), numTrainTimesteps: T, rescaleBetasZeroSnr: true, ...cfg }), color: colors[i % colors.length], dash: true });
    });
    const W = 420;
    const H = 280;
    const m = { l: 55, r: 15, t: 30, b: 40 };
    const panel = (ox: number, title: string, f: (s: NoiseSchedule, t: number) => number, lo: number, hi: number, ticks: number[]) => {
      const px = (t: number) => ox + m.l + (t / (T - 1)) * (W - m.l - m.r);
      const py = (y: number) => m.t + (1 - (Math.min(hi, Math.max(lo, y)) - lo) / (hi - lo)) * (H - m.t - m.b);
      const parts = [`<text x="${ox + W / 2}" y="18" text-anchor="middle" font-weight="bold">${esc(title)}</text>`];
      parts.push(`<rect x="${ox + m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#888"/>`);
      for (const y of ticks) parts.push(`<text x="${ox + m.l - 6}" y="${py(y) + 4}" text-anchor="end">${y}</text><line x1="${ox + m.l}" x2="${ox + W - m.r}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`);
      for (const t of [0, Math.round((T - 1) / 2), T - 1]) parts.push(`<text x="${px(t)}" y="${H - m.b + 16}" text-anchor="middle">${t}</text>`);
      parts.push(`<text x="${ox + W / 2}" y="${H - 6}" text-anchor="middle">timestep t</text>`);
      for (const { s, color, dash } of series) {
        const pts = Array.from({ length: 200 }, (_, k) => Math.round((k * (T - 1)) / 199)).map((t) => `${px(t).toFixed(1)},${py(f(s, t)).toFixed(1)}`);
        parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"${dash ? ' stroke-dasharray="6 4"' : ''}/>`);
      }
      return parts.join('');
    };
    // Legend in the left panel's empty lower-left corner.
    const ly = (i: number) => H - m.b - 10 - (series.length - 1 - i) * 16;
    const legend = series.map((s, i) => `<line x1="${m.l + 12}" x2="${m.l + 37}" y1="${ly(i)}" y2="${ly(i)}" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="6 4"' : ''}/><text x="${m.l + 42}" y="${ly(i) + 4}">${esc(s.label)}</text>`);
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W * 2}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>${panel(0, 'ᾱ(t): signal kept', (s, t) => s.alphasCumprod[t], 0, 1, [0, 0.25, 0.5, 0.75, 1])}${panel(W, 'log SNR(t) = log ᾱ/(1-ᾱ)', (s, t) => s.logSnr(t), -12, 10, [-10, -5, 0, 5, 10])}${legend.join('')}</svg>`;
    const out = String(v.out);
    await writeSvgPng(out, svg);
    console.log(`wrote ${out}: ${series.map((s) => s.label).join(', ')} over ${T} timesteps`);
  },
};
