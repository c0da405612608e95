// Tests for lens/head_detector.ts: the detection patterns written out by hand for short token
// sequences, the one scoring function on attention patterns built by hand (each expected score
// worked out on paper next to it), and detectHead on the handmade induction model, whose
// previous-token head (0.2) and induction head (1.1) are known by construction.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  checkPattern, detectHead, detectionPattern, duplicateTokenPattern, inductionPattern, patternFromRows, previousTokenPattern, scoreHeads,
} from '../lens/head_detector.ts';
import { buildHandmade } from '../assignments/induction-heads/handmade.ts';
import { repeatedTokens } from '../assignments/induction-heads/scores.ts';
import { close } from './helpers.ts';

const rows = (p: { T: number; data: Float32Array }) => Array.from({ length: p.T }, (_, t) => [...p.data.subarray(t * p.T, (t + 1) * p.T)]);

// -----------------------------------------------------------------------------------------------
// patterns from tokens

// tokens  7 1 2 1 2   (positions 0 … 4): 1 repeats at 3, 2 repeats at 4
const TOKENS = [7, 1, 2, 1, 2];

test('previousTokenPattern: ones just below the diagonal', () => {
  assert.equal(rows(previousTokenPattern(4)), [
    [0, 0, 0, 0],
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 1, 0],
  ]);
});

test('duplicateTokenPattern: each query marks the earlier positions of its own token', () => {
  assert.equal(rows(duplicateTokenPattern(TOKENS)), [
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0], // the 1 at 3 saw a 1 at 1
    [0, 0, 1, 0, 0], // the 2 at 4 saw a 2 at 2
  ]);
});

test('inductionPattern: the position after each earlier copy of the token', () => {
  assert.equal(rows(inductionPattern(TOKENS)), [
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 1, 0, 0], // after the 1 at 1 came position 2
    [0, 0, 0, 1, 0], // after the 2 at 2 came position 3
  ]);
  // a token repeated right away (x x): the copy at 1 would point at 2 = the query itself, which
  // is the duplicate pattern's business, not induction's; here 5 5 5: query 2 marks 1 (after the 5 at 0)
  assert.equal(rows(inductionPattern([5, 5, 5])), [[0, 0, 0], [0, 0, 0], [0, 1, 0]]);
  assert.equal(rows(detectionPattern('induction', TOKENS)), rows(inductionPattern(TOKENS)));
  assert.throws(() => detectionPattern('copying' as never, TOKENS), /unknown head kind "copying"/);
});

test('a pattern of your own: checked for shape and for nothing above the diagonal', () => {
  const p = patternFromRows([[1, 0], [0.5, 0.5]]);
  assert.is(p.T, 2);
  assert.throws(() => patternFromRows([[0, 1], [0, 0]]), /row 0, column 1, above the diagonal/);
  assert.throws(() => patternFromRows([[1], [0, 1]]), /must be square: row 0 has 1 entries, expected 2/);
  assert.throws(() => checkPattern(previousTokenPattern(3), 4), /3 × 3.*T = 4/);
});

// -----------------------------------------------------------------------------------------------
// scoring hand-built attention

/** (B, nh, T, T) from per-batch lists of per-head (T, T) row lists. */
const stack = (batches: number[][][][]) => Float32Array.from(batches.flat(3));

// T = 5, two heads:
//   head 0 a perfect previous-token head (row 0 can only look at itself)
//   head 1 rests on BOS (position 0) in every row
const PREV = [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]];
const BOS = [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]];

test('a previous-token head scores 1 on the previous-token pattern; a BOS head 1/4', () => {
  const att = stack([[PREV, BOS]]);
  const s = scoreHeads(att, 1, 2, 5, previousTokenPattern(5));
  close(s[0], 1, 1e-7, 's[0]');
  close(s[1], 1 / 4, 1e-7, 's[1]'); // only row 1 (whose previous position is BOS) hits: 1 of the 4 marked rows
  // TransformerLens's normalisation: the same sums over all 5 rows of attention
  const tl = scoreHeads(att, 1, 2, 5, previousTokenPattern(5), { normalize: 'attention' });
  close(tl[0], 4 / 5, 1e-7, 'tl[0]');
  close(tl[1], 1 / 5, 1e-7, 'tl[1]');
  // without BOS: head 1 never looks anywhere else, head 0 loses row 1
  const noBos = scoreHeads(att, 1, 2, 5, previousTokenPattern(5), { exclude_bos: true });
  close(noBos[0], 1, 1e-7, 'noBos[0]');
  close(noBos[1], 0, 1e-7, 'noBos[1]'); // rows 2, 3, 4 remain marked
});

test('induction and duplicate-token heads on 7 1 2 1 2 score 1 on their own pattern, 0 on the other', () => {
  // induction head: rows 3, 4 look at 2, 3 (the position after the earlier copy); other rows on BOS
  const IND = [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]];
  // duplicate-token head: rows 3, 4 look at 1, 2 (the earlier copy itself)
  const DUP = [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]];
  const att = stack([[IND, DUP]]);
  assert.equal(scoreHeads(att, 1, 2, 5, inductionPattern(TOKENS)), [1, 0]);
  assert.equal(scoreHeads(att, 1, 2, 5, duplicateTokenPattern(TOKENS)), [0, 1]);
  // half the weight on the right cell: 0.5
  const half = [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0.5, 0, 0.5, 0, 0], [0.5, 0, 0, 0.5, 0]];
  assert.equal(scoreHeads(stack([[half]]), 1, 1, 5, inductionPattern(TOKENS)), [0.5]);
});

test('one pattern per sequence: the batch mean over all marked rows', () => {
  // sequence 0: 7 1 2 1 2 (rows 3, 4 marked); sequence 1: 1 1 2 3 4 (row 1 marked, looking back at 0)
  const other = [1, 1, 2, 3, 4];
  const att = stack([[BOS], [BOS]]); // one head resting on BOS in both
  const s = scoreHeads(att, 2, 1, 5, [duplicateTokenPattern(TOKENS), duplicateTokenPattern(other)]);
  close(s[0], 1 / 3, 1e-7, 's[0]'); // hits: sequence 1's row 1 only (its earlier 1 is at BOS = 0); 3 marked rows
  assert.throws(() => scoreHeads(att, 2, 1, 5, [duplicateTokenPattern(TOKENS)]), /1 detection patterns for a batch of 2/);
  assert.throws(() => scoreHeads(att.subarray(1), 2, 1, 5, previousTokenPattern(5)), /needs 50/);
});

// -----------------------------------------------------------------------------------------------
// running a model whose heads are known

test('detectHead on the handmade model: 0.2 is the previous-token head, 1.1 the induction head', () => {
  const { model } = buildHandmade({ lo: 256, hi: 1256, seed: 0 });
  const tokens = repeatedTokens({ batch: 4, seqLen: 20, lo: 256, hi: 1256, bos: 1256, seed: 3 });
  const prev = detectHead(model, tokens, 'previous_token');
  const ind = detectHead(model, tokens, 'induction');
  const best = (s: number[][]) => {
    let at = '', top = -1;
    s.forEach((row, l) => row.forEach((v, h) => { if (v > top) { top = v; at = `${l}.${h}`; } }));
    return { at, top };
  };
  assert.is(best(prev).at, '0.2');
  assert.ok(best(prev).top > 0.99, `previous-token score of 0.2: ${best(prev).top}`);
  assert.is(best(ind).at, '1.1');
  assert.ok(best(ind).top > 0.9, `induction score of 1.1: ${best(ind).top}`);
  // every other head stays far below
  for (const [s, head] of [[prev, '0.2'], [ind, '1.1']] as const) {
    s.forEach((row, l) => row.forEach((v, h) => { if (`${l}.${h}` !== head) assert.ok(v < 0.5, `${l}.${h}: ${v}`); }));
  }
  // a user-given pattern (here the previous-token one, written out) gives the same scores
  assert.equal(detectHead(model, tokens, previousTokenPattern(41)), prev);
  // only some layers
  const only1 = detectHead(model, tokens, 'induction', { layers: [1] });
  assert.equal(only1[0], []);
  assert.equal(only1[1], ind[1]);
  assert.throws(() => detectHead(model, tokens, 'induction', { layers: [2] }), /no layer 2: the model has 2 layers/);
});

test.run();
