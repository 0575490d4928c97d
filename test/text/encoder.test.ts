import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import * as E from '../../src/engine/index.js';
import * as T from '../../src/text/index.js';
import * as nn from '../../src/nn/index.js';
import { P64, refAttention, refEncoder, refLayerNorm } from './reference-text.js';
import { maxDiff } from '../numeric.js';
import { OnnxTextFeeds } from '../../src/pipelines/index.js';
import { openComponentFile } from '../../src/components/index.js';
import type { TextTokenizer } from '../../src/text/index.js';

const CFG: T.TransformerEncoderConfig = { kind: 'transformer', maxLength: 6, vocabSize: 11, width: 8, layers: 2, heads: 2 };
const IDS = [
  [1, 5, 7, 2, 0, 0],
  [1, 9, 2, 0, 0, 0],
];
const idsData = BigInt64Array.from(IDS.flat(), BigInt);

/** A store with the encoder's parameters, norms given non-trivial scales. */
function encoderStore(cfg: T.TransformerEncoderConfig, seed = 5): E.ParamStore {
  const store = new E.ParamStore(seed);
  T.transformerTextEncoder(new E.ParamScope(store), cfg, E.input('ids', [1, cfg.maxLength], 'int64'));
  const rng = new E.Rng(seed + 1);
  for (const [name, p] of store.params) {
    if (name.includes('norm')) p.data = p.data.map(() => rng.normal() * 0.3 + (name.endsWith('weight') ? 1 : 0));
    if (name.includes('embed')) p.data = p.data.map(() => rng.normal());
  }
  return store;
}
const to64 = (store: E.ParamStore): P64 => new Map([...store.params].map(([k, v]) => [k, Float64Array.from(v.data)]));

async function runEncoder(cfg: T.TransformerEncoderConfig, store: E.ParamStore) {
  const program = new E.Program((ins) => {
    const s = T.transformerTextEncoder(new E.ParamScope(store), cfg, ins.ids);
    return { states: s.states, pooled: s.pooled, mask: s.mask };
  }, { weights: store.values() });
  const out = await program.run({ ids: { data: idsData, shape: [2, cfg.maxLength] } });
  await program.release();
  return out;
}

describe('transformer text encoder against a float64 reference', () => {
  for (const causal of [false, true]) {
    it(`gives the reference states, pooled vector and mask (${causal ? 'causal' : 'bidirectional'})`, async () => {
      const cfg = { ...CFG, causal };
      const store = encoderStore(cfg);
      const out = await runEncoder(cfg, store);
      const p = to64(store);
      const D = cfg.width;
      for (let k = 0; k < IDS.length; k++) {
        const ref = refEncoder(p, cfg, IDS[k]);
        const L = cfg.maxLength;
        // Padding positions' states are computed but never read (they are masked out); compare the tokens.
        const real = IDS[k].filter((id) => id !== 0).length;
        const got = (out.states.data as Float32Array).subarray(k * L * D, k * L * D + real * D);
        assert.ok(maxDiff(got, ref.states.subarray(0, real * D)) < 1e-4, `states of prompt ${k}`);
        assert.ok(maxDiff((out.pooled.data as Float32Array).subarray(k * D, (k + 1) * D), ref.pooled) < 1e-4, `pooled of prompt ${k}`);
      }
      assert.deepEqual(Array.from(out.mask.data as Float32Array), IDS.flat().map((id) => (id ? 1 : 0)));
    });
  }

  it('ignores padding: what the padded slots hold does not change the real tokens', async () => {
    const store = encoderStore(CFG);
    const a = await runEncoder(CFG, store);
    // Same prompts, but the token embedding of <pad> changed: real tokens must not move.
    const table = store.params.get('token_embed.weight') as E.Param;
    table.data = table.data.map((v, i) => (i < CFG.width ? v + 5 : v));
    const b = await runEncoder(CFG, store);
    assert.ok(maxDiff((a.pooled.data as Float32Array), b.pooled.data as Float32Array) < 1e-5);
  });

  it('rejects ids of the wrong length and impossible configs', () => {
    const store = new E.ParamStore(0);
    assert.throws(() => T.transformerTextEncoder(new E.ParamScope(store), CFG, E.input('ids', [1, 4], 'int64')), /4 tokens per prompt, the encoder takes 6/);
    assert.throws(() => T.validateEncoderConfig({ ...CFG, heads: 3 }), /heads 3 does not divide width 8/);
  });
});

describe('cross-attention block against a float64 reference', () => {
  it('image features attend to text states, padding keys masked out', async () => {
    const [n, c, h, w, L, D] = [2, 8, 3, 3, 6, 5];
    const store = new E.ParamStore(7);
    const build = (ins: Record<string, E.Tensor>) =>
      nn.crossAttentionBlock(new E.ParamScope(store), ins.x, { states: ins.states, mask: ins.mask, pooled: ins.pooled }, 2, 4);
    build({ x: E.input('x', [n, c, h, w]), states: E.input('states', [n, L, D]), mask: E.input('mask', [n, L]), pooled: E.input('pooled', [n, D]) });
    const rng = new E.Rng(9);
    for (const [name, p] of store.params) if (name.startsWith('norm')) p.data = p.data.map(() => rng.normal() * 0.3 + (name.endsWith('weight') ? 1 : 0));
    const x = rng.fillNormal(new Float32Array(n * c * h * w)) as Float32Array;
    const states = rng.fillNormal(new Float32Array(n * L * D)) as Float32Array;
    const mask = Float32Array.from(IDS.flat(), (id) => (id ? 1 : 0));
    const program = new E.Program((ins) => ({ y: build(ins) }), { weights: store.values() });
    const y = (await program.run({
      x: { data: x, shape: [n, c, h, w] },
      states: { data: states, shape: [n, L, D] },
      mask: { data: mask, shape: [n, L] },
      pooled: { data: new Float32Array(n * D), shape: [n, D] },
    })).y.data as Float32Array;
    await program.release();
    const p = to64(store);
    for (let k = 0; k < n; k++) {
      // GroupNorm(4 groups) by hand, then tokens = positions, attention over the text, residual.
      const hw = h * w;
      const xn = new Float64Array(c * hw);
      const gsz = (c / 4) * hw;
      for (let g = 0; g < 4; g++) {
        const seg = Array.from({ length: gsz }, (_, i) => x[k * c * hw + g * gsz + i]);
        const m = seg.reduce((a, b) => a + b, 0) / gsz;
        const v = seg.reduce((a, b) => a + (b - m) ** 2, 0) / gsz;
        seg.forEach((val, i) => {
          const ch = Math.floor((g * gsz + i) / hw);
          xn[g * gsz + i] = ((val - m) / Math.sqrt(v + 1e-5)) * (p.get('norm.weight') as Float64Array)[ch] + (p.get('norm.bias') as Float64Array)[ch];
        });
      }
      const q = new Float64Array(hw * c);
      for (let ch = 0; ch < c; ch++) for (let i = 0; i < hw; i++) q[i * c + ch] = xn[ch * hw + i];
      const att = refAttention(p, 'attn', q, hw, c, Float64Array.from(states.subarray(k * L * D, (k + 1) * L * D)), L, D, 2, IDS[k].map((id) => (id ? 1 : 0)));
      const want = new Float64Array(c * hw);
      for (let ch = 0; ch < c; ch++) for (let i = 0; i < hw; i++) want[ch * hw + i] = x[k * c * hw + ch * hw + i] + att[i * c + ch];
      assert.ok(maxDiff(y.subarray(k * c * hw, (k + 1) * c * hw), want) < 1e-4, `item ${k}`);
    }
    void refLayerNorm;
  });
});

describe('a frozen ONNX text encoder plugs in with the same contract', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'diffuse-onnx-enc-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('an exported Diffuse encoder, loaded from its file, gives the in-graph encoder\'s states', async () => {
    const store = encoderStore(CFG);
    const file = path.join(dir, 'enc.onnx');
    await T.exportTextEncoder(CFG, store.values(), file);
    const enc = await T.OnnxTextEncoder.load({ kind: 'onnx', file, maxLength: CFG.maxLength, pooledOutput: 'pooler_output' });
    assert.equal(enc.width, CFG.width);
    const got = await enc.encode(idsData, 2);
    const want = await runEncoder(CFG, store);
    assert.ok(maxDiff(got.states, want.states.data as Float32Array) < 1e-5);
    assert.ok(maxDiff(got.pooled, want.pooled.data as Float32Array) < 1e-5);
    assert.deepEqual(Array.from(got.mask), Array.from(want.mask.data as Float32Array));
    // Without a pooled output, the pooled vector is the masked mean of the states, computed on the host.
    const meanOnly = await T.OnnxTextEncoder.load({ kind: 'onnx', file, maxLength: CFG.maxLength });
    assert.ok(maxDiff((await meanOnly.encode(idsData, 2)).pooled, want.pooled.data as Float32Array) < 1e-5);
    // An export's OnnxTextFeeds over the same file (Node-free, the page's too) gives exactly what OnnxTextEncoder gives a run.
    const tokenizer = { maxLength: CFG.maxLength, encodeBatch: (prompts: readonly string[]) => idsData.slice(0, prompts.length * CFG.maxLength) } as unknown as TextTokenizer;
    const component = await openComponentFile(file, { inputs: ['input_ids'], outputs: ['last_hidden_state'] });
    const feeds = await new OnnxTextFeeds(component, tokenizer, { input: 'input_ids', states: 'last_hidden_state' }, 1).feeds(['one prompt']);
    const host = await meanOnly.encode(idsData.slice(0, CFG.maxLength), 1);
    assert.deepEqual(feeds.text_states.data, host.states);
    assert.deepEqual(feeds.text_mask.data, host.mask);
    assert.deepEqual(feeds.text_pooled.data, host.pooled);
    await component.release();
    await enc.release();
    await meanOnly.release();
  });

  it('names the problem when the file or its outputs are wrong', async () => {
    await assert.rejects(T.OnnxTextEncoder.load({ kind: 'onnx', file: path.join(dir, 'missing.onnx'), maxLength: 6 }), /missing.onnx: no such ONNX text encoder file/);
    const junk = path.join(dir, 'junk.onnx');
    writeFileSync(junk, 'not a model');
    await assert.rejects(T.OnnxTextEncoder.load({ kind: 'onnx', file: junk, maxLength: 6 }), /junk.onnx: ONNX Runtime cannot load it/);
    const file = path.join(dir, 'enc2.onnx');
    await T.exportTextEncoder(CFG, encoderStore(CFG).values(), file);
    await assert.rejects(T.OnnxTextEncoder.load({ kind: 'onnx', file, maxLength: 6, statesOutput: 'hidden' }), /has no output 'hidden' \(outputs: last_hidden_state, pooler_output\)/);
  });
});
