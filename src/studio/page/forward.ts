/** The Forward tab: x_t = sqrt(alpha_bar(t)) x_0 + sqrt(1 - alpha_bar(t)) eps on a slider, computed in the page. */
import { TorchGenerator } from '../../diffusion/random.js';
import { SCHEDULER_DEFAULTS, schedulerTables } from '../../samplers/common.js';
import type { SchedulerConfig } from '../../samplers/common.js';
import { schedulerConfigOf } from '../../run/sampling-defaults.js';
import type { RunStudioInfo } from '../info.js';
import { Curve, drawImage, plotSchedules } from './draw.js';
import { dropZone, readDroppedImage } from './dropped-file.js';
import { $ } from './dom.js';

/** alpha_bar(t) of a schedule, as Diffuse's schedulers compute it. */
function alphaBars(config: Partial<SchedulerConfig>): Float32Array {
  return schedulerTables({ ...SCHEDULER_DEFAULTS, ...config }).alphasCumprod;
}

export function setupForward(info: RunStudioInfo): void {
  const schedule = schedulerConfigOf(info.config);
  const runAb = alphaBars(schedule);
  const T = runAb.length;
  const per = info.shape.reduce((a, b) => a * b, 1);
  const noise = new TorchGenerator(0).randn(per);
  const slider = $<HTMLInputElement>('t');
  slider.max = String(T - 1);
  const pick = $<HTMLSelectElement>('image');
  const images: Float32Array[] = info.images.map((x) => Float32Array.from(x));
  images.forEach((_, i) => pick.append(new Option(`data set image ${i}`, String(i))));
  const others = [
    { name: 'linear', config: { betaSchedule: 'linear', betaStart: 0.0001, betaEnd: 0.02 } as const, colour: '#888' },
    { name: 'cosine', config: { betaSchedule: 'squaredcos_cap_v2' } as const, colour: '#2a7' },
  ];
  const draw = () => {
    const t = Number(slider.value);
    const x0 = images[Number(pick.value)];
    const a = runAb[t];
    const xt = x0.map((v, i) => Math.sqrt(a) * v + Math.sqrt(1 - a) * noise[i]);
    drawImage($<HTMLCanvasElement>('x0'), x0, info.shape);
    drawImage($<HTMLCanvasElement>('xt'), xt, info.shape);
    drawImage($<HTMLCanvasElement>('noise'), noise.map((v) => v / 3), info.shape);
    $('forward-info').textContent = `t = ${t}   alpha_bar(t) = ${a.toFixed(4)}   log-SNR(t) = ${Math.log(a / (1 - a)).toFixed(2)}`;
    const shown: Curve[] = ($<HTMLInputElement>('compare').checked ? others : []).map((o) => ({ name: o.name, alphaBar: alphaBars({ ...schedule, ...o.config }), colour: o.colour }));
    plotSchedules($<HTMLCanvasElement>('plot'), [{ name: `this run (${schedule.betaSchedule})`, alphaBar: runAb, colour: '#13c' }, ...shown], t);
  };
  for (const el of [slider, pick, $('compare')]) el.addEventListener('input', draw);
  dropZone($('forward-drop'), (file) => {
    void readDroppedImage(file, info.shape).then((r) => {
      $('forward-drop-status').textContent = r.ok ? `${file.name}${r.note ? `: ${r.note}` : ''}` : r.problem;
      $('forward-drop-status').className = r.ok ? 'ok' : 'problem';
      if (!r.ok) return;
      images.push(r.data);
      pick.append(new Option(file.name, String(images.length - 1)));
      pick.value = String(images.length - 1);
      draw();
    });
  });
  draw();
}
