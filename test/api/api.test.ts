/**
 * The public API changes only on purpose: docs/API.md lists every exported name of every entry
 * point, and this test fails when the sources export something else. After a deliberate change,
 * `node --import tsx test/api/write-api-doc.ts` rewrites the page (review its diff).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { entryPoints, publicApi, renderApi } from './public-api.js';

const repo = path.resolve(import.meta.dirname, '..', '..');

describe('the public API', () => {
  it('is what docs/API.md lists', () => {
    const doc = readFileSync(path.join(repo, 'docs', 'API.md'), 'utf8');
    const api = publicApi();
    assert.equal(doc, renderApi(api), 'the exports and docs/API.md disagree: after a deliberate change run node --import tsx test/api/write-api-doc.ts');
  });

  it('has an entry point for every folder of src/ with an index, and a curated root', () => {
    const folders = readdirSync(path.join(repo, 'src')).filter((f) => statSync(path.join(repo, 'src', f)).isDirectory() && existsSync(path.join(repo, 'src', f, 'index.ts')));
    const names = entryPoints().map((e) => e.name);
    for (const f of folders) assert.ok(names.includes(`diffuse/${f}`), `src/${f} has no entry point in package.json's exports`);
    const api = publicApi();
    const root = api.find((e) => e.name === 'diffuse');
    assert.ok(root);
    // The root stays a face, not the union of every folder.
    const all = new Set(api.filter((e) => e.name !== 'diffuse').flatMap((e) => [...e.values, ...e.types]));
    assert.ok(root.values.length + root.types.length < all.size / 3, `the root exports ${root.values.length + root.types.length} names of ${all.size}`);
    for (const name of ['DiffusionPipeline', 'StableDiffusionPipeline', 'DDIMScheduler', 'train', 'detectWatermark', 'Inspector', 'OptionError']) assert.ok(root.values.includes(name), `the root exports ${name}`);
  });
});
