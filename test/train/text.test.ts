import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { DDIMScheduler, DiffusionPipeline, exportRun, ImageDataset, RunConfig, TorchGenerator, readRunConfig, NoiseSchedule, train, unetPreset } from '../../src/index.js';
import { BatchMaker } from '../../src/train/index.js';
import { BpeTokenizer } from '../../src/text/index.js';
import { loadSafetensors } from '../../src/engine/index.js';
import { runReverseProcess } from '../../src/samplers/index.js';
import { loadSamplingWeights, openTextConditioner, defaultEta, defaultSpacing, schedulerConfigOf } from '../../src/run/index.js';
import { makeDenoiser } from '../../src/pipelines/index.js';
import { LEVELS, levels, tinyConfig, writeFrozenEncoder } from './helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'diffuse-text-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = { sampleEvery: 0, sampleCount: 4, logEvery: 1 };

/** The grey-level set with captions in two phrasings per level. */
const NAMES = ['black', 'dark grey', 'light grey', 'white'];
function captioned(): ImageDataset {
  const d = levels();
  return { ...d, captions: Array.from(d.labels as Int32Array, (l, i) => (i % 8 < 4 ? `a ${NAMES[l]} square` : `${NAMES[l]}`)) };
}

function textConfig(over: Partial<RunConfig> = {}, tokenizer = BpeTokenizer.train(captioned().captions as string[])): RunConfig {
  return tinyConfig({
    model: { ...unetPreset('tiny'), contextDim: 16, crossAttentionResolutions: [4] },
    text: { encoder: { kind: 'transformer', maxLength: tokenizer.maxLength, vocabSize: tokenizer.vocabSize, width: 16, layers: 1, heads: 2 }, pUncond: 0.2 },
    ...over,
  });
}

const meanOf = (x: Float32Array, n: number) => Array.from({ length: n }, (_, i) => x.subarray(i * 64, (i + 1) * 64).reduce((a, b) => a + b) / 64);
const nearestLevel = (m: number) => LEVELS.map((l) => Math.abs(l - m)).reduce((best, d, k, all) => (d < all[best] ? k : best), 0);

describe('text-conditional training', () => {
  it('captions are dropped to the empty prompt at rate p_uncond, as a pure function of (seed, step)', () => {
    const b = new BatchMaker(captioned(), textConfig());
    assert.deepEqual(b.prompts(3), new BatchMaker(captioned(), textConfig()).prompts(3));
    const all = Array.from({ length: 200 }, (_, s) => b.prompts(s)).flat();
    const empty = all.filter((p) => p === '').length / all.length;
    assert.ok(Math.abs(empty - 0.2) < 0.03, `empty-prompt rate ${empty}`);
    assert.throws(() => new BatchMaker(levels(), textConfig()), /levels has no captions; text-conditional training needs/);
  });

  it('samples follow their prompt, guidance separates them, and a negative prompt pushes away', { timeout: 400_000 }, async () => {
    const cfg = textConfig();
    const dir = path.join(root, 'text');
    // The text path learns more slowly than a label embedding (the encoder learns too): 2000 steps.
    await train(dir, cfg, captioned(), { ...quiet, logEvery: 50, maxSteps: 2000 });
    assert.ok(existsSync(path.join(dir, 'tokenizer.json')));
    const text = await openTextConditioner(dir, readRunConfig(dir));
    const weights = await loadSamplingWeights(dir, cfg, text);
    const n = 32;
    const want = Int32Array.from({ length: n }, (_, i) => i % 4);
    const prompts = Array.from(want, (k) => `a ${NAMES[k]} square`);
    const sample = async (scale: number, negativePrompts?: string[], ps = prompts) => {
      const denoise = makeDenoiser(cfg, weights, {}, { prompts: ps, negativePrompts, scale }, text);
      const x = await runReverseProcess({ denoise, scheduler: new DDIMScheduler({ ...cfg.schedule }), count: n, shape: [1, 8, 8], steps: 20, generator: new TorchGenerator(1) });
      await denoise.release();
      return meanOf(x, n);
    };
    const plain = await sample(1);
    const hits = plain.filter((m, i) => nearestLevel(m) === want[i]).length / n;
    assert.ok(hits >= 0.75, `conditional sampling: ${hits} of samples at their prompt's level`);
    const guided = await sample(3);
    const perClass = [0, 1, 2, 3].map((k) => guided.filter((_, i) => want[i] === k));
    for (let k = 1; k < 4; k++) assert.ok(Math.min(...perClass[k]) > Math.max(...perClass[k - 1]), `guided "${NAMES[k]}" overlaps "${NAMES[k - 1]}"`);
    // "dark grey" steered away from "black" comes out brighter than steered away from nothing.
    const dark = new Array<string>(n).fill('a dark grey square');
    const away = await sample(3, new Array<string>(n).fill('a black square'), dark);
    const plainDark = await sample(3, undefined, dark);
    const avg = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    assert.ok(avg(away) > avg(plainDark), `negative prompt: ${avg(away)} vs ${avg(plainDark)}`);
    // The guided prediction from one batched 2N evaluation equals eps_u + w (eps_c - eps_u) computed separately.
    const x = new TorchGenerator(5).randn(4 * 64);
    const four = prompts.slice(0, 4);
    const c = await makeDenoiser(cfg, weights, {}, { prompts: four }, text)(x, 50, 4);
    const u = await makeDenoiser(cfg, weights, {}, { prompts: new Array<string>(4).fill('') }, text)(x, 50, 4);
    const g = await makeDenoiser(cfg, weights, {}, { prompts: four, scale: 3 }, text)(x, 50, 4);
    assert.ok(g.every((v, i) => Math.abs(v - (u[i] + 3 * (c[i] - u[i]))) < 1e-4), 'batched guidance');
    assert.throws(() => makeDenoiser(cfg, weights, {}, { labels: want }, text), /text-conditional: give prompts/);
    await text?.release();
  });

  it('conditional runs sample without clipping x_0 (clipping breaks guided DDIM), unconditional ones keep diffusers\' default', () => {
    assert.equal(schedulerConfigOf(textConfig()).clipSample, false);
    assert.equal(schedulerConfigOf(tinyConfig()).clipSample, undefined);
    assert.equal(new DDIMScheduler(schedulerConfigOf(tinyConfig())).config.clipSample, true);
  });

  it('samples unconditional runs with eta 1.5 and conditional ones with eta 0 unless told', () => {
    assert.equal(defaultEta(tinyConfig()), 1.5);
    assert.equal(defaultEta(textConfig()), 0);
    // A class-conditional run (validateRunConfig requires numClasses with classConditioning).
    assert.equal(defaultEta({ ...tinyConfig(), classConditioning: { pUncond: 0.1 }, model: { ...tinyConfig().model, numClasses: 3 } }), 0);
  });

  it('Euler-family samplers start at t = 980 (leading) on a schedule whose last step destroys the image', () => {
    const cosine = { ...tinyConfig(), schedule: { ...tinyConfig().schedule, numTrainTimesteps: 1000, betaSchedule: 'squaredcos_cap_v2' as const } };
    for (const s of ['euler', 'euler_a', 'heun']) assert.equal(defaultSpacing(cosine, s), 'leading', s);
    for (const s of ['ddim', 'ddpm', 'dpm++2m']) assert.equal(defaultSpacing(cosine, s), undefined, s);
    const linear = { ...cosine, schedule: { ...cosine.schedule, betaSchedule: 'linear' as const, betaEnd: 0.02 } };
    assert.equal(defaultSpacing(linear, 'euler'), undefined);
    // The reason, in numbers: sigma at t = 999 against t = 998.
    const ab = new NoiseSchedule(cosine.schedule).alphasCumprod;
    const sigma = (t: number) => Math.sqrt((1 - ab[t]) / ab[t]);
    assert.ok(sigma(999) > 20_000 && sigma(998) < 700, `${sigma(999)} ${sigma(998)}`);
  });

  it('resumes exactly (the tokenizer is read back from the run folder)', async () => {
    const cfg = textConfig();
    const a = path.join(root, 'straight');
    const b = path.join(root, 'split');
    await train(a, cfg, captioned(), { ...quiet, maxSteps: 6 });
    await train(b, cfg, captioned(), { ...quiet, maxSteps: 3 });
    await train(b, cfg, captioned(), { ...quiet, maxSteps: 6, resume: true });
    const read = (d: string) => readFileSync(path.join(d, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
    assert.deepEqual(read(b), read(a));
    const wa = await loadSafetensors(path.join(a, 'checkpoints', 'latest.safetensors'));
    const wb = await loadSafetensors(path.join(b, 'checkpoints', 'latest.safetensors'));
    assert.ok([...wa.tensors.keys()].some((k) => k.startsWith('text.')), 'the jointly trained encoder is in the checkpoint');
    for (const [k, t] of wa.tensors) assert.deepEqual(wb.tensors.get(k)!.data, t.data, k);
  });

  it('trains with a frozen encoder from an ONNX file in place of the joint transformer', { timeout: 120_000 }, async () => {
    const tok = BpeTokenizer.train(captioned().captions as string[]);
    const file = path.join(root, 'frozen.onnx');
    await writeFrozenEncoder(file, tok);
    const cfg = tinyConfig({
      model: { ...unetPreset('tiny'), contextDim: 12, crossAttentionResolutions: [4] },
      text: { encoder: { kind: 'onnx', file, maxLength: tok.maxLength, pooledOutput: 'pooler_output' }, pUncond: 0.2 },
    });
    const dir = path.join(root, 'frozen');
    const r = await train(dir, cfg, captioned(), { ...quiet, maxSteps: 300, logEvery: 50, tokenizer: tok });
    const weights = await loadSafetensors(path.join(dir, 'checkpoints', 'latest.safetensors'));
    assert.ok(![...weights.tensors.keys()].some((k) => k.startsWith('text.')), 'a frozen encoder is not trained');
    assert.ok(r.finalLoss < 0.5, `loss ${r.finalLoss}`);
    const text = await openTextConditioner(dir, cfg);
    const w = await loadSamplingWeights(dir, cfg, text);
    const denoise = makeDenoiser(cfg, w, {}, { prompts: ['white', 'black'], scale: 3 }, text);
    const x = await runReverseProcess({ denoise, scheduler: new DDIMScheduler({ ...cfg.schedule }), count: 2, shape: [1, 8, 8], steps: 20, generator: new TorchGenerator(2) });
    await denoise.release();
    await text?.release();
    const [white, black] = meanOf(x, 2);
    assert.ok(white > black, `"white" ${white} vs "black" ${black}`);
    // Its export carries a copy of the encoder (text_encoder/model.onnx) and gives the run's images without the original file.
    const out = path.join(root, 'frozen-export');
    const m = await exportRun(dir, out);
    assert.deepEqual(m.inputs.map((i) => i.name).sort(), ['encoder_attention_mask', 'encoder_hidden_states', 'sample', 'text_embeds', 'timestep']);
    const o = { count: 2, seed: 5, steps: 5, scheduler: 'ddim' as const, eta: 0, prompt: ['white', 'black'], guidance: 3 };
    const run = await DiffusionPipeline.fromRun(dir);
    const want = await run.generate(o);
    await run.release();
    renameSync(file, `${file}.away`);
    const exported = await DiffusionPipeline.fromPretrained(out);
    const got = await exported.generate(o);
    await exported.release();
    renameSync(`${file}.away`, file);
    const diff = want.data.reduce((d, v, i) => Math.max(d, Math.abs(v - got.data[i])), 0);
    assert.ok(diff < 1e-4, `export vs run: max difference ${diff}`);
  });
});
