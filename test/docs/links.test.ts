/**
 * The README's and docs' relative links lead somewhere: every linked file exists and every
 * #anchor names a heading of its page (GitHub's slugs), so a moved section breaks a test, not a
 * reader's link.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

const root = path.join(import.meta.dirname, '..', '..');
const pages = ['README.md', ...readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** GitHub's anchor of a heading: lower case, punctuation dropped except '-' and '_', spaces to '-'. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, '')
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(file: string): Set<string> {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1])));
}

describe('documentation links', () => {
  it('slugs headings as GitHub does', () => {
    assert.equal(slug('DPM-Solver++ with guidance'), 'dpm-solver-with-guidance');
    assert.equal(slug("More noise than DDPM's: eta above 1"), 'more-noise-than-ddpms-eta-above-1');
  });

  for (const page of pages) {
    it(`${page}: every relative link and anchor resolves`, () => {
      const text = readFileSync(path.join(root, page), 'utf8').replace(/```[\s\S]*?```/g, '');
      const broken: string[] = [];
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1];
        if (/^[a-z]+:/i.test(target)) continue; // http:, https:, mailto:
        const [file, anchor] = target.split('#');
        const resolved = file ? path.join(root, path.dirname(page), file) : path.join(root, page);
        if (!existsSync(resolved)) broken.push(`${target}: no such file`);
        else if (anchor && resolved.endsWith('.md') && !anchors(resolved).has(anchor)) broken.push(`${target}: no such heading`);
      }
      assert.deepEqual(broken, []);
    });
  }
});
