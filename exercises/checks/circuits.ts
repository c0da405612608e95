/**
 * The weight-circuit tasks' checks (4.1–4.4), on the reference checkpoint's processed weights
 * (lens/weights.ts, TransformerLens's processing) against analysis.json's `circuits`. The products
 * the definitions name (W_V W_O, W_Q W_Kᵀ) are formed here from the weights themselves; the
 * composition check (4.4) builds its own circuits, so that it needs none of 4.1–4.2.
 */
import { Weights } from '../../lens/weights.ts';
import { FactoredMatrix, dense, eigenvalues, matmul, transpose, type Dense } from '../../lens/factored_matrix.ts';
import { COMPOSITION_MODES, compositionOf, copyingScoreOf, copyingScores, ovCircuit, qkCircuit } from '../../lens/circuits.ts';
import { Mismatch, expectGridNear, expectNear, fmt, near } from '../harness.ts';
import type { Context, TaskChecks } from '../context.ts';

/** A small model is checked whole; a big one (a key made from GPT-2, say) on a sample, so that a task stays well inside its time limit. */
const isSmall = (L: number, nh: number) => L * nh <= 48;
const sampleLayers = (L: number) => [...new Set([0, Math.floor(L / 2), L - 1])];

/** The heads to check: all of a small model; on a big one, every head of the first, middle and last layers. */
function headsToCheck(L: number, nh: number): [number, number][] {
  const layers = isSmall(L, nh) ? Array.from({ length: L }, (_, l) => l) : sampleLayers(L);
  return layers.flatMap((l) => Array.from({ length: nh }, (_, h) => [l, h] as [number, number]));
}

/** Fails unless `got` is a (C, C) product equal to `want` (C, C), entry by entry. */
function expectProduct(what: string, got: FactoredMatrix, want: Dense, wrongShape: string, hint: string, transposedHint?: string): void {
  if (got.rows !== want.rows || got.cols !== want.cols) throw new Mismatch(`${what}: ${want.rows} × ${want.cols}`, `${got.rows} × ${got.cols}`, wrongShape);
  const g = got.AB().data, w = want.data, n = want.rows;
  for (let i = 0; i < w.length; i++) {
    if (near(g[i], w[i], 1e-6)) continue;
    const r = Math.floor(i / n), col = i % n;
    const transposed = transposedHint && Array.from({ length: w.length }, (_, k) => k).every((k) => near(g[k], w[(k % n) * n + Math.floor(k / n)], 1e-6));
    throw new Mismatch(`${what}[${r}][${col}] = ${fmt(w[i])}`, fmt(g[i]), transposed ? transposedHint! : hint);
  }
}

function weights(c: Context): Weights {
  return new Weights(c.model(), true);
}

// -----------------------------------------------------------------------------------------------
// 4.1 OV

const task41: TaskChecks = async (t, c) => {
  const w = weights(c), C = w.d_model, hs = w.d_head;
  const heads = headsToCheck(w.n_layers, w.n_heads);
  const wrongOrder = `the OV circuit multiplied in the wrong order: W_O W_V is (${hs}, ${hs}); W_OV = W_V W_O is (${C}, ${C}), what a head reads (W_V) first`;
  await t.test('W_OV = W_V W_O, (C, C), for every head checked', () => {
    for (const [l, h] of heads) {
      const hw = w.head(l, h);
      expectProduct(`W_OV of ${l}.${h}`, ovCircuit(w, l, h), matmul(dense(hw.W_V, C, hs), dense(hw.W_O, hs, C)), wrongOrder, 'W_OV = W_V W_O, factored through the head dimension: FactoredMatrix(W_V (C, hs), W_O (hs, C))');
    }
  });
  await t.test("the copying scores its eigenvalues give (analysis.json circuits.copying_score)", () => {
    // the full OV circuit W_E W_OV W_U has the non-zero eigenvalues of B (W_U W_E) A for W_OV = A B
    const G = dense(w.W_U_W_E(), C, C);
    for (const [l, h] of heads) {
      const ov = ovCircuit(w, l, h);
      if (ov.rows !== C || ov.cols !== C) throw new Mismatch(`W_OV of ${l}.${h}: ${C} × ${C}`, `${ov.rows} × ${ov.cols}`, wrongOrder);
      const ev = eigenvalues(matmul(matmul(ov.B, G), ov.A));
      let re = 0, abs = 0;
      for (let i = 0; i < ev.re.length; i++) { re += ev.re[i]; abs += Math.hypot(ev.re[i], ev.im[i]); }
      expectNear(`copying score of ${l}.${h}`, abs > 0 ? re / abs : 0, c.ref.analysis.circuits.copying_score[l][h], 1e-3, 'W_OV must be the product W_V W_O of the processed weights');
    }
  });
};

// -----------------------------------------------------------------------------------------------
// 4.2 QK

const task42: TaskChecks = async (t, c) => {
  const w = weights(c), C = w.d_model, hs = w.d_head;
  const heads = headsToCheck(w.n_layers, w.n_heads);
  const transposed = 'the QK circuit is transposed: W_K W_Qᵀ. Queries are the rows: score = x_q W_QK x_kᵀ with W_QK = W_Q W_Kᵀ';
  await t.test('W_QK = W_Q W_Kᵀ, (C, C), for every head checked', () => {
    for (const [l, h] of heads) {
      const hw = w.head(l, h);
      expectProduct(`W_QK of ${l}.${h}`, qkCircuit(w, l, h), matmul(dense(hw.W_Q, C, hs), transpose(dense(hw.W_K, C, hs))),
        `W_QK is (${C}, ${C}): W_Q (C, hs) times W_Kᵀ (hs, C)`, 'W_QK = W_Q W_Kᵀ, factored through the head dimension', transposed);
    }
  });
  await t.test('W_pos W_QK W_posᵀ (analysis.json circuits.positional_qk)', () => {
    for (const [l, h] of heads) {
      const want = c.ref.analysis.circuits.positional_qk[l][h], T = want.length;
      const P = dense(w.W_pos().subarray(0, T * C), T, C);
      const got = qkCircuit(w, l, h).lmul(P).mul(transpose(P)).AB();
      const rows = Array.from({ length: T }, (_, i) => Array.from(got.data.subarray(i * T, (i + 1) * T)));
      const t2 = want.map((row, i) => row.map((_, j) => want[j][i]));
      expectGridNear(`positional QK of ${l}.${h}`, rows, want, 1e-3, 'query positions are rows, key positions columns: W_pos W_Q W_Kᵀ W_posᵀ', () => [{ values: t2.flat(), hint: transposed }]);
    }
  });
};

// -----------------------------------------------------------------------------------------------
// 4.3 copying score

const task43: TaskChecks = async (t, c) => {
  await t.test('eigenvalues written by hand', () => {
    const f = (re: number[], im: number[]) => copyingScoreOf({ re: Float64Array.from(re), im: Float64Array.from(im) });
    const cases: [string, number[], number[], number, string][] = [
      // (2 − 1 + 0.5) / (2 + 1 + 0.5) = 1.5 / 3.5
      ['λ = 2, −1, 0.5', [2, -1, 0.5], [0, 0, 0], 3 / 7, ''],
      // 1 ± i: Σ Re = 2, Σ |λ| = 2√2
      ['λ = 1 + i, 1 − i', [1, 1], [1, -1], 1 / Math.SQRT2, ''],
      ['λ = −3, 0', [-3, 0], [0, 0], -1, ''],
      ['λ = 0, 0 (a head that writes nothing)', [0, 0], [0, 0], 0, 'with every eigenvalue 0 the score is 0 (not NaN)'],
    ];
    for (const [what, re, im, want, hint] of cases) {
      const got = f(re, im);
      const sumRe = re.reduce((a, b) => a + b, 0);
      expectNear(`score for ${what}`, got, want, 1e-9, hint || (near(got, sumRe === 0 ? 0 : 1, 1e-9) && !near(want, 1, 1e-9)
        ? 'the score divides Σ Re λ by Σ |λ|, the moduli (Math.hypot(re, im)), not by Σ Re λ'
        : 'score = Σ Re λ / Σ |λ|'));
    }
  });
  await t.test('every head\'s copying score (analysis.json circuits.copying_score)', () => {
    expectGridNear('copying_score[layer][head]', copyingScores(weights(c)), c.ref.analysis.circuits.copying_score, 1e-3, 'score = Σ Re λ / Σ |λ| of the full OV circuit\'s eigenvalues');
  });
};

// -----------------------------------------------------------------------------------------------
// 4.4 composition

const task44: TaskChecks = async (t, c) => {
  const w = weights(c), C = w.d_model, hs = w.d_head, L = w.n_layers, nh = w.n_heads;
  const ref = c.ref.analysis.circuits.composition;
  // the circuits, as ANALYSIS.md defines them (W_OV = W_V W_O, W_QK = W_Q W_Kᵀ), built here
  const ov = (l: number, h: number) => { const hw = w.head(l, h); return new FactoredMatrix(dense(hw.W_V, C, hs), dense(hw.W_O, hs, C)); };
  const qk = (l: number, h: number) => { const hw = w.head(l, h); return new FactoredMatrix(dense(hw.W_Q, C, hs), transpose(dense(hw.W_K, C, hs))); };
  // every pair of a small model; on a big one, the first and last heads of the first, middle and last layers
  const layers = isSmall(L, nh) ? Array.from({ length: L }, (_, l) => l) : sampleLayers(L);
  const heads = isSmall(L, nh) ? Array.from({ length: nh }, (_, h) => h) : [0, nh - 1];
  await t.test('Q-, K- and V-composition of every pair checked (analysis.json circuits.composition)', () => {
    for (const lA of layers) for (const hA of heads) for (const lB of layers.filter((l) => l > lA)) for (const hB of heads) {
      const reader = { qk: qk(lB, hB), ov: ov(lB, hB) }, A = ov(lA, hA);
      for (const mode of COMPOSITION_MODES) {
        const got = compositionOf(A, reader, mode), want = ref[mode][lA][hA][lB][hB] as number;
        if (near(got, want, 1e-3)) continue;
        const hint = mode === 'k' && near(got, ref.q[lA][hA][lB][hB] as number, 1e-3)
          ? "that is Q-composition: K-composition reads A's output through B's keys, R = W_QKᵀ (the transpose)"
          : mode === 'q' && near(got, ref.k[lA][hA][lB][hB] as number, 1e-3) ? "that is K-composition: Q-composition uses R = W_QK itself"
            : `score = ‖W_OV[A] R‖_F / (‖W_OV[A]‖_F ‖R‖_F), R = W_QK (q), W_QKᵀ (k), W_OV[B] (v)`;
        expectNear(`${mode}-composition ${lA}.${hA} → ${lB}.${hB}`, got, want, 1e-3, hint);
      }
    }
  });
};

export const CHECKS: Record<string, TaskChecks> = { '4.1': task41, '4.2': task42, '4.3': task43, '4.4': task44 };
