/**
 * mingpt/kernels/js.ts: each fast kernel against its naive twin (llm.c's habit: check the fast kernel
 * against the plain one before timing it). Shapes include the awkward ones — 1, 7 and 65 rows or
 * channels, odd output counts, fewer than 4 rows — where tiling and padding code can go wrong.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  matmulForward, matmulForwardNaive, matvecRows, attentionForward, attentionScoresForward, attentionValuesForward, softmaxRows,
} from '../mingpt/kernels/js.ts';
import { RNG } from '../mingpt/utils.ts';

const rng = new RNG(1234);
const randn = (n: number) => Float32Array.from({ length: n }, () => rng.randn());

/** max |a - b| / max(1, |b|) over all elements: relative for big values, absolute near zero */
function maxRelErr(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return worst;
}

const shapes: Array<[number, number, number]> = [
  // [BT, C, OC]
  [1, 1, 1], [1, 7, 65], [2, 65, 7], [3, 7, 1], [4, 1, 7], [5, 7, 3],
  [7, 7, 7], [7, 65, 65], [65, 7, 65], [65, 65, 1], [65, 1, 65],
  [11, 96, 33], // T = 11 as in the assignment, more channels than one cache panel (32), odd
  [11, 64, 192], [12, 128, 512], [1, 48, 50257 % 1000], [33, 256, 64],
];

for (const [BT, C, OC] of shapes) {
  for (const withBias of [true, false]) {
    test(`matmulForward equals matmulForwardNaive (1e-5 relative): BT=${BT} C=${C} OC=${OC}${withBias ? ' with bias' : ', no bias'}`, () => {
      const inp = randn(BT * C), weight = randn(OC * C), bias = withBias ? randn(OC) : null;
      const want = new Float32Array(BT * OC), got = new Float32Array(BT * OC).fill(NaN);
      matmulForwardNaive(want, inp, weight, bias, BT, C, OC);
      matmulForward(got, inp, weight, bias, BT, C, OC);
      const err = maxRelErr(got, want);
      assert.ok(err <= 1e-5, `max relative error ${err}`);
    });
  }
}

test('matvecRows equals matmulForwardNaive for 1 to 5 rows and an OC that is not a multiple of 4', () => {
  for (let BT = 1; BT <= 5; BT++) {
    const C = 65, OC = 131;
    const inp = randn(BT * C), weight = randn(OC * C), bias = randn(OC);
    const want = new Float32Array(BT * OC), got = new Float32Array(BT * OC);
    matmulForwardNaive(want, inp, weight, bias, BT, C, OC);
    matvecRows(got, inp, weight, bias, BT, C, OC);
    assert.ok(maxRelErr(got, want) <= 1e-5, `BT=${BT}: ${maxRelErr(got, want)}`);
  }
});

test('matmulForward writes exactly BT × OC outputs: the padding rows of the last tile touch nothing beyond', () => {
  const BT = 5, C = 9, OC = 6;
  const inp = randn(BT * C), weight = randn(OC * C);
  const out = new Float32Array(BT * OC + 8).fill(42);
  matmulForward(out, inp, weight, null, BT, C, OC);
  assert.equal(Array.from(out.subarray(BT * OC)), new Array(8).fill(42));
});

test('matmulForward gives the same numbers on repeated calls and after calls of other shapes (scratch reuse)', () => {
  const inp = randn(7 * 33), weight = randn(5 * 33);
  const a = new Float32Array(35), b = new Float32Array(35);
  matmulForward(a, inp, weight, null, 7, 33, 5);
  matmulForward(new Float32Array(64 * 40), randn(64 * 100), randn(40 * 100), null, 64, 100, 40);
  matmulForward(b, inp, weight, null, 7, 33, 5);
  assert.equal(Array.from(a), Array.from(b));
});

// [B, Tq, Tk, C, NH]: one token; a query block shorter than the keys (a cache of earlier keys); odd sizes
const attentionShapes: Array<[number, number, number, number, number]> = [
  [1, 1, 1, 8, 2], [2, 7, 7, 16, 4], [1, 3, 9, 32, 4], [2, 1, 65, 12, 3], [1, 64, 64, 64, 4],
];
for (const [B, Tq, Tk, C, NH] of attentionShapes) {
  test(`attentionForward equals scores → softmax → values bit for bit: B=${B} Tq=${Tq} Tk=${Tk} C=${C} NH=${NH}`, () => {
    const q = randn(B * Tq * C).map((x) => 3 * x), k = randn(B * Tk * C), v = randn(B * Tk * C);
    const att = new Float32Array(B * NH * Tq * Tk);
    attentionScoresForward(att, q, k, B, Tq, Tk, C, NH);
    softmaxRows(att, B * NH * Tq, Tk);
    const want = new Float32Array(B * Tq * C), got = new Float32Array(B * Tq * C).fill(NaN);
    attentionValuesForward(want, att, v, B, Tq, Tk, C, NH);
    attentionForward(got, q, k, v, B, Tq, Tk, C, NH);
    const differ = got.findIndex((x, i) => !Object.is(x, want[i]));
    assert.is(differ, -1, `first difference at ${differ}: ${got[differ]} vs ${want[differ]}`);
  });
}

test('attention scores: query i of Tq sits at position Tk − Tq + i (keys after it masked, hand-checked)', () => {
  // one head of size 1, q = 1 everywhere, k[t] = t: score(i, t2) = t2 for visible keys
  const Tq = 2, Tk = 4, q = new Float32Array([1, 1]), k = new Float32Array([0, 1, 2, 3]);
  const att = new Float32Array(Tq * Tk);
  attentionScoresForward(att, q, k, 1, Tq, Tk, 1, 1);
  assert.equal(Array.from(att), [0, 1, 2, -Infinity, 0, 1, 2, 3]);
});

test.run();
