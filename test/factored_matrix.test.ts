// Tests for lens/factored_matrix.ts. The reference for every factored operation is the same
// operation on the dense product A B, formed explicitly on small random matrices, with the dense
// eigenvalues and singular values from ml-matrix's general routines, and a few hand-worked cases.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FactoredMatrix, dense, eigenvalues, frobeniusNorm, matmul, singularValues, transpose, type Dense } from '../lens/factored_matrix.ts';
import { RNG } from '../mingpt/utils.ts';
import { closeAll } from './helpers.ts';

const rng = new RNG(7);
const rand = (r: number, c: number): Dense => dense(Float64Array.from({ length: r * c }, () => rng.randn()), r, c);

test('dense helpers on a hand-worked case', () => {
  const a = dense(Float64Array.from([1, 2, 3, 4, 5, 6]), 2, 3), b = dense(Float64Array.from([1, 0, 0, 1, 1, 1]), 3, 2);
  assert.equal(Array.from(matmul(a, b).data), [4, 5, 10, 11]);
  assert.equal(Array.from(transpose(a).data), [1, 4, 2, 5, 3, 6]);
  assert.ok(Math.abs(frobeniusNorm(a) - Math.sqrt(91)) < 1e-12);
  // a rotation by 90°: eigenvalues ±i
  const ev = eigenvalues(dense(Float64Array.from([0, -1, 1, 0]), 2, 2));
  closeAll([...ev.re].sort(), [0, 0], 1e-12, 're');
  closeAll([...ev.im].sort(), [-1, 1], 1e-12, 'im');
  closeAll(singularValues(dense(Float64Array.from([3, 0, 0, -2]), 2, 2)), [3, 2], 1e-12, 'S');
});

for (const [m, r, n] of [[7, 3, 7], [12, 5, 9], [1, 1, 1], [20, 4, 20]]) {
  test(`factored ${m}×${r}·${r}×${n} agrees with the dense product`, () => {
    const A = rand(m, r), B = rand(r, n), f = new FactoredMatrix(A, B), D = f.AB();
    assert.equal([f.rows, f.cols, f.rank_bound], [m, n, r]);
    closeAll([f.norm()], [frobeniusNorm(D)], 1e-10, 'norm');
    closeAll(f.T.AB().data, transpose(D).data, 1e-12, 'T');
    const x = Float64Array.from({ length: n }, () => rng.randn());
    closeAll(f.mulVec(x), matmul(D, dense(x, n, 1)).data, 1e-10, 'mulVec');
    const y = Float64Array.from({ length: m }, () => rng.randn());
    closeAll(f.vecMul(y), matmul(dense(y, 1, m), D).data, 1e-10, 'vecMul');
    const M = rand(n, 3);
    closeAll(f.mul(M).AB().data, matmul(D, M).data, 1e-10, 'mul');
    const N = rand(2, m);
    closeAll(f.lmul(N).AB().data, matmul(N, D).data, 1e-10, 'lmul');
    const g = new FactoredMatrix(rand(n, 2), rand(2, 4));
    closeAll(f.mulFactored(g).AB().data, matmul(D, g.AB()).data, 1e-10, 'mulFactored');
    // singular values: the r largest of the dense ones; the rest are zero
    const Sd = singularValues(D);
    closeAll(f.S(), Sd.subarray(0, Math.min(r, m, n)), 1e-9, 'S');
    for (let i = r; i < Sd.length; i++) assert.ok(Sd[i] < 1e-9, `dense singular value ${i} should vanish`);
  });
}

test('eigenvalues of A B are the non-zero eigenvalues of the dense product (complex ones included)', () => {
  for (const [m, r] of [[8, 3], [15, 6], [30, 10]]) {
    const f = new FactoredMatrix(rand(m, r), rand(r, m));
    const small = f.eigenvalues(), big = eigenvalues(f.AB());
    const key = (re: number, im: number) => [re, im];
    const s = Array.from(small.re, (re, i) => key(re, small.im[i])).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const b = Array.from(big.re, (re, i) => key(re, big.im[i])).filter(([re, im]) => Math.hypot(re, im) > 1e-8).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    assert.is(s.length, r);
    assert.is(b.length, r, 'the dense product has exactly r non-zero eigenvalues');
    closeAll(s.flat(), b.flat(), 1e-7, `eig ${m}×${r}`);
    assert.ok(small.im.some((v) => Math.abs(v) > 1e-6) || r < 3, 'random products usually have complex pairs: the solver must return them');
  }
});

test('shape errors name the shapes', () => {
  assert.throws(() => new FactoredMatrix(rand(3, 2), rand(3, 3)), /A is 3 × 2, B is 3 × 3/);
  assert.throws(() => new FactoredMatrix(rand(3, 2), rand(2, 4)).BA(), /square/);
  assert.throws(() => new FactoredMatrix(rand(3, 2), rand(2, 4)).mulVec([1, 2]), /length 2/);
});

test.run();
