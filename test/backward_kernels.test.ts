/**
 * Every backward kernel of mingpt/kernels/js.ts against central finite differences of its forward
 * twin, on small random shapes (1, 7 and odd sizes among them). The loss is L = Σ r ⊙ out for a
 * random r, so dout = r, and each input's analytic gradient must match (L(x + h) − L(x − h)) / 2h.
 *
 * In float64: the kernels' loops do their arithmetic in JavaScript numbers (doubles) whatever the
 * array type, so handed Float64Arrays they compute in float64 throughout, and the finite
 * differences are good to about 1e-9. (The arrays are typed Float32Array in the kernels'
 * signatures; `f64` below makes a Float64Array that passes for one.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  matmulForwardNaive, matmulBackward, geluForward, geluBackward, residualForward, residualBackward,
  softmaxRows, softmaxRowsBackward, layernormScale, layernormApply, layernormApplyBackward, layernormScaleBackward,
  layernormBackward, splitQKV, splitQKVBackward, attentionScoresForward, attentionScoresBackward,
  attentionValuesForward, attentionValuesBackward, crossEntropyForward, crossEntropyBackward,
} from '../mingpt/kernels/js.ts';
import { RNG } from '../mingpt/utils.ts';
import * as simd from '../mingpt/kernels/simd/backward.ts';
import { allocParams } from '../mingpt/kernels/index.ts';
import { simdSupport } from '../mingpt/kernels/simd/memory.ts';
import { oneThreadThenTwo } from './helpers.ts';

const rng = new RNG(2024);
/** a Float64Array typed as the kernels' Float32Array (see the note at the top) */
const f64 = (n: number) => new Float64Array(n) as unknown as Float32Array;
const randn = (n: number, scale = 1) => { const a = f64(n); for (let i = 0; i < n; i++) a[i] = scale * rng.randn(); return a; };
const H = 1e-6;
const TOL = 1e-6; // |analytic − numeric| / max(1, |numeric|): central differences in float64 are good to ~1e-9

/** L = Σ r ⊙ out over the finite entries of out (masked attention scores are −∞, constants) */
function dotFinite(r: Float32Array, out: Float32Array): number {
  let s = 0;
  for (let i = 0; i < out.length; i++) if (Number.isFinite(out[i])) s += r[i] * out[i];
  return s;
}

/** Compares grad with central differences of loss() with respect to every entry of x. */
function check(what: string, loss: () => number, x: Float32Array, grad: Float32Array): void {
  let worst = 0, at = -1;
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i];
    x[i] = x0 + H;
    const up = loss();
    x[i] = x0 - H;
    const down = loss();
    x[i] = x0;
    const numeric = (up - down) / (2 * H);
    const err = Math.abs(grad[i] - numeric) / Math.max(1, Math.abs(numeric));
    if (err > worst) { worst = err; at = i; }
  }
  assert.ok(worst <= TOL, `${what}: worst error ${worst.toExponential(2)} at ${at} (analytic ${grad[at]})`);
}

for (const [BT, C, OC] of [[1, 1, 1], [1, 7, 5], [3, 4, 7], [7, 5, 3]]) {
  test(`matmulBackward: dinp, dweight, dbias match finite differences (BT=${BT} C=${C} OC=${OC})`, () => {
    const inp = randn(BT * C), weight = randn(OC * C), bias = randn(OC), r = randn(BT * OC);
    const loss = () => { const out = f64(BT * OC); matmulForwardNaive(out, inp, weight, bias, BT, C, OC); return dotFinite(r, out); };
    // start from non-zero buffers: the kernel adds to them
    const base = randn(BT * C + OC * C + OC);
    const dinp = base.slice(0, BT * C), dweight = base.slice(BT * C, BT * C + OC * C), dbias = base.slice(BT * C + OC * C);
    matmulBackward(dinp, dweight, dbias, r, inp, weight, BT, C, OC);
    const minus = (a: Float32Array, b: Float32Array) => a.map((v, i) => v - b[i]);
    check('dinp', loss, inp, minus(dinp, base.slice(0, BT * C)));
    check('dweight', loss, weight, minus(dweight, base.slice(BT * C, BT * C + OC * C)));
    check('dbias', loss, bias, minus(dbias, base.slice(BT * C + OC * C)));
    // and each part alone, the others not wanted
    const only = f64(BT * C);
    matmulBackward(only, null, null, r, inp, weight, BT, C, OC);
    check('dinp alone', loss, inp, only);
  });
}

test('geluBackward matches finite differences, across the curve (−6 … 6)', () => {
  const N = 41, x = f64(N), r = randn(N);
  for (let i = 0; i < N; i++) x[i] = -6 + (12 * i) / (N - 1) + 0.01;
  const loss = () => { const out = f64(N); geluForward(out, x, N); return dotFinite(r, out); };
  const dx = f64(N);
  geluBackward(dx, x, r, N);
  check('dinp', loss, x, dx);
});

test('residualBackward passes the gradient to both terms', () => {
  const N = 9, a = randn(N), b = randn(N), r = randn(N);
  const loss = () => { const out = f64(N); residualForward(out, a, b, N); return dotFinite(r, out); };
  const da = f64(N), db = f64(N);
  residualBackward(da, db, r, N);
  check('dinp1', loss, a, da);
  check('dinp2', loss, b, db);
});

test('softmaxRowsBackward matches finite differences (rows of 1, 5 and 7)', () => {
  for (const n of [1, 5, 7]) {
    const rows = 3, x = randn(rows * n, 2), r = randn(rows * n);
    const loss = () => { const out = x.slice(); softmaxRows(out, rows, n); return dotFinite(r, out); };
    const out = x.slice();
    softmaxRows(out, rows, n);
    const dx = f64(rows * n);
    softmaxRowsBackward(dx, r, out, rows, n);
    check(`dinp n=${n}`, loss, x, dx);
  }
});

test('layernormApplyBackward: the input (scale held fixed), the scale, γ and β', () => {
  const BT = 4, C = 7, x = randn(BT * C, 2), g = randn(C), b = randn(C), r = randn(BT * C);
  const scale = f64(BT);
  layernormScale(scale, x, BT, C, 1e-5);
  const loss = () => { const out = f64(BT * C); layernormApply(out, x, scale, g, b, BT, C); return dotFinite(r, out); };
  const dx = f64(BT * C), ds = f64(BT), dg = f64(C), db = f64(C);
  layernormApplyBackward(dx, ds, dg, db, r, x, scale, g, BT, C);
  check('dinp', loss, x, dx);
  check('dscale', loss, scale, ds);
  check('dweight', loss, g, dg);
  check('dbias', loss, b, db);
});

test('layernormScaleBackward: the scale as a function of the input', () => {
  const BT = 3, C = 5, x = randn(BT * C, 2), r = randn(BT);
  const loss = () => { const s = f64(BT); layernormScale(s, x, BT, C, 1e-5); return dotFinite(r, s); };
  const s = f64(BT);
  layernormScale(s, x, BT, C, 1e-5);
  const dx = f64(BT * C);
  layernormScaleBackward(dx, r, x, s, BT, C);
  check('dinp', loss, x, dx);
});

test('layernormBackward: the whole layer norm (scale then apply) with respect to its input', () => {
  for (const C of [1, 2, 7]) {
    const BT = 3, x = randn(BT * C, 2), g = randn(C), b = randn(C), r = randn(BT * C);
    const loss = () => {
      const s = f64(BT), out = f64(BT * C);
      layernormScale(s, x, BT, C, 1e-5);
      layernormApply(out, x, s, g, b, BT, C);
      return dotFinite(r, out);
    };
    const s = f64(BT);
    layernormScale(s, x, BT, C, 1e-5);
    const dx = f64(BT * C), dg = f64(C), db = f64(C);
    layernormBackward(dx, dg, db, r, x, s, g, BT, C);
    check(`dinp C=${C}`, loss, x, dx);
    check(`dweight C=${C}`, loss, g, dg);
  }
});

test('splitQKVBackward puts each gradient back in its column block', () => {
  const BT = 3, C = 4, qkv = randn(BT * 3 * C), r = randn(3 * BT * C);
  const loss = () => {
    const q = f64(BT * C), k = f64(BT * C), v = f64(BT * C);
    splitQKV(q, k, v, qkv, BT, C);
    return dotFinite(r.subarray(0, BT * C), q) + dotFinite(r.subarray(BT * C, 2 * BT * C), k) + dotFinite(r.subarray(2 * BT * C), v);
  };
  const d = f64(BT * 3 * C);
  splitQKVBackward(d, r.subarray(0, BT * C), r.subarray(BT * C, 2 * BT * C), r.subarray(2 * BT * C), BT, C);
  check('dqkv', loss, qkv, d);
});

for (const [B, Tq, Tk, NH, hs] of [[1, 1, 1, 1, 1], [1, 5, 5, 2, 3], [2, 3, 3, 3, 2], [1, 2, 5, 2, 3]]) {
  const C = NH * hs;
  test(`attentionScoresBackward: dq, dk (B=${B} Tq=${Tq} Tk=${Tk} NH=${NH} hs=${hs}); the masked scores take no gradient`, () => {
    const q = randn(B * Tq * C), k = randn(B * Tk * C), r = randn(B * NH * Tq * Tk);
    const loss = () => { const att = f64(B * NH * Tq * Tk); attentionScoresForward(att, q, k, B, Tq, Tk, C, NH); return dotFinite(r, att); };
    const dq = f64(B * Tq * C), dk = f64(B * Tk * C);
    attentionScoresBackward(dq, dk, r, q, k, B, Tq, Tk, C, NH);
    check('dq', loss, q, dq);
    check('dk', loss, k, dk);
  });

  test(`attentionValuesBackward: datt (every key), dv (B=${B} Tq=${Tq} Tk=${Tk} NH=${NH} hs=${hs})`, () => {
    const att = randn(B * NH * Tq * Tk), v = randn(B * Tk * C), r = randn(B * Tq * C);
    const loss = () => { const z = f64(B * Tq * C); attentionValuesForward(z, att, v, B, Tq, Tk, C, NH); return dotFinite(r, z); };
    const datt = f64(att.length), dv = f64(v.length);
    attentionValuesBackward(datt, dv, r, att, v, B, Tq, Tk, C, NH);
    check('datt', loss, att, datt);
    check('dv', loss, v, dv);
  });
}

test('crossEntropyBackward: mean over the rows with a target, −1 rows get nothing', () => {
  const B = 2, T = 3, V = 7, logits = randn(B * T * V, 2);
  const targets = [[3, -1, 0], [6, 2, -1]];
  const loss = () => crossEntropyForward(logits, targets, B, T, V);
  const d = f64(B * T * V);
  crossEntropyBackward(d, logits, targets, B, T, V);
  check('dlogits', loss, logits, d);
  assert.equal(Array.from(d.subarray(V, 2 * V)), new Array(V).fill(0), 'an ignored row has gradient 0');
});

// -----------------------------------------------------------------------------------------------
// The SIMD twins against the readable loops above (float32 now: the twins work in float32 lanes).
// matmulBackward with the weights and the gradient buffer in a kernel memory (as the model keeps
// them) and outside any (copied in), on shapes whose columns are not whole vectors and a product
// too big for one scratch area (b copied in blocks of rows).

const maybe = simdSupport().module ? test : test.skip;
const rand32 = (n: number) => Float32Array.from({ length: n }, () => rng.randn());
/** in a kernel memory, as allocParams gives the model's weights and gradients */
const inMemory = (x: Float32Array) => { const y = allocParams(x.length); y.set(x); return y; };

/** |got − want| relative to the size of what was added up, |start| + Σ|terms|: float32 sums may be off by a few ulp of that */
function sumErr(got: Float32Array, want: Float32Array, scale: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / scale[i]);
  return worst;
}

for (const [BT, C, OC] of [[1, 1, 1], [1, 7, 65], [7, 65, 7], [3, 17, 33], [11, 96, 35], [2, 1100, 1030]]) {
  for (const where of ['in kernel memory', 'outside'] as const) {
    maybe(`simd matmulBackward = the loops (1e-5 of Σ|terms|): BT=${BT} C=${C} OC=${OC}, weights and gradients ${where}`, () => {
      const put = where === 'outside' ? (x: Float32Array) => x : inMemory;
      const inp = rand32(BT * C), w = put(rand32(OC * C)), dout = rand32(BT * OC);
      const start = rand32(BT * C + OC * C + OC); // the kernels add to what is there
      const want = [start.slice(0, BT * C), start.slice(BT * C, BT * C + OC * C), start.slice(BT * C + OC * C)];
      const got = [start.slice(0, BT * C), put(start.slice(BT * C, BT * C + OC * C)), start.slice(BT * C + OC * C)];
      matmulBackward(want[0], want[1], want[2], dout, inp, w, BT, C, OC);
      simd.matmulBackward(got[0], got[1], got[2], dout, inp, w, BT, C, OC);
      const abs = (x: Float32Array) => x.map(Math.abs);
      const sInp = abs(start.slice(0, BT * C)), sW = abs(start.slice(BT * C, BT * C + OC * C)), sB = abs(start.slice(BT * C + OC * C));
      matmulBackward(sInp, sW, sB, abs(dout), abs(inp), abs(w), BT, C, OC);
      assert.ok(sumErr(got[0], want[0], sInp) <= 1e-5, `dinp: ${sumErr(got[0], want[0], sInp)}`);
      assert.ok(sumErr(got[1], want[1], sW) <= 1e-5, `dweight: ${sumErr(got[1], want[1], sW)}`);
      assert.ok(sumErr(got[2], want[2], sB) <= 1e-6, `dbias: ${sumErr(got[2], want[2], sB)}`);
    });
  }
}

maybe('simd matmulBackward, dout with zero rows and a zero block of columns (a metric read at one position and two logits): = the loops; zero rows of dinp untouched', () => {
  const [BT, C, OC] = [6, 40, 700];
  const inp = rand32(BT * C), w = inMemory(rand32(OC * C)), dout = rand32(BT * OC), start = rand32(BT * C);
  for (const i of [1, 2, 4]) dout.fill(0, i * OC, (i + 1) * OC);
  for (let i = 0; i < BT; i++) dout.fill(0, i * OC, i * OC + 300); // the first 256-column block all zeros, the second in part
  const want = start.slice(), got = start.slice();
  matmulBackward(want, null, null, dout, inp, w, BT, C, OC);
  simd.matmulBackward(got, null, null, dout, inp, w, BT, C, OC);
  const abs = (x: Float32Array) => x.map(Math.abs), scale = abs(start);
  matmulBackward(scale, null, null, abs(dout), abs(inp), abs(w), BT, C, OC);
  assert.ok(sumErr(got, want, scale) <= 1e-5, `dinp: ${sumErr(got, want, scale)}`);
  for (const i of [1, 2, 4]) assert.equal(got.subarray(i * C, (i + 1) * C), start.subarray(i * C, (i + 1) * C), `row ${i}`);
  assert.ok(got.some((x, j) => x !== start[j]), 'the nonzero rows were added to');
});

maybe('simd matmulBackward: b\'s panels copied first (many rows of dout) or read in place (one row) give the same bits; = the loops', () => {
  // rows 4 KiB apart (N = 1024), two blocks of the sum (K = 300 > 256), the last columns not a
  // whole tile (1030 = 85 · 12 + 2 · 4 + 2), rows of dout and dinp that fill more than one
  // scratch area (300 · (8200 + 13) floats: two blocks of rows)
  for (const [BT, C, OC] of [[9, 1024, 300], [7, 1030, 13], [300, 13, 8200]]) {
    const inp = rand32(BT * C), w = inMemory(rand32(OC * C)), dout = rand32(BT * OC), start = rand32(BT * C);
    const all = start.slice(), oneByOne = start.slice(), want = start.slice();
    simd.matmulBackward(all, null, null, dout, inp, w, BT, C, OC);
    for (let i = 0; i < BT; i++)
      simd.matmulBackward(oneByOne.subarray(i * C, (i + 1) * C), null, null, dout.subarray(i * OC, (i + 1) * OC), inp.subarray(i * C, (i + 1) * C), w, 1, C, OC);
    assert.equal(all, oneByOne, `BT=${BT} C=${C} OC=${OC}`);
    matmulBackward(want, null, null, dout, inp, w, BT, C, OC);
    const abs = (x: Float32Array) => x.map(Math.abs), scale = abs(start);
    matmulBackward(scale, null, null, abs(dout), abs(inp), abs(w), BT, C, OC);
    assert.ok(sumErr(all, want, scale) <= 1e-5, `dinp: ${sumErr(all, want, scale)}`);
  }
});

maybe('simd layernormApplyBackward and layernormScaleBackward = the loops (1e-6 of the terms\' size), rows not whole vectors, a mean far from 0, added to what is there; with the parameters\' gradients the loops themselves', () => {
  for (const [BT, C] of [[1, 1], [3, 5], [2, 7], [5, 13], [4, 768]]) {
    const inp = Float32Array.from(rand32(BT * C), (v) => 40 + 3 * v), weight = rand32(C), dout = rand32(BT * C);
    const scale = new Float32Array(BT);
    layernormScale(scale, inp, BT, C, 1e-5);
    const start = rand32(BT * C), startS = rand32(BT), dscaleIn = rand32(BT);
    const want = [start.slice(), startS.slice()], got = [start.slice(), startS.slice()];
    layernormApplyBackward(want[0], want[1], null, null, dout, inp, scale, weight, BT, C);
    simd.layernormApplyBackward(got[0], got[1], null, null, dout, inp, scale, weight, BT, C);
    const wantS = start.slice(), gotS = start.slice();
    layernormScaleBackward(wantS, dscaleIn, inp, scale, BT, C);
    simd.layernormScaleBackward(gotS, dscaleIn, inp, scale, BT, C);
    // the size of each result's terms: |start| + Σ|dout·w| / scale (dinp), + Σ|dout·w·x̂| / scale (dscale), |dscale| · max|x − mean| / (C · scale)
    for (let i = 0; i < BT; i++) {
      let mean = 0, dxAbs = 0, dotAbs = 0, devMax = 0;
      for (let k = 0; k < C; k++) mean += inp[i * C + k] / C;
      for (let k = 0; k < C; k++) {
        const xhat = (inp[i * C + k] - mean) / scale[i], dx = Math.abs(dout[i * C + k] * weight[k]);
        dxAbs += dx;
        dotAbs += dx * Math.abs(xhat);
        devMax = Math.max(devMax, Math.abs(inp[i * C + k] - mean));
      }
      for (let k = 0; k < C; k++) {
        const j = i * C + k, size = Math.abs(start[j]) + (Math.abs(dout[j] * weight[k]) + dxAbs / C) / scale[i];
        assert.ok(Math.abs(got[0][j] - want[0][j]) <= 1e-6 * size, `apply dinp [${i}, ${k}] (BT=${BT} C=${C}): ${got[0][j]} vs ${want[0][j]}`);
        const sizeS = Math.abs(start[j]) + Math.abs(dscaleIn[i]) * devMax / (C * scale[i]);
        assert.ok(Math.abs(gotS[j] - wantS[j]) <= 1e-6 * sizeS, `scale dinp [${i}, ${k}] (BT=${BT} C=${C}): ${gotS[j]} vs ${wantS[j]}`);
      }
      assert.ok(Math.abs(got[1][i] - want[1][i]) <= 1e-6 * (Math.abs(startS[i]) + dotAbs / scale[i]), `dscale [${i}] (BT=${BT} C=${C}): ${got[1][i]} vs ${want[1][i]}`);
    }
    // the parameters' gradients wanted: the loops, so the very same numbers
    const [a, b] = [[start.slice(), startS.slice(), new Float32Array(C), new Float32Array(C)], [start.slice(), startS.slice(), new Float32Array(C), new Float32Array(C)]];
    layernormApplyBackward(a[0], a[1], a[2], a[3], dout, inp, scale, weight, BT, C);
    simd.layernormApplyBackward(b[0], b[1], b[2], b[3], dout, inp, scale, weight, BT, C);
    a.forEach((x, i) => assert.equal(b[i], x));
  }
});

maybe('simd geluBackward = the loops (1e-6 absolute on GELU\'s slope, at most 1.13), odd lengths, large and tiny inputs, added to what is there', () => {
  for (const N of [1, 3, 5, 4099]) {
    const x = Float32Array.from(rand32(N), (v, i) => (i % 7 === 0 ? v * 30 : v * 3)), dout = rand32(N), start = rand32(N);
    const want = start.slice(), got = start.slice();
    geluBackward(want, x, dout, N);
    simd.geluBackward(got, x, dout, N);
    let worst = 0;
    for (let i = 0; i < N; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(dout[i])));
    assert.ok(worst <= 1e-6, `N=${N}: ${worst}`);
  }
});

// (257 × 300: sums over more than one block of 256 keys; 1024 × 1024 with 4 heads: more than fit in the scratch at once, so heads go in groups)
for (const [B, Tq, Tk, NH, hs] of [[1, 1, 1, 1, 1], [2, 5, 5, 3, 7], [1, 3, 7, 2, 5], [1, 46, 46, 2, 64], [1, 257, 300, 3, 16], [1, 1024, 1024, 4, 16]]) {
  maybe(`simd attention backward (values, scores) = the loops (1e-5 of Σ|terms|): B=${B} Tq=${Tq} Tk=${Tk} NH=${NH} hs=${hs}`, () => {
    const C = NH * hs, abs = (x: Float32Array) => x.map(Math.abs);
    const q = rand32(B * Tq * C), k = rand32(B * Tk * C), v = rand32(B * Tk * C), dz = rand32(B * Tq * C), datt = rand32(B * NH * Tq * Tk);
    const att = new Float32Array(B * NH * Tq * Tk);
    attentionScoresForward(att, q, k, B, Tq, Tk, C, NH);
    softmaxRows(att, B * NH * Tq, Tk);
    const start = () => [rand32(B * NH * Tq * Tk), rand32(B * Tk * C), rand32(B * Tq * C), rand32(B * Tk * C)];
    const [a0, b0, c0, d0] = start();
    const want = [a0.slice(), b0.slice(), c0.slice(), d0.slice()], got = [a0.slice(), b0.slice(), c0.slice(), d0.slice()];
    const scale = [abs(a0), abs(b0), abs(c0), abs(d0)];
    attentionValuesBackward(want[0], want[1], dz, att, v, B, Tq, Tk, C, NH);
    simd.attentionValuesBackward(got[0], got[1], dz, att, v, B, Tq, Tk, C, NH);
    attentionValuesBackward(scale[0], scale[1], abs(dz), att, abs(v), B, Tq, Tk, C, NH);
    attentionScoresBackward(want[2], want[3], datt, q, k, B, Tq, Tk, C, NH);
    simd.attentionScoresBackward(got[2], got[3], datt, q, k, B, Tq, Tk, C, NH);
    attentionScoresBackward(scale[2], scale[3], abs(datt), abs(q), abs(k), B, Tq, Tk, C, NH);
    ['datt', 'dv', 'dq', 'dk'].forEach((what, i) => assert.ok(sumErr(got[i], want[i], scale[i]) <= 1e-5, `${what}: ${sumErr(got[i], want[i], scale[i])}`));
  });
}

maybe('kernel threads: one thread or two give the same bits (matmulBackward, the attention backward, the GELU\'s), and the helpers took items', async () => {
  // columns 774: the last item of a product ends in 4-column tiles and scalar columns; products of 30 and 12 MFLOP, so they are split
  const [BT, C, OC] = [65, 774, 300], [B, T, NH, hs] = [1, 300, 2, 64], CA = NH * hs;
  const inp = rand32(BT * C), w = inMemory(rand32(OC * C)), dout = rand32(BT * OC);
  const q = rand32(B * T * CA), k = rand32(B * T * CA), v = rand32(B * T * CA), dz = rand32(B * T * CA), datt = rand32(B * NH * T * T);
  const att = rand32(B * NH * T * T);
  const NG = 100_003, x = Float32Array.from(rand32(NG), (u) => 4 * u), dpost = rand32(NG), dpre0 = rand32(NG); // the GELU's: 4 MFLOP, split
  const run = () => {
    const dinp = new Float32Array(BT * C), dweight = allocParams(OC * C), dbias = new Float32Array(OC);
    simd.matmulBackward(dinp, dweight, dbias, dout, inp, w, BT, C, OC);
    const datt2 = new Float32Array(att.length), dv = new Float32Array(v.length), dq = new Float32Array(q.length), dk = new Float32Array(k.length);
    simd.attentionValuesBackward(datt2, dv, dz, att, v, B, T, T, CA, NH);
    simd.attentionScoresBackward(dq, dk, datt, q, k, B, T, T, CA, NH);
    const dpre = dpre0.slice();
    simd.geluBackward(dpre, x, dpost, NG);
    return [dinp, dweight, dbias, datt2, dv, dq, dk, dpre];
  };
  const [one, two] = await oneThreadThenTwo(run);
  one.forEach((a, i) => assert.ok(a.every((x, j) => Object.is(x, two[i][j])), `output ${i}`));
});

test.run();
