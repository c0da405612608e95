/**
 * Weight circuits: what a head can do, read from its weights alone (no forward pass), after
 * "A Mathematical Framework for Transformer Circuits" (Elhage et al., 2021).
 *
 * A head does two separate things. Its QK circuit W_QK = W_Q W_Kᵀ (C, C) scores how much a query
 * position wants to look at a key position: score = x_q W_QK x_kᵀ / √hs. Its OV circuit
 * W_OV = W_V W_O (C, C) says what it copies from the key position into the query's residual
 * stream: x_k W_OV. Both have rank ≤ hs, so both are FactoredMatrix objects. Everything below
 * reads them on processed weights by default (./weights.ts explains the processing).
 *
 *   copyingScores       eigenvalues of the full OV circuit W_E W_OV W_U: a head that copies the
 *                       token it attends to raises that same token's logit, so its circuit has
 *                       large positive eigenvalues; score = Σ Re λ / Σ |λ|, in [−1, 1]
 *   compositionScores   how much head B reads what an earlier head A writes:
 *                       ‖W_OV[A] R‖_F / (‖W_OV[A]‖_F ‖R‖_F) with R = W_QK[B] (Q-composition),
 *                       W_QK[B]ᵀ (K-composition), W_OV[B] (V-composition)
 *   positionalQK        W_pos W_QK W_posᵀ: which positions a head prefers from position alone
 *   neuronCosines       cos(W_in[:, n], W_out[n, :]): near −1, a neuron writes back minus what it
 *                       reads, i.e. it erases a direction ("memory management")
 *   tokenQK, ovOnTokens, virtualWeights
 *                       the same circuits restricted to the tokens of a text
 *
 * ANALYSIS.md, "Weight circuits", gives the exact definitions these follow.
 */
import { FactoredMatrix, dense, eigenvalues, matmul, matmulNT, matmulTN, transpose, type Dense } from './factored_matrix.ts';
import type { Weights } from './weights.ts';
import { layernormScale, matmulForward } from '../mingpt/kernels/index.ts';
import { headName, type HeadRef } from './heads.ts';

/** W_QK = W_Q W_Kᵀ (C, C), factored through the head dimension. */
export function qkCircuit(w: Weights, l: number, h: number): FactoredMatrix {
  // BEGIN TASK 4.2: a head's QK circuit
  const C = w.d_model, hs = w.d_head, hw = w.head(l, h);
  return new FactoredMatrix(dense(hw.W_Q, C, hs), transpose(dense(hw.W_K, C, hs)));
  // END TASK 4.2
}

/** W_OV = W_V W_O (C, C), factored through the head dimension. */
export function ovCircuit(w: Weights, l: number, h: number): FactoredMatrix {
  // BEGIN TASK 4.1: a head's OV circuit
  const C = w.d_model, hs = w.d_head, hw = w.head(l, h);
  return new FactoredMatrix(dense(hw.W_V, C, hs), dense(hw.W_O, hs, C));
  // END TASK 4.1
}

// -----------------------------------------------------------------------------------------------
// copying scores

/** Σ Re λ / Σ |λ| (0 when every eigenvalue is 0, e.g. a head that writes nothing). */
export function copyingScoreOf(ev: { re: Float64Array; im: Float64Array }): number {
  // BEGIN TASK 4.3: the copying score from the eigenvalues
  let re = 0, abs = 0;
  for (let i = 0; i < ev.re.length; i++) {
    re += ev.re[i];
    abs += Math.hypot(ev.re[i], ev.im[i]);
  }
  return abs > 0 ? re / abs : 0;
  // END TASK 4.3
}

/**
 * copying_score[l][h]. The full OV circuit W_E W_V W_O W_U (V × V) has the non-zero eigenvalues
 * of the hs × hs matrix W_O (W_U W_E) W_V; W_U W_E (C, C) is the same for every head, so it is
 * computed once (`G`, from Weights.W_U_W_E, may be passed in).
 */
export function copyingScores(w: Weights, G: Float64Array = w.W_U_W_E(), onLayer?: () => void): number[][] {
  const C = w.d_model, hs = w.d_head, nh = w.n_heads;
  // the big product, W_O G for all of a layer's heads at once, runs on the float32 matmul kernel
  // (it sums in doubles): out (nh·hs, C) = W_O stacked (nh·hs, C) · (Gᵀ)ᵀ
  const Gt = new Float32Array(C * C);
  for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) Gt[j * C + i] = G[i * C + j];
  const stacked = new Float32Array(nh * hs * C), OG = new Float32Array(nh * hs * C);
  const out: number[][] = [];
  for (let l = 0; l < w.n_layers; l++) {
    for (let h = 0; h < nh; h++) stacked.set(w.head(l, h).W_O, h * hs * C);
    matmulForward(OG, stacked, Gt, null, nh * hs, C, C);
    const row: number[] = [];
    for (let h = 0; h < nh; h++) {
      const og = dense(Float64Array.from(OG.subarray(h * hs * C, (h + 1) * hs * C)), hs, C); // W_O G (hs, C)
      const M = matmul(og, dense(w.head(l, h).W_V, C, hs)); // (hs, hs)
      row.push(copyingScoreOf(eigenvalues(M)));
    }
    out.push(row);
    onLayer?.();
  }
  return out;
}

// -----------------------------------------------------------------------------------------------
// composition scores

/**
 * ‖L R‖_F² = tr(Lᵀ L R Rᵀ) = ⟨Lᵀ L, R Rᵀ⟩: the inner product of two symmetric C × C matrices,
 * one that depends only on the writer A and one only on the reader B. Building each once and
 * taking C²/2 products per pair is far cheaper than multiplying through the head dimension for
 * each of the ~10⁴ pairs of GPT-2 small (see compositionScores).
 *
 * `symPacked` builds M G Mᵀ for M (C, hs) and a symmetric G (hs, hs), keeping the upper
 * triangle row by row: entry (i, j ≥ i) at i·C − i(i−1)/2 + (j − i). With `doubleOff`, the
 * off-diagonal entries are stored twice over, so that a plain dot product of a doubled packing
 * and a plain one is the full Frobenius inner product.
 */
export function symPacked(M: Float64Array, G: Float64Array, C: number, hs: number, doubleOff: boolean, out: Float64Array | Float32Array): void {
  // both products on the matmul kernel, float32 in (each entry is a sum of only hs products):
  // Z = M G (C, hs) (the kernel wants G transposed, and G is symmetric), then M Zᵀ (C, C)
  const M32 = Float32Array.from(M), Z = new Float32Array(C * hs);
  matmulForward(Z, M32, Float32Array.from(G), null, C, hs, hs);
  if (symScratch.length < C * C) symScratch = new Float32Array(C * C);
  const full = symScratch;
  matmulForward(full, M32, Z, null, C, hs, C);
  const off = doubleOff ? 2 : 1;
  let p = 0;
  for (let i = 0; i < C; i++) {
    const r = i * C;
    out[p++] = full[r + i];
    for (let j = i + 1; j < C; j++) out[p++] = off * full[r + j];
  }
}

/** Scratch for symPacked's C × C product, reused between calls. */
let symScratch = new Float32Array(0);

/** Trace of a packed symmetric matrix (its diagonal sits at the start of each packed row). */
function packedTrace(P: Float64Array | Float32Array, C: number): number {
  let t = 0, p = 0;
  for (let i = 0; i < C; i++) {
    t += P[p];
    p += C - i;
  }
  return t;
}

export type CompositionMode = 'q' | 'k' | 'v';
export const COMPOSITION_MODES: readonly CompositionMode[] = ['q', 'k', 'v'];
/** composition[mode][lA][hA][lB][hB], null where lA ≥ lB. */
export type Composition = Record<CompositionMode, (number | null)[][][][]>;

/**
 * Q-, K- and V-composition scores for every pair of heads A (layer lA) → B (layer lB > lA).
 * With L = W_OV[A] = W_V W_O:   Lᵀ L = W_Oᵀ (W_Vᵀ W_V) W_O;
 *   q: R = W_QK[B] = W_Q W_Kᵀ    R Rᵀ = W_Q (W_Kᵀ W_K) W_Qᵀ
 *   k: R = W_QK[B]ᵀ = W_K W_Qᵀ   R Rᵀ = W_K (W_Qᵀ W_Q) W_Kᵀ
 *   v: R = W_OV[B] = W_V W_O     R Rᵀ = W_V (W_O W_Oᵀ) W_Vᵀ
 * and ‖L‖² = tr(Lᵀ L), ‖R‖² = tr(R Rᵀ). Each symmetric C × C matrix costs C² hs / 2 multiply-adds,
 * each pair C² / 2: for GPT-2 small about 11 + 8 billion, instead of ~90 billion for multiplying
 * every pair through the head dimension.
 */
export function compositionScores(w: Weights, onLayer?: () => void): Composition {
  const L = w.n_layers, nh = w.n_heads, C = w.d_model, hs = w.d_head;
  const K = (C * (C + 1)) / 2;
  const gram = (a: Float64Array, rows: number, cols: number) => matmulTN(dense(a, rows, cols), dense(a, rows, cols)).data; // aᵀa
  const gramT = (a: Float64Array, rows: number, cols: number) => matmulNT(dense(a, rows, cols), dense(a, rows, cols)).data; // a aᵀ
  const result = {} as Composition;
  for (const m of COMPOSITION_MODES) result[m] = Array.from({ length: L }, () => Array.from({ length: nh }, () => Array.from({ length: L }, () => new Array<number | null>(nh).fill(null))));
  if (L < 2) return result;

  // The packed matrices are stored chunk by chunk ([chunk][matrix][KC]), so that the pair sums can
  // run on the matmul kernel one cache-sized chunk of each matrix at a time.
  const KC = 2048, nChunks = Math.ceil(K / KC);
  const nW = (L - 1) * nh, nR = 3 * nh;
  const writers = new Float32Array(nChunks * nW * KC); // Lᵀ L of every head of layers 0 … L−2, off-diagonals doubled
  const readers = new Float32Array(nChunks * nR * KC); // R Rᵀ of one layer's heads, modes q, k, v
  const scatter = (src: Float64Array, dst: Float32Array, rows: number, row: number) => {
    for (let c = 0; c < nChunks; c++) {
      const k0 = c * KC, n = Math.min(KC, K - k0), o = (c * rows + row) * KC;
      for (let k = 0; k < n; k++) dst[o + k] = src[k0 + k];
    }
  };
  const packed = new Float64Array(K);
  const writerNorm2 = new Float64Array(nW);
  for (let a = 0; a < nW; a++) {
    const hw = w.head(Math.floor(a / nh), a % nh);
    symPacked(transpose(dense(hw.W_O, hs, C)).data, gram(hw.W_V, C, hs), C, hs, true, packed);
    writerNorm2[a] = packedTrace(packed, C); // the diagonal is not doubled: this is tr(Lᵀ L)
    scatter(packed, writers, nW, a);
  }
  onLayer?.();

  const readerNorm2 = new Float64Array(nR);
  const part = new Float32Array(nR * nW), sums = new Float64Array(nR * nW);
  for (let lB = 1; lB < L; lB++) {
    for (let h = 0; h < nh; h++) {
      const hw = w.head(lB, h);
      const mats: Array<[Float64Array, Float64Array]> = [
        [hw.W_Q, gram(hw.W_K, C, hs)], // q
        [hw.W_K, gram(hw.W_Q, C, hs)], // k
        [hw.W_V, gramT(hw.W_O, hs, C)], // v
      ];
      mats.forEach(([M, G], mi) => {
        symPacked(M, G, C, hs, false, packed);
        readerNorm2[mi * nh + h] = packedTrace(packed, C);
        scatter(packed, readers, nR, mi * nh + h);
      });
    }
    // sums[r, a] = ⟨R Rᵀ of reader r, Lᵀ L of writer a⟩ for the writers of layers 0 … lB−1
    const nA = lB * nh;
    sums.fill(0);
    for (let c = 0; c < nChunks; c++) {
      matmulForward(part, readers.subarray(c * nR * KC, (c + 1) * nR * KC), writers.subarray(c * nW * KC, c * nW * KC + nA * KC), null, nR, KC, nA);
      for (let i = 0; i < nR * nA; i++) sums[i] += part[i];
    }
    for (let r = 0; r < nR; r++) {
      const mode = COMPOSITION_MODES[Math.floor(r / nh)], hB = r % nh;
      for (let a = 0; a < nA; a++) {
        const denom = Math.sqrt(writerNorm2[a] * readerNorm2[r]);
        result[mode][Math.floor(a / nh)][a % nh][lB][hB] = denom > 0 ? Math.sqrt(Math.max(0, sums[r * nA + a])) / denom : 0;
      }
    }
    onLayer?.();
  }
  return result;
}

/** The same score for one pair, straight from the factored matrices (the readable version). */
export function compositionScore(w: Weights, A: HeadRef, B: HeadRef, mode: CompositionMode): number {
  return compositionOf(ovCircuit(w, A.layer, A.head), { qk: qkCircuit(w, B.layer, B.head), ov: ovCircuit(w, B.layer, B.head) }, mode);
}

/** How much a reader (B's QK and OV circuits) reads what a writer's OV circuit `ovA` writes, by mode. */
export function compositionOf(ovA: FactoredMatrix, reader: { qk: FactoredMatrix; ov: FactoredMatrix }, mode: CompositionMode): number {
  // BEGIN TASK 4.4: the composition score
  const R = mode === 'q' ? reader.qk : mode === 'k' ? reader.qk.T : reader.ov;
  const denom = ovA.norm() * R.norm();
  return denom > 0 ? ovA.mulFactored(R).norm() / denom : 0;
  // END TASK 4.4
}

/**
 * A baseline for composition scores: the same score for random matrices of the same shapes
 * (W_V, W_O, W_Q, W_K with independent Gaussian entries). Returns its mean and standard
 * deviation over `samples` draws, so a student can tell a high score from a typical one.
 */
export function compositionBaseline(C: number, hs: number, samples: number, randn: () => number): { mean: number; std: number } {
  const rand = (r: number, c: number) => dense(Float64Array.from({ length: r * c }, randn), r, c);
  const vals: number[] = [];
  for (let s = 0; s < samples; s++) {
    const Lm = new FactoredMatrix(rand(C, hs), rand(hs, C));
    const R = new FactoredMatrix(rand(C, hs), transpose(rand(C, hs)));
    vals.push(Lm.mulFactored(R).norm() / (Lm.norm() * R.norm()));
  }
  const mean = vals.reduce((a, b) => a + b, 0) / samples;
  const std = Math.sqrt(vals.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, samples - 1));
  return { mean, std };
}

// -----------------------------------------------------------------------------------------------
// positional QK

/** W_pos[0:T] W_QK W_pos[0:T]ᵀ (T, T): query rows, key columns, no mask, no 1/√hs. */
export function positionalQK(w: Weights, l: number, h: number, T = Math.min(16, w.n_ctx)): number[][] {
  const C = w.d_model, hs = w.d_head, hw = w.head(l, h);
  const P = dense(w.W_pos().subarray(0, T * C), T, C);
  const q = matmul(P, dense(hw.W_Q, C, hs)), k = matmul(P, dense(hw.W_K, C, hs)); // (T, hs)
  const s = matmulNT(q, k).data;
  return Array.from({ length: T }, (_, i) => Array.from(s.subarray(i * T, (i + 1) * T)));
}

// -----------------------------------------------------------------------------------------------
// memory-management neurons

/** cos(W_in[:, n], W_out[n, :]) for every neuron of layer l; NaN for a neuron with a zero weight. */
export function neuronCosines(w: Weights, l: number): Float64Array {
  const C = w.d_model, D = w.d_mlp;
  const { W_in, W_out } = w.mlp(l); // (C, D), (D, C)
  const dot = new Float64Array(D), nIn = new Float64Array(D), nOut = new Float64Array(D);
  for (let c = 0; c < C; c++) {
    for (let n = 0; n < D; n++) {
      const a = W_in[c * D + n], b = W_out[n * C + c];
      dot[n] += a * b;
      nIn[n] += a * a;
      nOut[n] += b * b;
    }
  }
  const out = new Float64Array(D);
  for (let n = 0; n < D; n++) {
    const d = Math.sqrt(nIn[n] * nOut[n]);
    out[n] = d > 0 ? dot[n] / d : NaN;
  }
  return out;
}

// -----------------------------------------------------------------------------------------------
// circuits on the tokens of a text

/**
 * The OV circuit restricted to tokens: M[i][j] = W_E[src_i] W_OV W_U[:, dst_j], how much the head,
 * attending to a position holding token src_i, raises the logit of token dst_j (direct path only).
 */
export function ovOnTokens(w: Weights, l: number, h: number, src: readonly number[], dst: readonly number[]): number[][] {
  const C = w.d_model;
  const E = dense(w.W_E_rows(src), src.length, C);
  const U = dense(w.W_U_cols(dst), C, dst.length);
  const ov = ovCircuit(w, l, h);
  const left = ov.lmul(E); // (n, C) factored through hs
  return toRows(left.mul(U).AB());
}

export interface TokenQK {
  /** the head's real attention scores q·k/√hs on the text, (T, T), null above the diagonal */
  scores: (number | null)[][];
  /** the direct path from the embeddings, split: token·token, token·position (both ways), position·position */
  token_token: (number | null)[][];
  token_position: (number | null)[][];
  position_position: (number | null)[][];
  /** scores − the three parts: the biases, and (after layer 0) everything earlier layers wrote */
  rest: (number | null)[][];
}

/**
 * Head (l, h)'s query × key scores on a text, and their split. With processed weights a head's
 * query is exactly x W_Q / s + b_Q for the residual stream x entering the block and its layer-norm
 * scale s (the folded W_Q ignores x's mean), so for x = e + p + (what earlier layers wrote):
 *   score(i, j) = (x_i/s_i) W_QK (x_j/s_j)ᵀ / √hs + bias terms
 * and the embedding part of it splits into e·e, e·p + p·e and p·p. `residPre` is the residual
 * stream (T, C) entering block l, from a run of the model on `ids`.
 */
export function tokenQK(w: Weights, l: number, h: number, ids: readonly number[], residPre: Float32Array, eps: number): TokenQK {
  if (!w.processed) throw new Error('tokenQK splits the scores with processed weights (it relies on the folded layer norm)');
  const T = ids.length, C = w.d_model, hs = w.d_head, hw = w.head(l, h);
  const s = new Float32Array(T); // each position's layer-norm scale sqrt(var + eps), as the model computes it
  layernormScale(s, residPre, T, C, eps);
  const Wq = dense(hw.W_Q, C, hs), Wk = dense(hw.W_K, C, hs);
  const scaleRows = (x: Float64Array) => { for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) x[t * C + c] /= s[t]; return dense(x, T, C); };
  const E = scaleRows(w.W_E_rows(ids)); // (T, C), each row over its position's scale
  const P = scaleRows(Float64Array.from(w.W_pos().subarray(0, T * C)));
  const X = scaleRows(Float64Array.from(residPre));
  const proj = (x: Dense, W: Dense, b?: Float64Array) => {
    const y = matmul(x, W); // (T, hs)
    if (b) for (let t = 0; t < T; t++) for (let i = 0; i < hs; i++) y.data[t * hs + i] += b[i];
    return y;
  };
  const r = Math.sqrt(hs);
  const sc = (a: Dense, b: Dense) => matmulNT(a, b).data.map((v) => v / r);
  const real = sc(proj(X, Wq, hw.b_Q), proj(X, Wk, hw.b_K));
  const eq = proj(E, Wq), ek = proj(E, Wk), pq = proj(P, Wq), pk = proj(P, Wk);
  const tt = sc(eq, ek), tp1 = sc(eq, pk), tp2 = sc(pq, ek), pp = sc(pq, pk);
  const masked = (f: (k: number) => number) => Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => (j > i ? null : f(i * T + j))));
  return {
    scores: masked((k) => real[k]),
    token_token: masked((k) => tt[k]),
    token_position: masked((k) => tp1[k] + tp2[k]),
    position_position: masked((k) => pp[k]),
    rest: masked((k) => real[k] - tt[k] - tp1[k] - tp2[k] - pp[k]),
  };
}

export interface VirtualWeights {
  /** A's output read by B's query: (e_i W_OV[A]) W_QK[B] e_jᵀ — query token i moved by A, key token j */
  q: number[][];
  /** A's output read by B's key: e_i W_QK[B] (e_j W_OV[A])ᵀ — query token i, key token j moved by A */
  k: number[][];
  /** A's output read by B's values, to the logits: e_i W_OV[A] W_OV[B] W_U[:, j] */
  v: number[][];
}

/**
 * The virtual weights of the path A → B (the products W_OV[A] W_QK[B], W_QK[B] W_OV[A]ᵀ,
 * W_OV[A] W_OV[B]) shown on tokens: rows and columns are the given token ids, direct paths only.
 */
export function virtualWeights(w: Weights, A: HeadRef, B: HeadRef, ids: readonly number[]): VirtualWeights {
  if (A.layer >= B.layer) throw new Error(`virtual weights need A before B: ${headName(A)} is not in an earlier layer than ${headName(B)}`);
  const C = w.d_model, n = ids.length;
  const E = dense(w.W_E_rows(ids), n, C);
  const ovA = ovCircuit(w, A.layer, A.head), qkB = qkCircuit(w, B.layer, B.head), ovB = ovCircuit(w, B.layer, B.head);
  const Et = transpose(E);
  const moved = ovA.lmul(E); // (n, C): each token as A would write it
  const q = moved.mulFactored(qkB).mul(Et).AB();
  const k = qkB.lmul(E).mulFactored(moved.T).AB();
  const v = moved.mulFactored(ovB).mul(dense(w.W_U_cols(ids), C, n)).AB();
  return { q: toRows(q), k: toRows(k), v: toRows(v) };
}

function toRows(m: Dense): number[][] {
  return Array.from({ length: m.rows }, (_, i) => Array.from(m.data.subarray(i * m.cols, (i + 1) * m.cols)));
}
