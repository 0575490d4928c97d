import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { FastGenerator, TorchGenerator } from '../../src/index.js';

interface Case {
  seed: number;
  kind: 'randn' | 'rand';
  sizes: number[];
  bits: string[];
}
const fixture = JSON.parse(readFileSync(new URL('../fixtures/torch_random.json', import.meta.url), 'utf8')) as { cases: Case[] };

describe('TorchGenerator reproduces torch.manual_seed + torch.randn / torch.rand bit for bit', () => {
  for (const c of fixture.cases) {
    it(`seed ${c.seed}, ${c.kind} of sizes ${c.sizes.join(', ')}`, () => {
      const g = new TorchGenerator(c.seed);
      c.sizes.forEach((n, k) => {
        const want = new Uint32Array(Uint8Array.from(Buffer.from(c.bits[k], 'base64')).buffer);
        const got = new Uint32Array((c.kind === 'randn' ? g.randn(n) : g.rand(n)).buffer);
        assert.deepEqual(got, want, `draw ${k} (n = ${n})`);
      });
    });
  }

  it('resumes exactly from saved state', () => {
    const a = new TorchGenerator(3);
    a.randn(5);
    const state = a.getState();
    const next = a.randn(40);
    const b = new TorchGenerator(99);
    b.setState(state);
    assert.deepEqual(b.randn(40), next);
  });
});

describe('FastGenerator', () => {
  it('is deterministic per seed and standard normal in distribution', () => {
    assert.deepEqual(new FastGenerator(1).randn(10), new FastGenerator(1).randn(10));
    const x = new FastGenerator(2).randn(200_000);
    let m = 0;
    let v = 0;
    let k4 = 0;
    for (const a of x) m += a;
    m /= x.length;
    for (const a of x) {
      v += (a - m) ** 2;
      k4 += (a - m) ** 4;
    }
    v /= x.length;
    k4 /= x.length * v * v;
    // standard errors: mean 0.0022, variance 0.0032, kurtosis 0.011
    assert.ok(Math.abs(m) < 0.01 && Math.abs(v - 1) < 0.015 && Math.abs(k4 - 3) < 0.06, `mean ${m}, var ${v}, kurtosis ${k4}`);
  });
});
