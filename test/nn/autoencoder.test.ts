import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import * as E from '../../src/engine/index.js';
import * as nn from '../../src/nn/index.js';

/**
 * The autoencoder against an independent PyTorch build of diffusers' AutoencoderKL
 * (test/fixtures/tiny-vae/make_tiny_vae.py, float64): the same weights by name must give the
 * same moments, reconstruction, KL and L1.
 */
const dir = new URL('../fixtures/tiny-vae/', import.meta.url);
interface Arr {
  shape: number[];
  data: number[];
}
const ref = JSON.parse(readFileSync(new URL('expected.json', dir), 'utf8')) as {
  config: nn.AutoencoderConfig;
  x: Arr;
  eps: Arr;
  moments: Arr;
  recon: Arr;
  kl: number[];
  l1: number[];
  names: string[];
};

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  assert.ok(worst < tol, `${what}: worst difference ${worst}`);
}

describe('KL autoencoder against a PyTorch AutoencoderKL (float64 reference)', () => {
  const weights = E.decodeSafetensors(readFileSync(new URL('weights.safetensors', dir)), 'tiny-vae');
  const store = new E.ParamStore(0);
  const x = E.input('x', ref.x.shape);
  const eps = E.input('eps', ref.eps.shape);
  nn.decodeLatents(new E.ParamScope(store), ref.config, nn.samplePosterior(nn.encodeMoments(new E.ParamScope(store), ref.config, x), eps));

  it('names and shapes every parameter as diffusers does', () => {
    assert.deepEqual([...store.params.keys()].sort(), [...ref.names].sort());
    for (const [name, p] of store.params) assert.deepEqual(p.shape, [...weights.tensors.get(name)!.shape], name);
    assert.equal(nn.downsamplingFactor(ref.config), 2);
  });

  it('gives the reference moments, reconstruction, KL and L1', async () => {
    const baked = new Map([...weights.tensors].map(([k, v]) => [k, Float32Array.from(v.data as Float32Array)]));
    const program = new E.Program(
      (ins) => {
        const p = new E.ParamScope(store);
        const moments = nn.encodeMoments(p, ref.config, ins.x);
        const recon = nn.decodeLatents(p, ref.config, nn.samplePosterior(moments, ins.eps));
        return { moments, recon, kl: nn.klDivergence(moments), l1: nn.l1PerImage(ins.x, recon) };
      },
      { weights: baked },
    );
    const out = await program.run({
      x: { data: Float32Array.from(ref.x.data), shape: ref.x.shape },
      eps: { data: Float32Array.from(ref.eps.data), shape: ref.eps.shape },
    });
    assert.deepEqual(out.moments.shape, ref.moments.shape);
    close(out.moments.data as Float32Array, ref.moments.data, 2e-5, 'moments');
    close(out.recon.data as Float32Array, ref.recon.data, 2e-5, 'reconstruction');
    close(out.kl.data as Float32Array, ref.kl, 2e-5, 'KL');
    close(out.l1.data as Float32Array, ref.l1, 2e-5, 'L1');
  });

  it('refuses a config whose groups do not divide the channels, naming the field', () => {
    assert.throws(() => nn.validateAutoencoderConfig({ ...ref.config, normGroups: 3 }), /normGroups/);
    assert.throws(() => nn.validateAutoencoderConfig({ ...ref.config, blockOutChannels: [] }), /blockOutChannels/);
  });
});
