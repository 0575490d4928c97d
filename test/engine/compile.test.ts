import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as E from '../../src/engine/index.js';

describe('compileModel', () => {
  it("drops LayerNormalization's 1/std output where nothing reads it, and keeps it for the backward pass", async () => {
    const x = E.input('x', [2, 3, 4]);
    const y = E.normalize(x, 1);
    const layerNorms = (bytes: Uint8Array) => E.modelNodes(bytes).filter((n) => n.opType === 'LayerNormalization');
    // Inference: one output (onnxruntime-web's WebGPU kernel refuses the node with the unread ones).
    const inference = E.compileModel({ inputs: [x], outputs: { y } });
    assert.deepEqual(layerNorms(inference.bytes).map((n) => n.outputs.length), [1]);
    // Training: the gradient reads 1/std, so the node keeps it (mean stays omitted).
    const loss = E.sum(E.mul(y, y), [0, 1, 2]);
    const [g] = E.grad(loss, [x]);
    const training = E.compileModel({ inputs: [x], outputs: { y, g } });
    const [node] = layerNorms(training.bytes);
    assert.equal(node.outputs.length, 3);
    assert.equal(node.outputs[1], '');
    // Both still run, with the same forward values.
    const data = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
    const a = await E.Executable.load(inference);
    const b = await E.Executable.load(training);
    assert.deepEqual(Array.from((await a.run({ x: data })).y as Float32Array), Array.from((await b.run({ x: data })).y as Float32Array));
    await a.release();
    await b.release();
  });
});
