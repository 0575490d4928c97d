/** Canvas drawing for the studio page: images in [-1, 1] scaled up without smoothing, and schedule plots. */

/** Draws a [C, H, W] image in [-1, 1] onto a canvas, `scale` screen pixels per image pixel. */
export function drawImage(canvas: HTMLCanvasElement, data: ArrayLike<number>, [c, h, w]: [number, number, number], scale = 6): void {
  canvas.width = w * scale;
  canvas.height = h * scale;
  const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) img.data[4 * i + k] = Math.round((Math.max(-1, Math.min(1, data[Math.min(k, c - 1) * h * w + i])) + 1) * 127.5);
    img.data[4 * i + 3] = 255;
  }
  const tmp = document.createElement('canvas');
  tmp.width = w;
  tmp.height = h;
  (tmp.getContext('2d') as CanvasRenderingContext2D).putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, 0, 0, w * scale, h * scale);
}

/** Shades the pixels where `mask` ([H, W]) is 1 in translucent red over what the canvas shows. */
export function drawMask(canvas: HTMLCanvasElement, mask: ArrayLike<number>, h: number, w: number): void {
  const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
  const sx = canvas.width / w;
  const sy = canvas.height / h;
  ctx.fillStyle = 'rgba(220, 30, 30, 0.45)';
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (mask[y * w + x] > 0) ctx.fillRect(x * sx, y * sy, sx, sy);
}

/** One curve of the schedule plot: alpha_bar(t) for t = 0..T-1. */
export interface Curve {
  name: string;
  alphaBar: Float32Array;
  colour: string;
}

/** alpha_bar(t) above and log-SNR(t) below, for each curve, with the current t marked. */
export function plotSchedules(canvas: HTMLCanvasElement, curves: readonly Curve[], t: number): void {
  const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
  const [W, H] = [canvas.width, canvas.height];
  ctx.clearRect(0, 0, W, H);
  ctx.font = '12px sans-serif';
  const T = curves[0].alphaBar.length;
  for (const [row, what] of ['alpha_bar(t)', 'log-SNR(t)'].entries()) {
    const top = row * (H / 2) + 16;
    const height = H / 2 - 30;
    ctx.fillStyle = '#333';
    ctx.fillText(what, 4, top - 4);
    for (const c of curves) {
      const ys = Array.from(c.alphaBar, (a) => (row === 0 ? a : Math.log(a / (1 - a))));
      const [lo, hi] = row === 0 ? [0, 1] : [-12, 12];
      ctx.strokeStyle = c.colour;
      ctx.beginPath();
      ys.forEach((y, i) => {
        const px = (i / (T - 1)) * (W - 10) + 5;
        const py = top + height * (1 - (Math.max(lo, Math.min(hi, y)) - lo) / (hi - lo));
        if (i === 0) ctx.moveTo(px, py);
        else ctx.lineTo(px, py);
      });
      ctx.stroke();
    }
  }
  ctx.strokeStyle = '#c00';
  const x = (t / (T - 1)) * (W - 10) + 5;
  ctx.beginPath();
  ctx.moveTo(x, 0);
  ctx.lineTo(x, H);
  ctx.stroke();
  curves.forEach((c, i) => {
    ctx.fillStyle = c.colour;
    ctx.fillText(c.name, W - 260, 14 + 14 * i);
  });
}
