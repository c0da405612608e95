// Tests for lens/circuits.ts and assignments/circuits/. References:
//   - analysis.json's `circuits` section (an independent PyTorch/float64 implementation of
//     ANALYSIS.md's "Weight circuits") for copying scores, the three composition tensors,
//     positional QK and neuron cosines, relative to max(1, |value|): 1e-9 where both sides work in
//     float64 on the same float32 weights (positional QK, neuron cosines: measured 1e-15), 1e-6
//     where float32 products enter (copying and composition scores: measured 2.6e-8);
//   - analysis.json's hook_attn_scores for the real scores of tokenQK;
//   - the hand-built induction model, whose circuit is known by construction: 0.2 is a
//     previous-token head (it attends to t − 1 from positions alone), 1.1 an induction head that
//     copies (its OV circuit writes the attended token's code into the logits) and whose keys read
//     what 0.2 wrote (K-composition); without 0.2 in its keys it cannot find anything;
//   - handmade_erasers.ts: the neurons built with output = −input, and nothing else, are erasers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { Weights } from '../lens/weights.ts';
import {
  compositionScore, compositionScores, copyingScores, neuronCosines, positionalQK, tokenQK, COMPOSITION_MODES,
} from '../lens/circuits.ts';
import { INDUCTION_HEAD, PREV_HEAD, buildHandmade } from '../assignments/induction-heads/handmade.ts';
import { repeatedTokens } from '../assignments/induction-heads/scores.ts';
import { qkPathAblation } from '../assignments/circuits/qk_path.ts';
import { ERASERS, buildHandmadeWithErasers } from '../assignments/circuits/handmade_erasers.ts';
import { topPairs } from '../assignments/circuits/experiment.ts';
import { runScript } from './run_script.ts';
import { loadGPT } from '../io/load.ts';
import { ANALYSIS, FIXTURE, FIXTURE_ARG, FLOAT32_TOL, close, closeAll, tempDir } from './helpers.ts';

const tiny = loadGPT(FIXTURE);
const analysis = ANALYSIS;
const ref = analysis.circuits;
const w = new Weights(tiny, true);
const L = 3, nh = 4;


test('copying scores match the reference', () => {
  closeAll(copyingScores(w), ref.copying_score, 1e-6, 'copying');
});

test('composition scores (q, k, v) match the reference, null where lA ≥ lB', () => {
  const comp = compositionScores(w);
  for (const m of COMPOSITION_MODES) closeAll(comp[m], ref.composition[m], 1e-6, m);
  // the fast (Gram-matrix) path agrees with the readable one through FactoredMatrix
  for (const [a, b] of [[[0, 1], [2, 3]], [[1, 0], [2, 2]], [[0, 3], [1, 0]]]) {
    for (const m of COMPOSITION_MODES) {
      const slow = compositionScore(w, { layer: a[0], head: a[1] }, { layer: b[0], head: b[1] }, m);
      close(slow, comp[m][a[0]][a[1]][b[0]][b[1]] as number, 1e-7, `${m} ${a} → ${b}`);
    }
  }
});

test('positional QK (16 × 16, unscaled, unmasked) and neuron cosines match the reference', () => {
  const pos = Array.from({ length: L }, (_, l) => Array.from({ length: nh }, (_, h) => positionalQK(w, l, h)));
  closeAll(pos, ref.positional_qk, 1e-9, 'positional_qk');
  const cos = Array.from({ length: L }, (_, l) => Array.from(neuronCosines(w, l)));
  closeAll(cos, ref.neuron_cosine, 1e-9, 'neuron_cosine');
});

test('tokenQK: the real scores equal the reference hook_attn_scores, and the parts add up', () => {
  const ids = analysis.case.clean_ids as number[];
  const T = ids.length, C = 32;
  for (const l of [0, 2]) {
    const resid = Float32Array.from((analysis.hooks[`blocks.${l}.hook_resid_pre`] as number[][][]).flat(2));
    assert.is(resid.length, T * C);
    for (const h of [0, 3]) {
      const q = tokenQK(w, l, h, ids, resid, 1e-5);
      const want = (analysis.hooks[`blocks.${l}.attn.hook_attn_scores`] as (number | null)[][][][])[0][h];
      closeAll(q.scores, want, FLOAT32_TOL, `scores ${l}.${h}`);
      for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) {
        const sum = q.token_token[i][j]! + q.token_position[i][j]! + q.position_position[i][j]! + q.rest[i][j]!;
        close(sum, q.scores[i][j]!, 1e-9, `the parts of score [${i}][${j}]`);
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------
// the hand-built induction model

const { model: hand } = buildHandmade({ lo: 256, hi: 1256, seed: 0 });
const hw = new Weights(hand, true);

test('handmade: the induction head copies (score ≈ +1)', () => {
  const cs = copyingScores(hw);
  assert.ok(cs[INDUCTION_HEAD.layer][INDUCTION_HEAD.head] > 0.99, `copying score ${cs[1][1]}`);
});

test('handmade: K-composition 0.2 → 1.1 is the largest composition score of the model', () => {
  const comp = compositionScores(hw);
  const best = COMPOSITION_MODES.flatMap((m) => topPairs(comp, m, 1).map((p) => ({ ...p, m }))).sort((a, b) => b.score - a.score)[0];
  assert.equal([best.m, best.writer, best.reader], ['k', `${PREV_HEAD.layer}.${PREV_HEAD.head}`, `${INDUCTION_HEAD.layer}.${INDUCTION_HEAD.head}`]);
});

test("handmade: the previous-token head's positional QK peaks on the sub-diagonal", () => {
  const m = positionalQK(hw, PREV_HEAD.layer, PREV_HEAD.head);
  for (let q = 1; q < m.length; q++) {
    let best = 0;
    for (let k = 0; k <= q; k++) if (m[q][k] > m[q][best]) best = k;
    assert.is(best, q - 1, `query ${q}`);
  }
});

test("handmade: removing 0.2 from 1.1's keys drops second-half accuracy to chance; from its queries, nothing", () => {
  const n = 20;
  const tokens = repeatedTokens({ batch: 4, seqLen: n, lo: 256, hi: 1256, bos: 1256, seed: 3 });
  const r = qkPathAblation(hand, PREV_HEAD, INDUCTION_HEAD, tokens, n, 1 / 1000);
  assert.ok(r.clean.accuracy > 0.9, `clean ${r.clean.accuracy}`);
  assert.ok(r.k_path_removed.accuracy < 0.05, `K path removed ${r.k_path_removed.accuracy}`);
  assert.ok(Math.abs(r.k_path_removed.logprob - Math.log(1 / 1000)) < 0.5, `log-prob ${r.k_path_removed.logprob} vs chance ${Math.log(1 / 1000)}`);
  assert.ok(Math.abs(r.q_path_removed.accuracy - r.clean.accuracy) < 1e-9, 'the queries do not read 0.2');
});

test('handmade with erasers: exactly the built erasers have cosine ≤ −0.9, and the model computes the same', () => {
  const { model } = buildHandmadeWithErasers({ lo: 256, hi: 1256, seed: 0 });
  const ew = new Weights(model, true);
  const found: string[] = [];
  for (let l = 0; l < 2; l++) neuronCosines(ew, l).forEach((c, n) => { if (c <= -0.9) found.push(`${l}.${n}`); });
  assert.equal(found.sort(), ERASERS.map((e) => `${e.layer}.${e.neuron}`).sort());
  const ids = [1256, 300, 301, 302, 300, 301];
  const a = hand.forward(ids).logits.data, b = model.forward(ids).logits.data;
  assert.equal(Array.from(b), Array.from(a));
});

// ---------------------------------------------------------------------------------------------
// the command line

const tmp = tempDir('circuits-test-');

test('circuits.ts on gpt2-tiny writes circuits.json with the fixture numbers and the charts', async () => {
  const out = path.join(tmp, 'tiny');
  const r = await runScript('assignments/circuits/circuits.ts', ['--weights', FIXTURE_ARG, '--out', out, '--seq-len', '8', '--batch', '2']);
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'circuits.json'), 'utf8'));
  closeAll(j.copying_score, ref.copying_score, 1e-6, 'copying_score');
  for (const m of COMPOSITION_MODES) closeAll(j.composition[m], ref.composition[m], 1e-6, `composition.${m}`);
  closeAll(j.positional_qk, ref.positional_qk, 1e-9, 'positional_qk');
  closeAll(j.neuron_cosine, ref.neuron_cosine, 1e-9, 'neuron_cosine');
  for (const chart of ['copying', 'composition', 'positional_qk', 'token_qk', 'ov_tokens', 'virtual_weights', 'neurons', 'qk_path']) {
    for (const ext of ['vl.json', 'svg', 'html']) assert.ok(fs.existsSync(path.join(out, `${chart}.${ext}`)), `${chart}.${ext}`);
  }
});

test('circuits.ts refuses a head the model does not have, and leaves nothing behind', async () => {
  const out = path.join(tmp, 'bad');
  const r = await runScript('assignments/circuits/circuits.ts', ['--weights', FIXTURE_ARG, '--out', out, '--head', '9.9']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /head 9\.9 does not exist: .* has 3 layers of 4 heads/);
  assert.not.ok(fs.existsSync(out));
  const r2 = await runScript('assignments/circuits/circuits.ts', ['--weights', FIXTURE_ARG, '--out', out, '--path', '2.0,1.0']);
  assert.is(r2.code, 2);
  assert.match(r2.stderr, /writer must sit in an earlier layer/);
});

test.run();
