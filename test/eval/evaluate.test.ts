/**
 * The conditions of a guided evaluation (`diffuse eval --guidance W`): each sample takes the label
 * of the held-out image it is compared with, so that samples and real images hold the classes in
 * the same shares.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { heldOutConditions } from '../../src/eval/evaluate.js';
import { classPrompt } from '../../src/data/index.js';
import { OptionError } from '../../src/engine/errors.js';
import type { RunConfig } from '../../src/run/config.js';

const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
const labels = Int32Array.from([7, 2, 1, 0, 4, 1]);
// Only the fields heldOutConditions reads: whether the run is text- or class-conditional.
const runOf = (c: { text?: object; numClasses?: number }) => ({ text: c.text, model: { numClasses: c.numClasses } }) as unknown as RunConfig;

describe('heldOutConditions', () => {
  it('gives a class-conditional run the held-out labels, in order, at the guidance weight', () => {
    const c = heldOutConditions(runOf({ numClasses: 10 }), 'mnist', DIGITS, labels, 2);
    assert.deepEqual(c, { classLabel: [7, 2, 1, 0, 4, 1], guidance: 2 });
  });

  it("gives a text run the data set's caption of each held-out label", () => {
    const c = heldOutConditions(runOf({ text: {} }), 'mnist', DIGITS, labels, 3);
    assert.equal(c.guidance, 3);
    assert.deepEqual(c.prompt, [...labels].map((k) => classPrompt('mnist', DIGITS, k)));
    assert.notEqual(c.prompt?.[0], c.prompt?.[1], 'different classes, different prompts');
  });

  it('refuses an unconditional run, naming the option', () => {
    assert.throws(() => heldOutConditions(runOf({}), 'mnist', DIGITS, labels, 3), (e: unknown) => e instanceof OptionError && /`guidance` needs a run trained with `text` or `classConditioning`/.test(e.message));
  });
});
