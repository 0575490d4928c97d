import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ExportManifest, FastGenerator, exportRun, train, unetPreset } from '../../src/index.js';
import { loadSafetensors } from '../../src/engine/index.js';
import { loadSamplingWeights } from '../../src/run/index.js';
import { makeDenoiser } from '../../src/pipelines/index.js';
import { blobs, tinyConfig } from '../train/helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-export-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = { sampleEvery: 0, sampleCount: 4, logEvery: 100 };
const classConfig = tinyConfig({ model: { ...unetPreset('tiny'), numClasses: 4 }, classConditioning: { pUncond: 0.2 } });

describe('diffuse export', () => {
  before(async () => {
    await train(path.join(root, 'plain'), tinyConfig(), blobs(), { ...quiet, maxSteps: 20 });
    await train(path.join(root, 'classes'), classConfig, blobs(), { ...quiet, maxSteps: 20 });
  });

  for (const [name, cfg, batch] of [['plain', tinyConfig(), 3], ['classes', classConfig, 2]] as const) {
    it(`writes a ${name} run's denoiser that onnxruntime runs on its own, with the in-process output`, async () => {
      const dir = path.join(root, name);
      const out = path.join(root, `${name}-export`);
      const manifest = await exportRun(dir, out, { batch });
      const onDisk = JSON.parse(readFileSync(path.join(out, 'export.json'), 'utf8')) as ExportManifest;
      assert.deepEqual(onDisk, JSON.parse(JSON.stringify(manifest)));
      assert.deepEqual(manifest.outputs, [{ name: 'out', shape: [batch, 1, 8, 8], dtype: 'float32' }]);
      const g = new FastGenerator(4);
      const x = g.randn(batch * 64);
      const t = Float32Array.from({ length: batch }, (_, i) => 10 + 30 * i);
      const labels = BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 4));
      // A plain InferenceSession on the file: nothing of Diffuse's runtime in between.
      const session = await ort.InferenceSession.create(path.join(out, 'model.onnx'));
      const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [batch, 1, 8, 8]), t: new ort.Tensor('float32', t, [batch]) };
      if (name === 'classes') feeds.label = new ort.Tensor('int64', labels, [batch]);
      assert.deepEqual(Object.keys(feeds).sort(), manifest.inputs.map((i) => i.name).sort());
      const got = (await session.run(feeds)).out.data as Float32Array;
      await session.release();
      // In process, one timestep per call (the denoiser takes one t per batch).
      const weights = await loadSamplingWeights(dir, cfg);
      for (let k = 0; k < batch; k++) {
        const denoise = makeDenoiser(cfg, weights, {}, name === 'classes' ? { labels: Int32Array.from([k % 4]), scale: 1 } : {});
        const want = await denoise(x.subarray(k * 64, (k + 1) * 64), t[k], 1);
        await denoise.release();
        const err = Math.max(...want.map((v, i) => Math.abs(v - got[k * 64 + i])));
        assert.ok(err < 1e-5, `image ${k}: max difference ${err}`);
      }
      // The weights file holds the same EMA weights, with their shapes.
      const { tensors, metadata } = await loadSafetensors(path.join(out, 'weights.safetensors'));
      assert.equal(tensors.size, weights.size);
      for (const [n, w] of weights) assert.deepEqual(tensors.get(n)?.data, w);
      assert.equal(metadata.model_hash, manifest.modelHash);
    });
  }
});
