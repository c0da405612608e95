/**
 * Knockouts (lens/knockout.ts) against test/fixtures/gpt2-tiny/analysis.json's `knockout`: the
 * group of ioi-group.json, its circuit, F_model, F_circuit, F_empty, faithfulness, completeness
 * for the listed sets and minimality per head, from an independent PyTorch run of ANALYSIS.md's
 * definitions (mean ablation over the group's corrupt prompts). Tolerance 1e-5 relative to
 * max(1, |value|) (both sides float32; the code agrees to a few 1e-6). Then the per-position variant checked against facts that need no reference.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Knockout, evaluateCircuit, type KnockoutGroup } from '../lens/knockout.ts';
import { parseHead } from '../lens/heads.ts';
import { loadGPT } from '../io/load.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(here, 'fixtures', 'gpt2-tiny');
const A = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'analysis.json'), 'utf8'));
const G = JSON.parse(fs.readFileSync(path.join(here, 'fixtures', 'ioi-group.json'), 'utf8'));
const model = loadGPT(FIXTURE);
const K = A.knockout;
const T = K.group_ids[0][0].length;

function close(got: number, want: number, what: string, tol = 1e-5) {
  assert.ok(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${what}: ${got} vs reference ${want}`);
}

const group: KnockoutGroup = {
  clean: K.group_ids.map((p: number[][]) => p[0]),
  corrupt: K.group_ids.map((p: number[][]) => p[1]),
  token: K.io_ids,
  other: K.s_ids,
  positions: K.group_ids.map(() => ({ END: T - 1, first: 0 })),
};
const ko = new Knockout(model, [group]);

test('F_model, F_circuit, F_empty, faithfulness, completeness and minimality match the reference', () => {
  assert.equal(G.circuit, K.circuit);
  const ev = evaluateCircuit(ko, K.circuit.map(parseHead), { completeness_sets: G.completeness_sets.map((s: string[]) => s.map(parseHead)) });
  close(ev.F_model, K.F_model, 'F_model');
  close(ev.F_circuit, K.F_circuit, 'F_circuit');
  close(ev.F_empty, K.F_empty, 'F_empty');
  close(ev.faithfulness, K.faithfulness, 'faithfulness');
  assert.is(ev.completeness.length, K.completeness.length);
  ev.completeness.forEach((c, i) => {
    const w = K.completeness[i];
    assert.equal(c.K, w.K);
    close(c.value, w.value, `completeness ${w.K}`);
    close(c.F_C_minus_K, w.F_C_minus_K, `F(C\\K) ${w.K}`);
    close(c.F_M_minus_K, w.F_M_minus_K, `F(M\\K) ${w.K}`);
  });
  ev.minimality.forEach((m, i) => {
    assert.is(m.head, K.minimality[i].head);
    close(m.value, K.minimality[i].value, `minimality ${m.head}`);
  });
});

test('remembered F values: C \\ {v} asked again costs no run', () => {
  const before = ko.runs;
  ko.Fmemo([parseHead('1.2'), parseHead('2.0'), parseHead('2.3')]); // = C \ {0.1}, already run above
  assert.is(ko.runs, before);
});

test('per-position keeping: kept at every position = kept everywhere; a last-layer head kept at END only = kept everywhere', () => {
  const C = K.circuit.map(parseHead);
  const allPos = C.map((h: { layer: number; head: number }) => ({ ...h, positions: Array.from({ length: T }, (_, t) => `p${t}`) }));
  const g2: KnockoutGroup = { ...group, positions: group.clean.map(() => Object.fromEntries(Array.from({ length: T }, (_, t) => [`p${t}`, t]))) };
  const ko2 = new Knockout(model, [g2]);
  close(ko2.F(allPos), K.F_circuit, 'circuit kept at all T positions');
  // END only, for the last layer's circuit heads, and everywhere for the rest: only END matters for
  // a last-layer head's effect on the metric at END, so this equals F_circuit
  const endOnly = C.map((h: { layer: number; head: number }) => (h.layer === model.config.n_layer - 1 ? { ...h, positions: ['p' + (T - 1)] } : h));
  close(ko2.F(endOnly), K.F_circuit, 'last-layer heads kept at END only');
});

test('bad input: a head that does not exist, a position a prompt lacks', () => {
  assert.throws(() => ko.F([{ layer: 9, head: 0 }]), /does not exist/);
  assert.throws(() => ko.F([{ layer: 0, head: 0, positions: ['S2'] }]), /no position "S2"/);
});

test.run();
