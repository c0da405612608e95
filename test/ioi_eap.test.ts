/**
 * assignments/ioi/ioi.ts --eap on the tiny checkpoint and the fixture's prompt group: every edge of
 * the graph is scored (3 layers × 4 heads: 262 edges, counted by hand from GRADIENTS.md's rule),
 * the top ones make the circuit, and its knockouts start from the model's F, analysis.json's
 * knockout.F_model for the same prompts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { runScript } from './run_script.ts';
import { headOfNode } from '../assignments/ioi/eap.ts';
import { ANALYSIS as A, FIXTURE_ARG, FLOAT32_TOL, IOI_GROUP_FILE, close, tempDir } from './helpers.ts';

const tmp = tempDir('ioi-eap-');

// embed → all 40 inputs; each layer-0 head → 24 head inputs of layers 1–2, 3 MLPs, logits (28);
// layer 1 heads → 12 + 2 + 1; layer 2 heads → MLP 2, logits; m0 → 24 + 2 + 1; m1 → 12 + 1 + 1; m2 → logits
const EDGES = 40 + 4 * 28 + 4 * 15 + 4 * 2 + 27 + 14 + 1;

test('--eap: every edge scored, the circuit of the top 6, its knockouts, the graph chart', async () => {
  const out = path.join(tmp, 'out');
  const r = await runScript('assignments/ioi/ioi.ts', ['--weights', FIXTURE_ARG, '--prompts', IOI_GROUP_FILE, '--skip-resid-sweep', '--eap', '--eap-edges', '6', '--out', out]);
  assert.is(r.code, 0, r.stderr);
  const eap = JSON.parse(fs.readFileSync(path.join(out, 'ioi.json'), 'utf8')).eap;
  assert.is(eap.n_edges, EDGES);
  assert.is(eap.edges.length, 6);
  const sizes = eap.edges.map((e: { score: number }) => Math.abs(e.score));
  assert.equal(sizes, [...sizes].sort((a: number, b: number) => b - a), 'largest |score| first');
  const heads = new Set(eap.edges.flatMap((e: { from: string; to: string }) => [headOfNode(e.from), headOfNode(e.to)]).filter(Boolean));
  assert.equal(eap.heads, [...heads].sort());
  close(eap.knockout.F_model, A.knockout.F_model, FLOAT32_TOL, 'F_model');
  assert.ok(Math.abs(eap.knockout.faithfulness - Math.abs(eap.knockout.F_model - eap.knockout.F_circuit)) < 1e-12);
  assert.ok(fs.existsSync(path.join(out, 'eap_circuit.svg')) && fs.existsSync(path.join(out, 'eap_circuit.vl.json')));
  assert.match(r.stdout, '9. edge attribution patching');
});

test('headOfNode: heads and their inputs name the head; the rest name none', () => {
  assert.is(headOfNode('a3.11'), '3.11');
  assert.is(headOfNode('a0.2.k'), '0.2');
  assert.is(headOfNode('m4'), null);
  assert.is(headOfNode('embed'), null);
  assert.is(headOfNode('logits'), null);
});

test.run();
