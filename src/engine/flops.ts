/**
 * Floating-point operation counts of a graph's matrix work (convolutions and
 * matrix products, 2 FLOPs per multiply-add), for reporting achieved GFLOP/s.
 * Elementwise ops are left out: they are memory-bound and small in comparison.
 */
import { topoSort } from './autodiff.js';
import { Tensor, sizeOf } from './tensor.js';

export function countFlops(outputs: readonly Tensor[]): number {
  let flops = 0;
  for (const t of topoSort(outputs)) {
    if (t.op.name === 'conv2d') {
      const [, cin, kh, kw] = t.inputs[1].shape;
      flops += 2 * sizeOf(t.shape) * cin * kh * kw;
    } else if (t.op.name === 'matmul') {
      const k = t.inputs[0].shape[t.inputs[0].rank - 1];
      flops += 2 * sizeOf(t.shape) * k;
    }
  }
  return flops;
}
