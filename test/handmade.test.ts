// Tests for assignments/induction-heads/handmade.ts, the two-layer model whose induction circuit
// is written by hand. Every expected value here is a fact of the construction, not an output
// copied from a run:
//   - its known heads are 0.2 (previous-token) and 1.1 (induction), and the six others write nothing;
//   - its MLP weights are zero, so removing an MLP changes nothing;
//   - it is built for 1000 token ids, so chance-level top-1 accuracy is 1/1000;
//   - on the second copy of a repeated sequence it copies the token that followed the current one,
//     which is right unless the current token also occurred elsewhere in the sequence.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { OutputWriter } from '../io/output.ts';
import { DEFAULT_RANGE, INDUCTION_HEAD, LAYOUT, N_EMBD, PREV_HEAD, buildHandmade, digitsOf } from '../assignments/induction-heads/handmade.ts';
import { checkpointFiles } from '../io/checkpoint_writer.ts';
import { readOptions, runExperiment, setup, type Options } from '../assignments/induction-heads/induction.ts';
import { runAblated } from '../assignments/induction-heads/circuit.ts';
import { runScript } from './run_script.ts';
import { loadGPT } from '../io/load.ts';
import { tempDir } from './helpers.ts';

const tmp = tempDir('handmade-test-');

const [LO, HI] = DEFAULT_RANGE; // [256, 1256): 1000 tokens, BOS = 1256
const CHANCE = 1 / (HI - LO);

// One experiment run on the in-memory model, shared by the tests below: 8 sequences of 20 tokens
// repeated, the experiment's defaults otherwise (k = 1, floor 0.1, mean-ablation for the circuit).
const built = buildHandmade({ lo: LO, hi: HI, seed: 0 });
const info = { model: built.model, name: 'handmade', config: built.config };
const opts = readOptions(['--weights', 'handmade', '--seq-len', '20', '--batch', '8']) as Options;
const { report, clean } = await runExperiment(info, opts, setup(info, opts));

test('construction: digits, zero-mean codes of equal norm, config.json facts', () => {
  assert.equal(digitsOf(347), [3, 4, 7]);
  assert.equal(digitsOf(5), [0, 0, 5]);
  const { wte, wpe } = built.model.transformer;
  const C = N_EMBD;
  // every code the embeddings write sums to zero (so layer norm's mean subtraction leaves it
  // alone) and has the same squared norm: 6 for a token (or BOS), 16 for a position
  const check = (row: Float32Array, norm2: number) => {
    const sum = row.reduce((a, b) => a + b, 0), n2 = row.reduce((a, b) => a + b * b, 0);
    assert.ok(Math.abs(sum) < 1e-5 && Math.abs(n2 - norm2) < 1e-4, `sum ${sum}, norm² ${n2}`);
  };
  for (const id of [LO, LO + 347, HI - 1, HI]) check(wte.subarray(id * C, (id + 1) * C), 6);
  for (const t of [0, 1, 77, 127]) check(wpe.subarray(t * C, (t + 1) * C), 16);
  assert.is(wte[(LO + 347) * C + LAYOUT.TOK + 0 * 12 + 3], 1); // digit 3 in block 0
  const cfg = built.config as Record<string, any>;
  assert.equal(cfg.token_range, [LO, HI]);
  assert.is(cfg.vocab_size, HI + 1);
  assert.is(cfg.bos_token_id, HI);
  assert.equal(cfg.known_heads.previous_token, [`${PREV_HEAD.layer}.${PREV_HEAD.head}`]);
  assert.equal(cfg.known_heads.induction, [`${INDUCTION_HEAD.layer}.${INDUCTION_HEAD.head}`]);
  // the MLPs are zero
  for (const [name, w] of built.model.named_parameters) if (/mlp\.c_(fc|proj)\./.test(name)) assert.ok(w.every((v) => v === 0), name);
});

test('second half: top-1 accuracy above 0.9; first half near chance (1/1000)', () => {
  assert.ok(report.second_half_accuracy > 0.9, `second half ${report.second_half_accuracy}`);
  assert.ok(report.first_half_accuracy < 0.05, `first half ${report.first_half_accuracy}`);
  // uniform over 1000 tokens would be ln(1/1000) = −6.91; the first half can only be as good or worse
  assert.ok(report.first_half_logprob < -6.9, `first half ${report.first_half_logprob}`);
  assert.ok(report.second_half_logprob > -1, `second half ${report.second_half_logprob}`);
});

test('detection finds exactly its two heads: precision = recall = 1', () => {
  assert.equal(report.detected.induction, ['1.1']);
  assert.equal(report.detected.previous_token, ['0.2']);
  for (const kind of ['induction', 'previous_token'] as const) {
    const e = report.evaluation![kind];
    assert.equal([e.precision, e.recall, e.f1], [1, 1, 1], kind);
  }
  assert.equal(report.detected.duplicate_token, []); // it has none, and the floor keeps noise out
});

test('removing the induction head drops second-half accuracy to chance; so does removing the previous-token head', () => {
  for (const mode of ['zero', 'mean'] as const) {
    for (const head of ['1.1', '0.2']) {
      const r = runAblated(built.model, clean, { mode, heads: [head], positions: 'all' });
      // chance is 1/1000; allow a few lucky hits out of 8 × 19 predictions
      assert.ok(r.second_half_accuracy < 0.03, `${mode}-ablating ${head}: ${r.second_half_accuracy}`);
      if (mode === 'zero') {
        // nothing reaches OUT (1.1 writes nothing; without 0.2 the induction head rests on BOS, whose
        // value is zero), so the 1000 tokens of the range tie and the others sit 30 logits below:
        // log P(correct) = −ln(1000 + 257·e^−30) = ln(1/1000) to 1e-14
        assert.ok(Math.abs(r.second_half_logprob - Math.log(CHANCE)) < 1e-4, `zero-ablating ${head}: log-prob ${r.second_half_logprob}`);
      }
    }
  }
  // removing a head that does nothing changes nothing
  const r = runAblated(built.model, clean, { mode: 'zero', heads: ['1.0', '0.3'], positions: 'all' });
  assert.is(r.second_half_accuracy, report.second_half_accuracy);
});

test('the two-head circuit keeps all of the accuracy; MLP ablation changes nothing (the MLPs are zero)', () => {
  const c = report.two_head_circuit!;
  assert.equal(c.heads, ['0.2', '1.1']);
  assert.is(c.ablation, 'mean');
  assert.is(c.accuracy, report.second_half_accuracy);
  assert.is(c.other_ablation.accuracy, report.second_half_accuracy);
  for (const mode of ['zero', 'mean'] as const) {
    for (const change of report.mlp_ablation[mode].change) assert.ok(Math.abs(change) < 1e-6, `${mode}: ${change}`);
  }
  assert.ok(CHANCE < 0.01);
});

test('the saved checkpoint loads with GPT.from_safetensors and computes the same logits', () => {
  const dir = path.join(tmp, 'roundtrip');
  const out = new OutputWriter(dir);
  for (const [name, data] of checkpointFiles(built.model, built.config)) out.add(name, data);
  out.commit();
  const loaded = loadGPT(dir);
  assert.is(loaded.config.vocab_size, HI + 1);
  const idx = clean.tokens.slice(0, 2);
  const a = built.model.forward(idx).logits.data, b = loaded.forward(idx).logits.data;
  assert.is(a.length, b.length);
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  assert.is(maxDiff, 0); // the same float32 weights in the same layout: bit for bit
});

test('the build is reproducible: the same seed gives the same weights', () => {
  const again = buildHandmade({ lo: LO, hi: HI, seed: 0 }).model.params;
  // compare the parameters themselves (the buffer behind them may hold other models too)
  const bytes = (p: Float32Array) => Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  assert.ok(bytes(again).equals(bytes(built.model.params)));
  const other = buildHandmade({ lo: LO, hi: HI, seed: 1 }).model.params; // other decoy weights
  assert.not.ok(bytes(other).equals(bytes(built.model.params)));
});

const runHandmadeCli = (args: string[]) => runScript('assignments/induction-heads/handmade.ts', args);

test('handmade.ts command line: writes model.safetensors and config.json; refuses a bad range', async () => {
  const dir = path.join(tmp, 'cli');
  const ok = await runHandmadeCli(['--out', dir, '--token-range', '1000,1100']);
  assert.is(ok.code, 0, ok.stderr);
  assert.equal(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors']);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(cfg.token_range, [1000, 1100]);
  assert.is(loadGPT(dir).config.vocab_size, 1101);
  for (const [range, message] of [['0,2000', /at most 1000/], ['7', /LO,HI/]] as const) {
    const bad = path.join(tmp, `bad-${range}`);
    const r = await runHandmadeCli(['--out', bad, '--token-range', range]);
    assert.ok(r.code !== 0);
    assert.match(r.stderr, message);
    assert.ok(!fs.existsSync(bad));
  }
  const file = path.join(tmp, 'a-file');
  fs.writeFileSync(file, 'keep me\n');
  const r = await runHandmadeCli(['--out', path.join(file, 'sub')]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /a-file is a file, so no folder can be made there/);
  assert.is(fs.readFileSync(file, 'utf8'), 'keep me\n');
});

test.run();
