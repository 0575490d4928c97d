import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { DiffusionPipeline, FastGenerator, RunConfig, exportRun, train, unetPreset } from '../../src/index.js';
import { loadSafetensors } from '../../src/engine/index.js';
import { loadSamplingWeights, readExportFolder } from '../../src/run/index.js';
import { makeDenoiser } from '../../src/pipelines/index.js';
import { BpeTokenizer } from '../../src/text/index.js';
import { blobs, captionedLevels, tinyConfig } from '../train/helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-export-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = { sampleEvery: 0, sampleCount: 4, logEvery: 100 };
const classConfig = tinyConfig({ model: { ...unetPreset('tiny'), numClasses: 4 }, classConditioning: { pUncond: 0.2 } });
const bin = path.resolve(import.meta.dirname, '..', '..', 'bin', 'diffuse.js');
const cli = async (...args: string[]) => {
  try {
    const r = await promisify(execFile)(process.execPath, [bin, ...args], { encoding: 'utf8' });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
};
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);


describe('diffuse export: a run as a model folder in the diffusers layout', () => {
  before(async () => {
    await train(path.join(root, 'plain'), tinyConfig(), blobs(), { ...quiet, maxSteps: 20 });
    await train(path.join(root, 'classes'), classConfig, blobs(), { ...quiet, maxSteps: 20 });
    const tokenizer = BpeTokenizer.train(captionedLevels().captions as string[]);
    const textConfig = tinyConfig({
      model: { ...unetPreset('tiny'), contextDim: 16, crossAttentionResolutions: [4] },
      text: { encoder: { kind: 'transformer', maxLength: tokenizer.maxLength, vocabSize: tokenizer.vocabSize, width: 16, layers: 1, heads: 2 }, pUncond: 0.2 },
    });
    await train(path.join(root, 'text'), textConfig, captionedLevels(), { ...quiet, maxSteps: 10 });
  });

  for (const [name, cfg, batch] of [['plain', tinyConfig(), 3], ['classes', classConfig, 2]] as const) {
    it(`writes a ${name} run's U-Net that onnxruntime runs on its own under diffusers' names, with the in-process output`, async () => {
      const dir = path.join(root, name);
      const out = path.join(root, `${name}-export`);
      const manifest = await exportRun(dir, out, { batch });
      assert.deepEqual(readExportFolder(out), JSON.parse(JSON.stringify(manifest)));
      assert.deepEqual(manifest.outputs, [{ name: 'out_sample', shape: [batch, 1, 8, 8], dtype: 'float32' }]);
      const index = JSON.parse(readFileSync(path.join(out, 'model_index.json'), 'utf8')) as Record<string, unknown>;
      assert.equal(index._class_name, 'DiffusePipeline');
      assert.deepEqual(index.scheduler, ['diffusers', 'DDIMScheduler']);
      const scheduler = JSON.parse(readFileSync(path.join(out, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
      assert.deepEqual([scheduler.num_train_timesteps, scheduler.beta_end, scheduler.beta_schedule, scheduler.prediction_type], [100, 0.2, 'linear', 'epsilon']);
      // Conditional runs are sampled unclipped; unconditional ones with diffusers' default clipping.
      assert.equal(scheduler.clip_sample, name === 'plain');
      const g = new FastGenerator(4);
      const x = g.randn(batch * 64);
      const t = Float32Array.from({ length: batch }, (_, i) => 10 + 30 * i);
      const labels = BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 4));
      // A plain InferenceSession on the file: nothing of Diffuse's runtime in between.
      const session = await ort.InferenceSession.create(path.join(out, 'unet', 'model.onnx'));
      const feeds: Record<string, ort.Tensor> = { sample: new ort.Tensor('float32', x, [batch, 1, 8, 8]), timestep: new ort.Tensor('float32', t, [batch]) };
      if (name === 'classes') feeds.class_labels = new ort.Tensor('int64', labels, [batch]);
      assert.deepEqual(Object.keys(feeds).sort(), manifest.inputs.map((i) => i.name).sort());
      const got = (await session.run(feeds)).out_sample.data as Float32Array;
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
      const { tensors, metadata } = await loadSafetensors(path.join(out, 'unet', 'weights.safetensors'));
      assert.equal(tensors.size, weights.size);
      for (const [n, w] of weights) assert.deepEqual(tensors.get(n)?.data, w);
      assert.equal(metadata.model_hash, manifest.modelHash);
    });

    it(`DiffusionPipeline.fromPretrained on the ${name} export gives fromRun's images, with a batch that is not a multiple of the graph's (${batch})`, async () => {
      const run = await DiffusionPipeline.fromRun(path.join(root, name));
      const exported = await DiffusionPipeline.fromPretrained(path.join(root, `${name}-export`));
      try {
        assert.equal(exported.modelHash, run.modelHash);
        const o = name === 'classes' ? { classLabel: [0, 1, 2, 3, 1], guidance: 3 } : {};
        const want = await run.generate({ count: 5, seed: 9, steps: 6, scheduler: 'ddim', eta: 0, ...o });
        const got = await exported.generate({ count: 5, seed: 9, steps: 6, scheduler: 'ddim', eta: 0, ...o });
        assert.ok(maxDiff(want.data, got.data) < 1e-4, `generate: max difference ${maxDiff(want.data, got.data)}`);
        const wantEdit = await run.img2img({ image: want.data.subarray(0, 64), strength: 0.6, steps: 6, seed: 2, count: 2 });
        const gotEdit = await exported.img2img({ image: want.data.subarray(0, 64), strength: 0.6, steps: 6, seed: 2, count: 2 });
        assert.ok(maxDiff(wantEdit.data, gotEdit.data) < 1e-4, `img2img: max difference ${maxDiff(wantEdit.data, gotEdit.data)}`);
      } finally {
        await run.release();
        await exported.release();
      }
    });
  }

  it("a text run's export: the tokenizer in tokenizer/, the trained encoder in text_encoder/, fromRun's images for a prompt and a negative prompt", async () => {
    const out = path.join(root, 'text-export');
    const m = await exportRun(path.join(root, 'text'), out);
    // The trained encoder is its own graph (as diffusers' text_encoder/): the U-Net takes its states.
    assert.deepEqual(m.inputs.map((i) => i.name).sort(), ['encoder_attention_mask', 'encoder_hidden_states', 'sample', 'text_embeds', 'timestep']);
    assert.deepEqual(m.text, { tokenizer: true, encoder: 'trained' });
    const session = await ort.InferenceSession.create(path.join(out, 'text_encoder', 'model.onnx'));
    assert.deepEqual([session.inputNames, session.outputNames], [['input_ids'], ['last_hidden_state', 'attention_mask', 'pooler_output']]);
    await session.release();
    const run = await DiffusionPipeline.fromRun(path.join(root, 'text'));
    const exported = await DiffusionPipeline.fromPretrained(out);
    try {
      const o = { count: 2, seed: 1, steps: 5, scheduler: 'ddim' as const, eta: 0, prompt: 'a white square', negativePrompt: 'black', guidance: 4 };
      const want = await run.generate(o);
      const got = await exported.generate(o);
      assert.ok(maxDiff(want.data, got.data) < 1e-4, `max difference ${maxDiff(want.data, got.data)}`);
    } finally {
      await run.release();
      await exported.release();
    }
    // A damaged tokenizer file is named, not a stack trace.
    writeFileSync(path.join(out, 'tokenizer', 'tokenizer.json'), '{"model": ');
    const r = await cli('sample', '--model', out, '--prompt', 'a white square', '--out', path.join(root, 't.png'));
    assert.equal(r.code, 1);
    assert.match(r.err, /tokenizer\.json: not valid JSON/);
    assert.doesNotMatch(r.err, /internal error/);
  });

  it('reads the schedule and prediction type from scheduler_config.json, in diffusers\' names', async () => {
    const out = path.join(root, 'edited-export');
    await exportRun(path.join(root, 'plain'), out);
    const file = path.join(out, 'scheduler', 'scheduler_config.json');
    const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...json, beta_schedule: 'squaredcos_cap_v2', prediction_type: 'v_prediction' }));
    const m = readExportFolder(out);
    assert.equal(m.run.schedule.betaSchedule, 'squaredcos_cap_v2');
    assert.equal(m.run.predictionType, 'v_prediction');
    writeFileSync(file, JSON.stringify({ ...json, _class_name: 'LMSDiscreteScheduler' }));
    assert.throws(() => readExportFolder(out), /LMSDiscreteScheduler is not supported/);
  });

  it('the command line: sample --model on an export writes the images sample --run does; bad folders are named', async () => {
    const out = path.join(root, 'cli-export');
    let r = await cli('export', '--run', path.join(root, 'classes'), '--out', out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /wrote .*: unet\/model\.onnx \(inputs sample \[1, 1, 8, 8\], timestep \[1\], class_labels \[1\]; output out_sample \[1, 1, 8, 8\]: the epsilon prediction\), scheduler\/scheduler_config\.json in [\d.]+ s; use it with --model/);
    r = await cli('export', '--run', path.join(root, 'classes'), '--out', out);
    assert.equal(r.code, 1);
    assert.match(r.err, /already holds a model folder; pass --force/);
    const a = path.join(root, 'cli-a');
    const b = path.join(root, 'cli-b');
    const args = ['--count', '4', '--steps', '5', '--seed', '3', '--class', '2', '--guidance', '2'];
    r = await cli('sample', '--run', path.join(root, 'classes'), ...args, '--out', `${a}.png`, '--images', a);
    assert.equal(r.code, 0, r.err);
    r = await cli('sample', '--model', out, ...args, '--out', `${b}.png`, '--images', b);
    assert.equal(r.code, 0, r.err);
    for (let k = 0; k < 4; k++) assert.deepEqual(readFileSync(path.join(b, `000${k}.png`)), readFileSync(path.join(a, `000${k}.png`)), `image ${k}`);
    // Hints name the folder as it was given.
    const plain = path.join(root, 'plain-export');
    r = await cli('invert', '--model', plain, '--image', path.join(a, '0000.png'), '--steps', '3', '--out', path.join(root, 'xT.safetensors'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, new RegExp(`diffuse sample --model ${plain.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} --latents`));
    r = await cli('sample', '--model', out, '--width', '16', '--out', `${b}.png`);
    assert.equal(r.code, 1);
    assert.match(r.err, /--width applies to a Stable Diffusion folder's --model only/);
    r = await cli('sample', '--model', out, '--run', path.join(root, 'classes'), '--out', `${b}.png`);
    assert.equal(r.code, 1);
    assert.match(r.err, /not both/);
    // A folder that is neither: the library names what is missing.
    const empty = path.join(root, 'empty');
    mkdirSync(empty);
    await assert.rejects(DiffusionPipeline.fromPretrained(empty), /not a Diffuse export \(no model_index\.json naming DiffusePipeline\)/);
    await assert.rejects(DiffusionPipeline.fromPretrained(path.join(root, 'nowhere')), /nowhere: no such model folder/);
    writeFileSync(path.join(empty, 'model_index.json'), JSON.stringify({ _class_name: 'OnnxStableDiffusionPipeline' }));
    await assert.rejects(DiffusionPipeline.fromPretrained(empty), /a OnnxStableDiffusionPipeline folder; open it with StableDiffusionPipeline\.fromPretrained/);
    // An export is not a run to train further.
    await assert.rejects(train(out, classConfig, blobs(), { ...quiet, maxSteps: 1 }), /a model folder that diffuse export wrote, not a run/);
    // A missing component is named.
    rmSync(path.join(out, 'scheduler'), { recursive: true });
    await assert.rejects(DiffusionPipeline.fromPretrained(out), /scheduler_config\.json: missing/);
  });
  it('a hostile export: a FIFO for a config, shapes and schedules that would allocate gigabytes, control characters in a class name', async () => {
    const make = async (name: string) => {
      const out = path.join(root, name);
      await exportRun(path.join(root, 'plain'), out);
      return out;
    };
    const edit = (file: string, f: (j: Record<string, unknown>) => void) => {
      const j = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      f(j);
      writeFileSync(file, JSON.stringify(j));
    };
    // A FIFO in place of unet/config.json: refused at once (a reader would wait for ever).
    const fifo = await make('hostile-fifo');
    rmSync(path.join(fifo, 'unet', 'config.json'));
    execFileSync('mkfifo', [path.join(fifo, 'unet', 'config.json')]);
    let r = await cli('sample', '--model', fifo, '--out', path.join(root, 'h.png'));
    assert.equal(r.code, 1);
    assert.match(r.err, /unet\/config\.json: a FIFO \(named pipe\), not a settings file/);
    // Sides that would size buffers of terabytes.
    const big = await make('hostile-size');
    edit(path.join(big, 'unet', 'config.json'), (j) => ((j.diffuse as { run: RunConfig }).run.model.imageSize = 1e9));
    await assert.rejects(DiffusionPipeline.fromPretrained(big), /unet\/config\.json: diffuse\.run\.model needs inChannels and imageSize, integers in 1\.\.4096/);
    // A schedule of a billion steps.
    const steps = await make('hostile-steps');
    edit(path.join(steps, 'scheduler', 'scheduler_config.json'), (j) => (j.num_train_timesteps = 1e9));
    r = await cli('sample', '--model', steps, '--out', path.join(root, 'h.png'));
    assert.equal(r.code, 1);
    assert.match(r.err, /diffuse\.run: timesteps must be at most 100000, got 1000000000/);
    // An escape sequence in a class name does not reach the terminal raw.
    const esc = path.join(root, 'hostile-escape');
    mkdirSync(esc);
    writeFileSync(path.join(esc, 'model_index.json'), JSON.stringify({ _class_name: 'Evil\u001b[2JPipeline' }));
    r = await cli('sample', '--model', esc, '--prompt', 'x', '--out', path.join(root, 'h.png'));
    assert.equal(r.code, 1);
    assert.ok(!r.err.includes('\u001b'), r.err);
    assert.match(r.err, /"Evil\\u001b\[2JPipeline"/);
  });
});
