/** The inpainting brush: dragging over the source image paints the mask (1 = generate), shift-drag erases, a button clears it. */
import { $ } from './dom.js';

export interface BrushTarget {
  /** Whether painting is on now (the inpaint mode, with an image to paint on). */
  active(): boolean;
  /** The mask, [h, w] of the image, painted in place. */
  mask(): Float32Array;
  /** The image's height and width in pixels. */
  size(): [number, number];
  /** Brush radius in image pixels (from the #brush box). */
  radius(): number;
  /** Draws the image and the mask again. */
  redraw(): void;
}

/** Makes `canvas` a painting surface for the target's mask; #clear-mask clears it. */
export function attachBrush(canvas: HTMLCanvasElement, t: BrushTarget): void {
  const paint = (e: PointerEvent) => {
    if (!t.active() || !(e.buttons & 1)) return;
    const r = canvas.getBoundingClientRect();
    const [h, w] = t.size();
    const mask = t.mask();
    const x = ((e.clientX - r.left) / r.width) * w;
    const y = ((e.clientY - r.top) / r.height) * h;
    const radius = t.radius();
    for (let yy = 0; yy < h; yy++) for (let xx = 0; xx < w; xx++) if ((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= radius * radius) mask[yy * w + xx] = e.shiftKey ? 0 : 1;
    t.redraw();
  };
  canvas.addEventListener('pointerdown', (e) => {
    canvas.setPointerCapture(e.pointerId);
    paint(e);
  });
  canvas.addEventListener('pointermove', paint);
  $('clear-mask').addEventListener('click', () => {
    t.mask().fill(0);
    t.redraw();
  });
}
