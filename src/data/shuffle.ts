import type { FastGenerator } from '../diffusion/index.js';

/** Fisher-Yates permutation of 0..n-1, from n uniform draws of `g`. */
export function shuffled(n: number, g: FastGenerator): number[] {
  const u = g.rand(n);
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u[i] * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
