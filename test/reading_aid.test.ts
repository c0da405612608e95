// What the experiments print to explain their numbers: the reading aids computed from the results
// (IOI, induction, circuits), the random-weights warning, gains printed as gains and no "-0.000",
// the warning for an answer token left at its default, the estimate of a long sweep and the ETA
// weighted by each cell's cost, the note that names --scale runs, and an offline hint that works.
// Expected sentences follow from hand-made numbers whose reading is known (a model that moves
// 100% of the gap, halves 7 nats apart, a composition 112 standard deviations above chance).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { ProgressBar } from '../io/progress.ts';
import { PretrainedError } from '../io/pretrained.ts';
import { offlineHint } from '../cli/command.ts';
import { num, term } from '../cli/terminal.ts';
import { answerTokenWarnings, printPatchPlan, printPatchResult, sweepCost, type Printer } from '../assignments/activation-patching/report.ts';
import { tokenizeInputs } from '../assignments/activation-patching/experiment.ts';
import { printResults as printIOI, readingAid as ioiAid } from '../assignments/ioi/report.ts';
import { readingAid as inductionAid } from '../assignments/induction-heads/report.ts';
import { readingAid as circuitsAid } from '../assignments/circuits/report.ts';
import type { Report as IOIReport } from '../assignments/ioi/ioi.ts';
import type { Report as InductionReport } from '../assignments/induction-heads/induction.ts';
import type { Report as CircuitsReport } from '../assignments/circuits/experiment.ts';
import { runScript } from './run_script.ts';

const printer = (): Printer & { lines: string[] } => {
  const lines: string[] = [];
  return { color: 0, width: 100, lines, print: (s = '') => lines.push(...s.split('\n')) };
};

test('num and term: no "-0.000"; negative terms in parentheses', () => {
  assert.is(num(-1e-9), '0.000');
  assert.is(num(-0.0004, 3, true), '0.000');
  assert.is(num(0.5, 2, true), '+0.50');
  assert.is(`|${term(-1.812)} − ${term(-1.812)}|`, '|(-1.812) − (-1.812)|');
});

// -----------------------------------------------------------------------------
// IOI

/** An IOI report with the hand-built model's numbers (F = 5, only 2.2 writes, 1.3 steers its query). */
function ioiReport(over: Partial<IOIReport> = {}): IOIReport {
  const zeros = () => [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]];
  const dla = zeros(); dla[2][2] = 5;
  const headZ = zeros(); headZ[2][2] = 5; headZ[0][1] = -1e-9;
  const toLogits = zeros().map((r) => r.map(() => 5)); toLogits[2][2] = 0;
  const toNM: (number | null)[][] = zeros().map((r) => r.map(() => 5)); toNM[1][3] = -1.814; toNM[2] = [null, null, null, null];
  return {
    model: 'm', config: { n_layer: 3, n_head: 4, n_embd: 8, vocab_size: 10, block_size: 16 }, prompts_source: 'test', prompts: [], n_prompts: 50,
    groups: [], F_model: 5, accuracy: 1, io_prob: 0.055, per_prompt_F: [], logit_lens: [0, 0, 0, 5],
    dla: { heads: dla } as IOIReport['dla'],
    patching: { head_z: headZ, corrupt_F: 0, resid_post: null },
    attention: { top_heads: [{ head: '2.2', why: 'name mover', to_IO: 1, to_S1: 0, to_S2: 0 }], to_IO: [], to_S1: [], to_S2: [] },
    path_patching: { name_movers: ['2.2'], name_movers_source: 'config.json', to_logits: toLogits, to_name_movers: toNM },
    knockout: {
      circuit: ['0.1', '1.3', '2.2'], F_model: 5, F_circuit: 5, F_empty: 0.004, faithfulness: 0, positions: 'all', runs: 1, circuit_source: 'config.json', classes: {},
      completeness: [{ K: ['0.1'], kind: 'class duplicate_token', value: 0, F_C_minus_K: -1.812, F_M_minus_K: -1.812 }],
      minimality: [{ head: '0.1', value: 6.813 }, { head: '2.2', value: 4.996 }],
    } as unknown as IOIReport['knockout'],
    eap: null,
    timing_s: {},
    ...over,
  };
}

test('IOI terminal: gains printed as gains over the ABC run, heads with no effect left out, no "-0.000"', () => {
  const lines: string[] = [];
  printIOI(ioiReport({ patching: { head_z: [[0.995, 1.276]], corrupt_F: 0.995, resid_post: null } }), (s = '') => lines.push(s));
  const out = lines.join('\n');
  assert.match(out, 'biggest gains in IO − S: 0.1 +0.281 (to 1.276)', 'the gain 1.276 − 0.995, then the patched value');
  assert.not.match(out, '0.0 +0.000', 'a head that gains nothing is no "biggest gain"');
  assert.not.match(out, /-0\.000/);
  assert.match(out, '|(-1.812) − (-1.812)| = 0.000');
  assert.match(out, 'heads toward IO: 2.2 +5.000\n');
});

test('IOI reading aid: the hand-built model, read from its numbers', () => {
  const aid = ioiAid(ioiReport(), false).join('\n');
  assert.match(aid, 'prefers IO to S by 5.00 logits');
  assert.match(aid, 'restores most for 2.2 (100% of the gap');
  assert.match(aid, 'Through the queries of 2.2: 1.3 (to -1.81)');
  assert.match(aid, 'faithful');
  assert.not.match(aid, 'random weights');
});

test('IOI reading aid: random weights first; a model that does not prefer IO is told so', () => {
  const aid = ioiAid(ioiReport({ F_model: -0.3, accuracy: 0.4 }), true);
  assert.match(aid[0], 'This checkpoint has random weights');
  assert.match(aid[1], 'The model does not prefer IO: F = -0.30');
});

// -----------------------------------------------------------------------------
// induction and circuits

function inductionReport(first: number, second: number): InductionReport {
  const scores = [[0.02, 0.9], [0.05, 0.1]];
  return {
    first_half_logprob: first, second_half_logprob: second, first_half_accuracy: 0.01, second_half_accuracy: second > -1 ? 0.96 : 0, seam_logprob: first,
    scores: { induction: scores, previous_token: scores, duplicate_token: scores },
    detection: { induction: { threshold: 0.45, mean: 0.2, std: 0.3 }, previous_token: { threshold: 0.95, mean: 0.2, std: 0.3 }, duplicate_token: { threshold: 0.95, mean: 0.2, std: 0.3 } },
    detected: { induction: ['0.1'], previous_token: [], duplicate_token: [] },
    evaluation: null, mlp_ablation: { mean: { change: [-0.02, -0.5] } },
    two_head_circuit: { heads: ['0.0', '1.1'], accuracy: 0.96 },
  } as unknown as InductionReport;
}

test('induction reading aid: the second copy far better (the hand-built model), or hardly better (random weights)', () => {
  const range = { lo: 256, hi: 1256 };
  const good = inductionAid(inductionReport(-7.33, -0.24), range, false).join('\n');
  assert.match(good, 'The second copy is predicted far better than the first (log-prob -0.24 against -7.33');
  assert.match(good, 'One head stands out as an induction head: 0.1');
  assert.match(good, 'No head stands out as a previous-token head: the best, 0.1, scores 0.90, below the threshold 0.95');
  assert.match(good, "Replacing MLP 1's output by its mean costs the second half most: -0.50 nats");
  assert.match(good, 'the two heads keep 100% of the accuracy');
  const flat = inductionAid(inductionReport(-14.656, -14.481), range, true);
  assert.match(flat[0], 'random weights');
  assert.match(flat[1], 'hardly better than the first (-14.48 against -14.66)');
  assert.match(flat.join('\n'), 'below uniform guessing over the token range (-6.91)'); // ln(1/1000)
});

test('circuits reading aid: a composition far above chance, a copying head, the causal check', () => {
  const r = {
    copying_score: [[0.1, -0.2], [0.3, 1]],
    composition_baseline: { mean: 0.062, std: 0.0008 },
    top_pairs: { k: [{ writer: '0.0', reader: '1.1', score: 0.152 }], q: [{ writer: '0.0', reader: '1.0', score: 0.064 }], v: [] },
    positional_qk: [[[[0, 0], [1, 0]], [[0, 0], [1, 0]]], [[[0, 0], [1, 0]], [[0, 0], [1, 0]]]],
    path: { writer: '0.0', reader: '1.1' }, head: '1.1',
    ov_on_tokens: { values: [[3, 0], [0, 3]] }, erasers: [{ layer: 0, neuron: 1, cosine: -0.95 }], lowest_neurons: [], eraser_below: -0.9,
    qk_path: { writer: '0.0', reader: '1.1', clean: { accuracy: 0.96 }, k_path_removed: { accuracy: 0.01 }, q_path_removed: { accuracy: 0.96 }, chance_accuracy: 0.001 },
  } as unknown as CircuitsReport;
  const aid = circuitsAid(r, false).join('\n');
  assert.match(aid, 'One head copies what it attends to (score above 0.5): 1.1 1.00');
  assert.match(aid, 'The strongest K-composition, 0.0 → 1.1 (0.152), is 112.5 standard deviations above random matrices');
  assert.match(aid, 'No Q-composition stands clearly above chance');
  assert.match(aid, "Taking 0.0 out of 1.1's keys costs 99% of the accuracy above chance, out of its queries 0%: 1.1's keys need 0.0");
  assert.match(aid, 'One MLP neuron writes back minus what it reads');
});

// -----------------------------------------------------------------------------
// activation patching: slips, long sweeps, hidden colours

const DEFAULTS = { clean: 'Michelle Jones was a top-notch student. Michelle', corrupt: 'Michelle Smith was a top-notch student. Michelle', cleanToken: ' Jones', corruptToken: ' Smith' };

test('a changed text with its answer token left at the default is caught, and the token where the texts differ suggested', () => {
  const bpe = new BPETokenizer();
  const o = { ...DEFAULTS, corrupt: 'Michelle Montgomery was a top-notch student. Michelle' };
  const t = tokenizeInputs(bpe, o);
  const w = answerTokenWarnings(o, t, DEFAULTS, { texts: true, cleanToken: false, corruptToken: false });
  assert.is(w.length, 1, 'the clean text still has " Jones" where they differ: no warning for it');
  assert.match(w[0], '--corrupt-token was left at its default " Smith"');
  assert.match(w[0], 'add --corrupt-token " Montgomery"');
  assert.equal(answerTokenWarnings(o, t, DEFAULTS, { texts: true, cleanToken: false, corruptToken: true }), [], 'the token was given');
  assert.equal(answerTokenWarnings(DEFAULTS, tokenizeInputs(bpe, DEFAULTS), DEFAULTS, { texts: false, cleanToken: false, corruptToken: false }), [], 'nothing changed');
});

test('sweep cost in forward passes, by hand: each cell recomputes from its layer on; cells before the first difference are free', () => {
  // head-pos, L = 2, one head, T = 3, texts differ from position 1: layer 0 → 0, 1, 1; layer 1 → 0, ½, ½
  const hp = sweepCost('head-pos', 'fast', 2, 1, 3, 1);
  assert.is(hp.runs, 6);
  assert.is(hp.passes, 3);
  assert.is(hp.share!(3), 2 / 3, 'the first three cells (layer 0) are two thirds of the work');
  // head, L = 2, two heads: 1, 1, ½, ½
  assert.is(sweepCost('head', 'fast', 2, 2, 3, 1).passes, 3);
  // the fast engine's resid_post also skips the positions before p: (L − l)/L × (T − p)/T
  const rp = sweepCost('resid_post', 'fast', 2, 1, 4, 2);
  assert.is(rp.passes, (1 * 2 / 4 + 1 * 1 / 4) + (0.5 * 2 / 4 + 0.5 * 1 / 4));
  assert.is(rp.share, undefined, 'the fast engine finishes cells in its own order');
});

test('a sweep that takes minutes is announced with its estimate; a short one is not', () => {
  const long = printer();
  printPatchPlan(long, 'head-pos', 'fast', 12, 12, 34, { passes: 2000, forward_s: 0.5 });
  assert.match(long.lines.join('\n'), '12 layers × 12 heads × 34 positions = 4896 runs');
  assert.match(long.lines.join('\n'), 'estimated time: about 25m00s'); // 2000 passes × 0.5 s × 1.5 (COST_PER_PASS.generic)
  const short = printer();
  printPatchPlan(short, 'head', 'fast', 3, 4, 11, { passes: 10, forward_s: 0.01 });
  assert.not.match(short.lines.join('\n'), 'estimated');
});

test('the progress bar ETA follows the work, not the count: layer 0 cells take longest', () => {
  let now = 0;
  const lines: string[] = [];
  const bar = new ProgressBar({ total: 10, label: 'p', now: () => now, stream: { write: (s: string) => lines.push(s), isTTY: false }, env: {}, workDone: (d) => (d >= 1 ? 0.5 : 0) });
  now = 10_000;
  bar.update(1); // one cell of ten, but half of the work, in 10 s: 10 s to go (not 90 s)
  assert.match(lines.join(''), 'ETA 10s');
});

test('when the zero-centred colours hide the cells, the terminal names --scale runs', () => {
  const p = printer();
  const bpe = new BPETokenizer();
  const t = tokenizeInputs(bpe, DEFAULTS);
  const T = t.clean_ids.length;
  const matrix = [Array.from({ length: T }, (_, i) => -3.4 - 0.02 * i)];
  const runs = { clean_logit_diff: -3.65, corrupt_logit_diff: -3.39 } as Parameters<typeof printPatchResult>[3];
  const patch = { kind: 'resid_post', hook: 'blocks.{l}.hook_resid_post', axes: ['layer', 'pos'], shape: [1, T], matrix, sweep_s: 0 } as Parameters<typeof printPatchResult>[4];
  printPatchResult(p, DEFAULTS, t, runs, patch, { scale: 'zero', n_head: 1, randomWeights: false });
  assert.match(p.lines.join('\n'), 'run with --scale runs');
  const q = printer();
  printPatchResult(q, DEFAULTS, t, runs, patch, { scale: 'runs', n_head: 1, randomWeights: false });
  assert.not.match(q.lines.join('\n'), 'run with --scale runs');
});

// -----------------------------------------------------------------------------
// the offline hint

test('offline, the induction script suggests a command that runs on the test checkpoint (context 64)', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'offline-hint-'));
  try {
    assert.match(offlineHint(new PretrainedError('not here'), 'cmd', '--seq-len 20'), 'cmd --weights test/fixtures/gpt2-tiny --seq-len 20');
    const noNet = { HF_HUB_OFFLINE: '1', HF_HUB_CACHE: path.join(tmp, 'hf-cache'), HF_HOME: path.join(tmp, 'hf-home') };
    const r = await runScript('assignments/induction-heads/induction.ts', ['--model', 'gpt2', '--out', path.join(tmp, 'a')], noNet);
    assert.is(r.code, 1);
    const hint = r.stderr.match(/npx tsx (assignments\/induction-heads\/induction\.ts --weights test\/fixtures\/gpt2-tiny[^\n]*)/);
    assert.ok(hint, r.stderr);
    const suggested = await runScript(hint[1].split(' ')[0], [...hint[1].split(' ').slice(1), '--out', path.join(tmp, 'b')]);
    assert.is(suggested.code, 0, suggested.stderr);
    assert.match(suggested.stdout, 'what the numbers say:');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test.run();
