// Tests for assignments/induction-heads/: the score formulas and the detector on small attention
// patterns written out by hand (expected values worked out on paper, shown next to each), the
// repeated-token data, and the experiment end to end: in-process on the handmade model, and as a
// command line on the fixture checkpoint test/fixtures/gpt2-tiny.
// The handmade model's own facts (which heads it has, what removing them does) are in
// test/handmade.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import {
  detectHeads, duplicateTokenScores, evaluateDetection, inductionScores, parseTokenRange, previousTokenScores, repeatedTokens, stripeOf, stripeScore,
} from '../assignments/induction-heads/scores.ts';
import { ablationHooks, cleanRun, halves, mlpAblation, nextTokenStats, runAblated, secondHalfPositions } from '../assignments/induction-heads/circuit.ts';
import { COMMAND, blocksToRun, plural, readOptions, runExperiment, setup, type Options } from '../assignments/induction-heads/induction.ts';
import { buildHandmade } from '../assignments/induction-heads/handmade.ts';
import { UsageError } from '../io/errors.ts';
import { helpText, type OptionSpec } from '../cli/args.ts';
import { logSoftmaxAt } from '../lens/metrics.ts';
import { runScript, type Run } from './run_script.ts';
import { loadGPT } from '../io/load.ts';
import { FIXTURE, close, tempDir } from './helpers.ts';

const tmp = tempDir('induction-test-');

// -----------------------------------------------------------------------------------------------
// hand-written attention patterns
//
// n = 3, T = 7: positions 0 = BOS, 1 2 3 = a b c, 4 5 6 = a b c again.
// For the second copy's query t: the earlier copy of its token is at t − 3, the token after that
// at t − 2. So the induction stripe is (4,2) (5,3) (6,4), the duplicate stripe (4,1) (5,2) (6,3),
// the previous-token stripe (1,0) (2,1) … (6,5).

const T7 = 7;

/** A (T, T) pattern from rows of [key, weight] pairs. */
function pattern(rows: Array<Array<[number, number]>>): number[] {
  const p = new Array(T7 * T7).fill(0);
  rows.forEach((row, t) => row.forEach(([k, w]) => (p[t * T7 + k] = w)));
  return p;
}
/** Rows 0-3 rest on BOS; rows 4-6 put all their weight `back` positions behind. */
const restThenBack = (back: number) => pattern([0, 1, 2, 3, 4, 5, 6].map((t) => (t < 4 ? [[0, 1]] : [[t - back, 1]])));
const uniform = pattern([0, 1, 2, 3, 4, 5, 6].map((t) => Array.from({ length: t + 1 }, (_, k) => [k, 1 / (t + 1)] as [number, number])));
/** (B, nh, T, T) from per-batch lists of per-head patterns. */
const stack = (batches: number[][][]) => Float32Array.from(batches.flat(2));

test('stripeScore: mean of att[b, h, t, t − offset] over the batch and the query rows', () => {
  // one batch row, one head, T = 3: rows [1 0 0], [.25 .75 0], [.1 .6 .3]
  const att = [1, 0, 0, 0.25, 0.75, 0, 0.1, 0.6, 0.3];
  close(stripeScore(att, 1, 1, 3, 1, 3, 1)[0], (0.25 + 0.6) / 2, 1e-9, 'stripeScore'); // (1,0) and (2,1)
  close(stripeScore(att, 1, 1, 3, 0, 3, 0)[0], (1 + 0.75 + 0.3) / 3, 1e-9, 'stripeScore'); // the diagonal
  close(stripeScore(att, 1, 1, 3, 2, 3, 2)[0], 0.1, 1e-9, 'stripeScore'); // (2,0)
  assert.throws(() => stripeScore(att, 1, 1, 3, 0, 3, 1), /does not fit/); // (0, −1) does not exist
});

test('stripeOf: the cells each score reads, for n = 3 (the stripes listed above)', () => {
  assert.equal(stripeOf('induction', 3), { from: 4, to: 7, offset: 2 }); // (4,2) (5,3) (6,4)
  assert.equal(stripeOf('duplicate_token', 3), { from: 4, to: 7, offset: 3 }); // (4,1) (5,2) (6,3)
  assert.equal(stripeOf('previous_token', 3), { from: 1, to: 7, offset: 1 }); // (1,0) … (6,5)
});

test('scores on hand-written patterns: a perfect induction head', () => {
  const att = stack([[restThenBack(2)]]); // B = 1, one head
  close(inductionScores(att, 1, 1, 7, 3)[0], 1, 1e-7, 'inductionScores'); // (4,2) (5,3) (6,4) all 1
  close(duplicateTokenScores(att, 1, 1, 7, 3)[0], 0, 1e-9, 'duplicateTokenScores'); // (4,1) (5,2) (6,3) all 0
  // previous-token: only row 1 (resting on BOS = position 0 = t − 1) hits: 1 of 6 rows
  close(previousTokenScores(att, 1, 1, 7)[0], 1 / 6, 1e-7, 'previousTokenScores');
});

test('scores on hand-written patterns: uniform attention', () => {
  const att = stack([[uniform]]);
  // row t spreads 1/(t+1) everywhere. previous-token: rows 1..6 give 1/2 + 1/3 + … + 1/7 = 223/140, over 6 rows
  close(previousTokenScores(att, 1, 1, 7)[0], 223 / 840, 1e-7, 'previousTokenScores');
  // induction and duplicate-token: rows 4, 5, 6 give 1/5 + 1/6 + 1/7 = 107/210, over 3 rows
  close(inductionScores(att, 1, 1, 7, 3)[0], 107 / 630, 1e-7, 'inductionScores');
  close(duplicateTokenScores(att, 1, 1, 7, 3)[0], 107 / 630, 1e-7, 'duplicateTokenScores');
});

test('scores average over the batch and keep heads apart', () => {
  // batch row 0: head 0 induction, head 1 uniform; batch row 1: head 0 duplicate-token, head 1 uniform
  const att = stack([[restThenBack(2), uniform], [restThenBack(3), uniform]]);
  const ind = inductionScores(att, 2, 2, 7, 3), dup = duplicateTokenScores(att, 2, 2, 7, 3), prev = previousTokenScores(att, 2, 2, 7);
  close(ind[0], 0.5, 1e-7, 'ind[0]'); // (1 + 0) / 2
  close(dup[0], 0.5, 1e-7, 'dup[0]'); // (0 + 1) / 2
  close(prev[0], 1 / 6, 1e-7, 'prev[0]'); // row 1 rests on BOS in both
  close(ind[1], 107 / 630, 1e-7, 'ind[1]');
  close(prev[1], 223 / 840, 1e-7, 'prev[1]');
  assert.throws(() => inductionScores(att, 2, 2, 7, 4), /T = 7/); // 2·4 + 1 = 9 positions expected
});

test('detectHeads: threshold mean + k·std over all heads, with a floor', () => {
  const scores = [[0.1, 0.9], [0.1, 0.1]];
  // mean 0.3; std = sqrt((3 · 0.2² + 0.6²) / 4) = sqrt(0.12)
  const d1 = detectHeads(scores, 1);
  close(d1.mean, 0.3, 1e-9, 'd1.mean');
  close(d1.std, Math.sqrt(0.12), 1e-9, 'd1.std');
  close(d1.threshold, 0.3 + Math.sqrt(0.12), 1e-9, 'd1.threshold');
  assert.equal(d1.heads, ['0.1']);
  assert.equal(detectHeads(scores, 2).heads, []); // 0.3 + 2·0.3464 = 0.993 > 0.9
  assert.equal(detectHeads(scores, 0, 0.95).heads, []); // the floor wins over 0.3
  // strictly above: with k = 0 the threshold is 0.3, and the three heads at 0.1 stay out
  assert.equal(detectHeads(scores, 0).heads, ['0.1']);
  // highest score first
  assert.equal(detectHeads([[0.5, 0.9, 0.0, 0.0, 0.0, 0.0]], 0.5).heads, ['0.1', '0.0']);
});

test('evaluateDetection: precision, recall and F1 by hand', () => {
  const e = evaluateDetection(['5.1', '5.5', '3.3'], ['5.1', '5.5', '6.9', '7.2', '7.10']);
  assert.equal(e.true_positives, ['5.1', '5.5']);
  assert.equal(e.false_positives, ['3.3']);
  assert.equal(e.false_negatives, ['6.9', '7.2', '7.10']);
  close(e.precision!, 2 / 3, 1e-9, 'precision');
  close(e.recall!, 2 / 5, 1e-9, 'recall');
  close(e.f1!, 0.5, 1e-9, 'F1'); // 2 · (2/3 · 2/5) / (2/3 + 2/5) = (8/15) / (16/15)
  const none = evaluateDetection([], ['2.2', '4.11']);
  assert.is(none.precision, null); // 0/0
  assert.is(none.recall, 0);
  assert.is(none.f1, null);
  const perfect = evaluateDetection(['4.11', '2.2'], ['2.2', '4.11']);
  assert.equal([perfect.precision, perfect.recall, perfect.f1], [1, 1, 1]);
});

// -----------------------------------------------------------------------------------------------
// data and bookkeeping

test('repeatedTokens: BOS, n tokens from [lo, hi), the same n again; seeded', () => {
  const o = { batch: 3, seqLen: 7, lo: 100, hi: 110, bos: 50256, seed: 5 };
  const rows = repeatedTokens(o);
  assert.is(rows.length, 3);
  for (const r of rows) {
    assert.is(r.length, 15);
    assert.is(r[0], 50256);
    assert.equal(r.slice(1, 8), r.slice(8));
    assert.ok(r.slice(1).every((id) => Number.isInteger(id) && id >= 100 && id < 110));
  }
  assert.equal(repeatedTokens(o), rows); // same seed, same tokens
  assert.not.equal(repeatedTokens({ ...o, seed: 6 }), rows);
});

test('halves: which query positions count as first half, seam and second half', () => {
  // n = 3: queries 0,1,2 predict the first copy; 3 predicts the second copy's first token; 4,5 the rest
  assert.equal(halves(3), { first: [0, 3], seam: 3, second: [4, 6] });
});

test('nextTokenStats: log-softmax of the target, top-1 hit', () => {
  // one row, positions [0], V = 3, logits [0, ln 2, ln 1]: probabilities 1/4, 2/4, 1/4
  const logits = Float32Array.from([0, Math.log(2), 0]);
  const hit = nextTokenStats(logits, 3, [[0, 1]], [0]);
  close(hit.logprob[0], Math.log(0.5), 1e-6, 'hit.logprob[0]');
  assert.is(hit.correct[0], 1);
  const miss = nextTokenStats(logits, 3, [[0, 2]], [0]);
  close(miss.logprob[0], Math.log(0.25), 1e-6, 'miss.logprob[0]');
  assert.is(miss.correct[0], 0);
  // logits for whole sequences (S = 2 rows each) but only position 0 asked for: rows 0 and 2 are read
  const two = Float32Array.from([/* b0 t0 */ Math.log(3), 0, 0, 9, 9, 9, /* b1 t0 */ 0, 0, Math.log(2), 9, 9, 9]);
  const s = nextTokenStats(two, 3, [[0, 0], [0, 2]], [0], 2);
  close(s.logprob[0], Math.log(3 / 5), 1e-6, 's.logprob[0]');
  close(s.logprob[1], Math.log(2 / 4), 1e-6, 's.logprob[1]');
  assert.equal([...s.correct], [1, 1]);
});

test('parseTokenRange and readOptions refuse what they cannot use', () => {
  assert.equal(parseTokenRange('256,1256'), [256, 1256]);
  assert.equal(parseTokenRange(' 3 , 9 '), [3, 9]);
  for (const bad of ['5,5', '9,3', 'a,b', '7', '1,2,3', '-1,4']) assert.throws(() => parseTokenRange(bad), (e: unknown) => e instanceof RangeError);
  const o = readOptions(['--weights', 'x', '--seq-len', '12', '--circuit', '4.11,5.5']) as Options;
  assert.is(o.seqLen, 12);
  assert.equal(o.circuit, ['4.11', '5.5']);
  const usage = (argv: string[]) => assert.throws(() => readOptions(argv), (e: unknown) => e instanceof UsageError);
  usage(['--seq-length', '5']); // unknown flag
  usage(['--seq-len', '1']); // below the minimum
  usage(['--weights', 'x', '--model', 'gpt2']);
  usage(['--circuit', '4.11']);
  usage(['--circuit', '4.11,x']);
  usage(['--ablate', '5']);
  usage(['--ablate', '5.1,']);
  usage(['--token-range', '10,2']);
  usage(['--ablation', 'half']);
  // --ablate: a list of heads, each once, in the order given
  const a = readOptions(['--ablate', '5.1, 5.5,5.1', '--ablation', 'zero']) as Options;
  assert.equal(a.ablate, ['5.1', '5.5']);
  assert.is(a.ablation, 'zero');
});

test('setup refuses a sequence longer than the context, and a token range outside the vocabulary', () => {
  const { model, config } = buildHandmade({ lo: 256, hi: 1256, seed: 0 });
  const info = { model, name: 'handmade', config };
  const base = readOptions(['--weights', 'handmade']) as Options;
  // context 128: BOS + 2 · 63 = 127 fits, BOS + 2 · 64 = 129 does not
  assert.is(setup(info, { ...base, seqLen: 63 }).lo, 256);
  assert.throws(() => setup(info, { ...base, seqLen: 64 }), /context of 128/);
  assert.throws(() => setup(info, { ...base, seqLen: 20, tokenRange: [256, 2000] }), /past the vocabulary/);
  assert.throws(() => setup(info, { ...base, seqLen: 20, tokenRange: [1000, 1257] }), /contains the BOS/);
  const s = setup(info, { ...base, seqLen: 20 });
  assert.equal([s.lo, s.hi, s.bos], [256, 1256, 1256]); // from config.json: token_range and bos_token_id
  assert.equal(s.labels!.induction, ['1.1']);
  // GPT-2 small's labelled heads (5.1 … 7.10) do not exist in a 2 × 4 model
  assert.throws(() => setup(info, { ...base, seqLen: 20, labels: 'gpt2-small' }), /include 5\.1, 5\.5.*2 layers of 4 heads/);
  // a head that does not exist is named as such, before any layer-order complaint (issue #9)
  const circuit = (c: [string, string]) => setup(info, { ...base, seqLen: 20, circuit: c });
  assert.throws(() => circuit(['9.9', '1.0']), /no such head 9\.9: the model has 2 layers × 4 heads/);
  assert.throws(() => circuit(['0.2', '1.4']), /no such head 1\.4: the model has 2 layers × 4 heads/);
  assert.throws(() => circuit(['1.1', '0.2']), (e: unknown) => e instanceof UsageError && /earlier layer/.test((e as Error).message));
  assert.throws(() => setup(info, { ...base, seqLen: 20, ablate: ['0.2', '2.0'] }), /--ablate: no such head 2\.0/);
});

test('plural: "1 sequence", "8 sequences"', () => {
  assert.is(plural(1, 'sequence'), '1 sequence');
  assert.is(plural(8, 'sequence'), '8 sequences');
  assert.is(plural(0, 'circuit run'), '0 circuit runs');
});

test('--help lists every option, with its choices and default', () => {
  const help = helpText(COMMAND);
  for (const [name, spec] of Object.entries<OptionSpec>(COMMAND.options)) {
    assert.match(help, `--${name}`, name);
    for (const choice of spec.choices ?? []) assert.ok(help.includes(choice), `--${name}: choice ${choice}`);
  }
  for (const flag of ['--labels auto|gpt2-small|none', '--ablation mean|zero', '--ablate', '--kernels simd|js']) assert.ok(help.includes(flag), flag);
});

test('blocksToRun: the progress bar counts every transformer block the experiment runs', () => {
  // clean pass L; MLP ablation in layer l starts after it, L − 1 − l blocks, zero and mean; two circuit runs of L
  assert.is(blocksToRun(1), 1); // no circuit in a one-layer model; its MLP ablation runs no block
  assert.is(blocksToRun(2), 2 + 2 * (1 + 0) + 2 * 2); // 8
  assert.is(blocksToRun(12), 12 + 2 * 66 + 2 * 12); // 168 for GPT-2 small (0 + 1 + … + 11 = 66)
  assert.is(blocksToRun(12, 5), 168 + 7); // --ablate 5.1: layers 5 … 11
});

// -----------------------------------------------------------------------------------------------
// the experiment in-process, on the handmade model: reproducible run to run

test('the experiment is reproducible: same seed, same report', async () => {
  const opts = readOptions(['--weights', 'handmade', '--seq-len', '8', '--batch', '3', '--seed', '11']) as Options;
  const run = async () => {
    const { model, config } = buildHandmade({ lo: 256, hi: 1256, seed: 0 });
    const info = { model, name: 'handmade', config };
    const { report } = await runExperiment(info, opts, setup(info, opts));
    return { ...report, timing_s: {} };
  };
  const a = await run(), b = await run();
  assert.equal(a, b);
  // the progress callback sees every block of every run, up to blocksToRun: 8 for 2 layers
  const { model, config } = buildHandmade({ lo: 256, hi: 1256, seed: 0 });
  const info = { model, name: 'handmade', config };
  const calls: Array<[number, number]> = [];
  const other = (await runExperiment(info, { ...opts, seed: 12 }, setup(info, opts), { onProgress: (done, total) => calls.push([done, total]) })).report;
  assert.equal(calls, Array.from({ length: 8 }, (_, i) => [i + 1, 8]));
  // and a different seed draws different tokens
  assert.not.equal(other.tokens, a.tokens);
});

// -----------------------------------------------------------------------------------------------
// the command line, end to end on the fixture checkpoint

const runCli = (args: string[]): Promise<Run> => runScript('assignments/induction-heads/induction.ts', args);

// the PNGs come from the optional renderer, which this repository installs
const EXPECTED_FILES = ['induction.json', ...['logprob', 'scores', 'attention', 'mlp_ablation'].flatMap((c) => [`${c}.vl.json`, `${c}.svg`, `${c}.png`, `${c}.html`])];

test('command line on the fixture checkpoint: runs and writes induction.json and the charts', async () => {
  const out = path.join(tmp, 'tiny');
  const r = await runCli(['--weights', FIXTURE, '--seq-len', '10', '--batch', '2', '--out', out]);
  assert.is(r.code, 0, r.stderr);
  assert.equal(fs.readdirSync(out).sort(), [...EXPECTED_FILES].sort());
  const j = JSON.parse(fs.readFileSync(path.join(out, 'induction.json'), 'utf8'));
  // the keys the issue names, with the fixture's shape: 3 layers × 4 heads
  for (const k of ['first_half_logprob', 'second_half_logprob']) assert.type(j[k], 'number');
  for (const k of ['induction', 'previous_token', 'duplicate_token']) {
    assert.is(j.scores[k].length, 3);
    assert.ok(j.scores[k].every((row: number[]) => row.length === 4 && row.every((v) => v >= 0 && v <= 1)));
  }
  assert.ok(Array.isArray(j.detected.induction) && Array.isArray(j.detected.previous_token));
  assert.is(j.mlp_ablation.zero.change.length, 3);
  assert.is(j.mlp_ablation.mean.change.length, 3);
  for (const k of ['heads', 'ablation', 'ablation_note', 'accuracy']) assert.ok(k in j.two_head_circuit, k);
  assert.is(j.two_head_circuit.ablation, 'mean');
  assert.is(j.tokens.length, 2);
  assert.is(j.tokens[0].length, 21);
  assert.is(j.tokens[0][0], 50256); // <|endoftext|> as BOS
  // the pages carry their own copy of vega: no network needed to open them
  const html = fs.readFileSync(path.join(out, 'attention.html'), 'utf8');
  assert.not.match(html, /<script[^>]+src=/);
  assert.match(fs.readFileSync(path.join(out, 'scores.svg'), 'utf8'), /^<svg/);
  // a PNG for each chart (issue #9: the experiment wrote none)
  for (const c of ['logprob', 'scores', 'attention', 'mlp_ablation']) {
    assert.equal([...fs.readFileSync(path.join(out, `${c}.png`)).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], c);
  }
  // plurals: "2 sequences", and no "1 … runs"-style slips
  assert.match(r.stdout, /2 sequences of BOS/);
  assert.is(j.head_ablation, null);
  // no temporary files left behind
  assert.equal(fs.readdirSync(out).filter((f) => f.endsWith('.partial')), []);

  // run to run: a second process with the same seed writes the same numbers and the same charts
  const again = path.join(tmp, 'tiny-again');
  const r2 = await runCli(['--weights', FIXTURE, '--seq-len', '10', '--batch', '2', '--out', again]);
  assert.is(r2.code, 0, r2.stderr);
  const withoutTimings = (dir: string) => ({ ...JSON.parse(fs.readFileSync(path.join(dir, 'induction.json'), 'utf8')), timing_s: null });
  assert.equal(withoutTimings(again), withoutTimings(out));
  for (const f of EXPECTED_FILES.filter((f) => f !== 'induction.json')) {
    assert.ok(fs.readFileSync(path.join(again, f)).equals(fs.readFileSync(path.join(out, f))), `${f} differs between two runs`);
  }
});

test('command line: bad input gives a clear message, a non-zero exit, and writes nothing', async () => {
  const cases: Array<[string[], number, RegExp]> = [
    [['--weights', FIXTURE, '--seq-lenn', '10'], 2, /unknown option --seq-lenn \(did you mean --seq-len\?\)/],
    [['--weights', FIXTURE, '--seq-len', '40'], 1, /81 positions.*context of 64/], // 1 + 2·40 > 64
    [['--weights', FIXTURE, '--seq-len', '10', '--token-range', '300,200'], 2, /HI must be larger/],
    [['--weights', FIXTURE, '--seq-len', '10', '--token-range', '300,60000'], 1, /past the vocabulary/],
    [['--weights', path.join(tmp, 'no-such-checkpoint')], 1, /not found/],
    [['--model', 'gpt3'], 1, /unknown pretrained model 'gpt3'/], // refused before any download
    [['--weights', FIXTURE, '--seq-len', '10', '--labels', 'gpt2-small'], 1, /labelled induction heads include 5\.1.*3 layers of 4 heads/],
    [['--weights', FIXTURE, '--seq-len', '10', '--circuit', '0.1,3.0'], 1, /no such head 3\.0: the model has 3 layers × 4 heads/],
    [['--weights', FIXTURE, '--seq-len', '10', '--circuit', '9.9,1.0'], 1, /no such head 9\.9: the model has 3 layers × 4 heads/],
    [['--weights', FIXTURE, '--seq-len', '10', '--ablate', '0.4'], 1, /--ablate: no such head 0\.4/],
    [['--weights', FIXTURE, '--seq-len', '10', '--circuit', '2.1,1.0'], 2, /earlier layer/],
  ];
  let i = 0;
  for (const [args, code, message] of cases) {
    const out = path.join(tmp, `bad-${i++}`);
    const r = await runCli([...args, '--out', out]);
    assert.is(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.ok(!fs.existsSync(out), `${args.join(' ')} created ${out}`);
  }
  // an --out that cannot be a folder is refused before the model runs, and the file is untouched
  const file = path.join(tmp, 'a-file');
  fs.writeFileSync(file, 'keep me\n');
  for (const [out, message] of [[file, /exists and is not a folder/], [path.join(file, 'sub'), /is a file, so no folder/]] as const) {
    const r = await runCli(['--weights', FIXTURE, '--seq-len', '10', '--out', out]);
    assert.is(r.code, 1, r.stderr);
    assert.match(r.stderr, message);
    assert.is(r.stdout, '');
  }
  assert.is(fs.readFileSync(file, 'utf8'), 'keep me\n');
});

test('command line: one sequence is "1 sequence"; --ablate reports the heads removed', async () => {
  const out = path.join(tmp, 'one');
  const r = await runCli(['--weights', FIXTURE, '--seq-len', '6', '--batch', '1', '--ablate', '2.1,0.3', '--ablation', 'zero', '--out', out]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /1 sequence of BOS/);
  assert.not.match(r.stdout, /\b1 sequences\b/);
  assert.match(r.stdout, /5b\. --ablate 2\.1,0\.3 \(zero-ablated/);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'induction.json'), 'utf8'));
  assert.equal(j.head_ablation.heads, ['2.1', '0.3']);
  assert.is(j.head_ablation.ablation, 'zero');
  assert.ok(Math.abs(j.head_ablation.change - (j.head_ablation.second_half_logprob - j.second_half_logprob)) < 1e-12);
});

// -----------------------------------------------------------------------------------------------
// the fast paths give the numbers of the plain full forward pass

/** log P(target) and top-1 hit at the second-half query positions, read from full logits (B, T, V). */
function secondHalfFromFull(logits: Float32Array, tokens: number[][], n: number, V: number) {
  const B = tokens.length, T = tokens[0].length;
  let lp = 0, hits = 0, count = 0;
  for (let b = 0; b < B; b++) for (const t of secondHalfPositions(n)) {
    const o = (b * T + t) * V, target = tokens[b][t + 1];
    lp += logSoftmaxAt(logits, target, o, V);
    let arg = 0;
    for (let i = 1; i < V; i++) if (logits[o + i] > logits[o + arg]) arg = i;
    hits += arg === target ? 1 : 0;
    count++;
  }
  return { logprob: lp / count, accuracy: hits / count };
}

test('MLP and head ablations on the second half\'s rows only (the clean run\'s keys and values before) = the full forward with a hook, exactly', () => {
  // the fixture: 3 layers of random weights, so every MLP matters. The fast paths do the same
  // arithmetic on the rows they run (the rows before the second half are the clean run's), so
  // their numbers are the full forward's, bit for bit.
  const model = loadGPT(FIXTURE);
  const n = 8, V = model.config.vocab_size, L = model.config.n_layer;
  const tokens = repeatedTokens({ batch: 3, seqLen: n, lo: 256, hi: 1256, bos: 50256, seed: 4 });
  const clean = cleanRun(model, tokens, n);
  const results: number[] = [];
  for (let layer = 0; layer < L; layer++) {
    for (const mode of ['zero', 'mean'] as const) {
      const spec = { mode, mlps: [layer], positions: 'second_half' as const };
      // the plain way: every block, every position, hook_mlp_out overwritten
      const full = model.run_with_hooks(tokens, ablationHooks(model, clean, spec).hooks).logits.data;
      const want = secondHalfFromFull(full, tokens, n, V);
      let blocks = 0;
      const fast = mlpAblation(model, clean, layer, mode, () => blocks++);
      assert.is(blocks, L - 1 - layer, 'blocks run: those after the ablated MLP');
      for (const got of [fast, runAblated(model, clean, spec)]) {
        assert.is(got.second_half_logprob, want.logprob, `layer ${layer} ${mode}`);
        assert.is(got.second_half_accuracy, want.accuracy);
      }
      results.push(fast.second_half_logprob);
    }
  }
  // (the runs differ from each other: a wrong layer or mode would show)
  assert.is(new Set(results).size, results.length);
  // head ablations, at the second half (rows only) and at every position (from the head's layer)
  for (const positions of ['second_half', 'all'] as const) {
    const spec = { mode: 'mean' as const, heads: ['1.2', '2.0'], positions };
    const want = secondHalfFromFull(model.run_with_hooks(tokens, ablationHooks(model, clean, spec).hooks).logits.data, tokens, n, V);
    assert.is(runAblated(model, clean, spec).second_half_logprob, want.logprob, positions);
    // the ablation changed something (the test would pass vacuously otherwise)
    assert.ok(Math.abs(want.logprob - secondHalfFromFull(model.forward(tokens).logits.data, tokens, n, V).logprob) > 1e-4);
  }
});

test.run();
