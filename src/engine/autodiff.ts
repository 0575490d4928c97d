/**
 * Reverse-mode automatic differentiation on the symbolic graph.
 *
 * Walks the graph from the output back to the requested leaves in reverse
 * topological order, calling each op's `grad` rule and summing the gradients
 * that reach a tensor along several paths. Gradients are themselves symbolic
 * Tensors, so forward, backward and optimizer all compile into one model.
 */
import { add } from './ops.js';
import { constant, Tensor } from './tensor.js';
import { expand } from './ops.js';

/** All tensors that `outputs` depend on, inputs before users. */
export function topoSort(outputs: readonly Tensor[]): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<number>();
  // Iterative DFS: U-Net graphs with backward passes are deep enough to overflow recursion.
  for (const root of outputs) {
    const stack: [Tensor, number][] = [[root, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [t, i] = top;
      if (seen.has(t.id)) {
        stack.pop();
        continue;
      }
      if (i < t.inputs.length) {
        top[1]++;
        const child = t.inputs[i];
        if (!seen.has(child.id)) stack.push([child, 0]);
      } else {
        seen.add(t.id);
        order.push(t);
        stack.pop();
      }
    }
  }
  return order;
}

/**
 * Gradients of `output` with respect to each of `wrt`.
 * `output` must be a scalar unless `seed` (the gradient flowing into it) is given.
 * A leaf that `output` does not depend on gets a zero gradient.
 */
export function grad(output: Tensor, wrt: readonly Tensor[], seed?: Tensor): Tensor[] {
  if (!seed && output.size !== 1) {
    throw new Error(`grad: the output must be a scalar (got shape [${output.shape.join(', ')}]); pass a seed gradient otherwise`);
  }
  for (const w of wrt) {
    if (w.dtype === 'int64') throw new Error(`grad: cannot differentiate with respect to int64 tensor ${w}`);
  }
  const order = topoSort([output]);
  const wanted = new Set(wrt.map((w) => w.id));
  // Only tensors on a path from some `wrt` leaf to the output need a gradient.
  const needs = new Set<number>();
  for (const t of order) {
    if (wanted.has(t.id) || t.inputs.some((i) => needs.has(i.id))) needs.add(t.id);
  }
  const grads = new Map<number, Tensor>();
  grads.set(output.id, seed ?? constant(1, output.shape, output.dtype));
  for (let k = order.length - 1; k >= 0; k--) {
    const t = order[k];
    const g = grads.get(t.id);
    if (!g || !t.inputs.some((i) => needs.has(i.id))) continue;
    if (!t.op.grad) throw new Error(`grad: op '${t.op.name}' has no gradient rule (reached from ${t})`);
    const gs = t.op.grad(t, g);
    t.inputs.forEach((inp, i) => {
      const gi = gs[i];
      if (!gi || !needs.has(inp.id)) return;
      const prev = grads.get(inp.id);
      grads.set(inp.id, prev ? add(prev, gi) : gi);
    });
  }
  return wrt.map((w) => grads.get(w.id) ?? expand(constant(0, [], w.dtype), w.shape));
}
