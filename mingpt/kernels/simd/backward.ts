/**
 * The SIMD twins of the backward kernels of ../js.ts where the backward pass spends its time: the
 * same arguments, the same results to float32 rounding (the tests check them against the loops).
 *
 * matmulBackward's two products go through the one WebAssembly kernel matmul_acc
 * (./backward_wasm.ts), out (M, N) += a (M, K) · b (K, N):
 *
 *   dinp (BT, C)    += dout (BT, OC) · weight (OC, C)     b = the weights, where they live
 *   dweight (OC, C) += doutᵀ (OC, BT) · inp (BT, C)      out = the gradient buffer, where it lives
 *
 * As for the forward product (./kernels.ts), the kernel runs in the memory that holds b (else the
 * one that holds out, else this thread's loose memory), and whatever is not in it is copied into
 * this thread's scratch area there (./scratch.ts): a block of b's rows, then blocks of a's and
 * out's rows, copied once per block of rows; out's blocks are copied back after each. Big
 * products are shared among the kernel threads as a job of column ranges (./threads.ts).
 *
 * The attention's backward kernels are products too, of one head at a time (its rows gathered
 * from the (T, NH, hs) layout, the results added back), through the same kernel; the GELU's and
 * the layer norm's backward are kernels of their own (gelu_backward, layernorm_apply_backward,
 * layernorm_scale_backward in ./wasm_rows.ts, beside their forward twins).
 */
import { kernelMemoryOf, slotScratch, workScratch } from './memory.ts';
import { inBlocks, ITEMS_PER_THREAD } from './kernels.ts';
import * as js from '../js.ts';
import { allocBytes, type Scratch } from './scratch.ts';
import { jobThreads, runJob } from './threads.ts';
import { ACC_TILE_COLUMNS } from './backward_wasm.ts';

/** dinp += dout · weight, dweight += doutᵀ · inp, dbias += Σ rows of dout; null: not wanted. */
export function matmulBackward(
  dinp: Float32Array | null, dweight: Float32Array | null, dbias: Float32Array | null,
  dout: Float32Array, inp: Float32Array, weight: Float32Array, BT: number, C: number, OC: number,
): void {
  if (dinp) accumulateNonzeroRows(dinp, dout, weight, BT, OC, C);
  if (dweight) {
    const doutT = new Float32Array(OC * BT); // (OC, BT): the rows of the product are the output channels
    for (let i = 0; i < BT; i++) for (let o = 0; o < OC; o++) doutT[o * BT + i] = dout[i * OC + o];
    matmulAccumulate(dweight, doutT, inp, OC, BT, C);
  }
  if (dbias) {
    const sum = new Float64Array(OC);
    for (let i = 0; i < BT; i++) for (let o = 0; o < OC; o++) sum[o] += dout[i * OC + o];
    for (let o = 0; o < OC; o++) dbias[o] += sum[o];
  }
}

/**
 * out (M, N) += a (M, K) · b (K, N) over the rows of a that hold a nonzero only (a zero row adds
 * nothing). A metric read at one position has a gradient at that position only until the last
 * block's attention spreads it: the last block's MLP and output projection then do one row, not T.
 * The rows taken are gathered with out's rows, and out's rows put back: the same sums as in place.
 */
function accumulateNonzeroRows(out: Float32Array, a: Float32Array, b: Float32Array, M: number, K: number, N: number): void {
  const rows: number[] = [];
  for (let i = 0; i < M; i++) if (!isZero(a, i * K, K)) rows.push(i);
  if (rows.length === M) return matmulAccumulate(out, a, b, M, K, N);
  const R = rows.length, aR = new Float32Array(R * K), outR = new Float32Array(R * N); // (R, K), (R, N)
  rows.forEach((i, r) => {
    aR.set(a.subarray(i * K, (i + 1) * K), r * K);
    outR.set(out.subarray(i * N, (i + 1) * N), r * N);
  });
  matmulAccumulate(outR, aR, b, R, K, N);
  rows.forEach((i, r) => out.set(outR.subarray(r * N, (r + 1) * N), i * N));
}

/** x[at … at+n-1] are all zero */
function isZero(x: Float32Array, at: number, n: number): boolean {
  for (let j = at; j < at + n; j++) if (x[j] !== 0) return false;
  return true;
}

/** terms of the sum over k added up in one lane before they are added to out */
const K_BLOCK = 256;

/**
 * out (M, N) += a (M, K) · b (K, N), all row-major. Blocks of rows: each block's rows of a and of
 * out are copied in once (when not in the kernel memory already) and out's copied back once,
 * whatever the number of blocks of the sum.
 */
function matmulAccumulate(out: Float32Array, a: Float32Array, b: Float32Array, M: number, K: number, N: number): void {
  if (M <= 0 || K <= 0 || N <= 0) return;
  const home = kernelMemoryOf(b) ?? kernelMemoryOf(out);
  const s = (home && slotScratch(home)) ?? workScratch();
  const inside = (x: Float32Array) => x.buffer === s.km.buffer;
  const bIn = inside(b), aIn = inside(a), outIn = inside(out);
  // the sum over k in blocks of at most K_BLOCK terms, each added to out as a whole (a float32 lane
  // summing 50257 terms of the vocabulary loses digits); b's rows of a block in place, or copied
  // into at most half the scratch
  const kc = Math.min(K, K_BLOCK, bIn ? K : Math.floor((s.room / 2 - 32) / (N * 4)));
  if (kc < 1) throw new Error(`matmulBackward: a row of ${N} floats does not fit in the ${s.room}-byte scratch area`);
  const mark = s.mark();
  const bBlock = bIn ? 0 : s.alloc(kc * N);
  const pack = s.alloc(jobThreads() * allocBytes(kc * ACC_TILE_COLUMNS) / 4); // each thread's copy of a panel of b
  const perRow = (aIn ? 0 : K * 4) + (outIn ? 0 : N * 4);
  const mb = perRow === 0 ? M : Math.min(M, Math.floor((s.room - 64) / perRow));
  if (mb < 1) throw new Error(`matmulBackward: one row does not fit in the ${s.room}-byte scratch area`);
  const aBlock = aIn ? 0 : s.alloc(mb * K), oBlock = outIn ? 0 : s.alloc(mb * N);
  for (let m0 = 0; m0 < M; m0 += mb) {
    const mn = Math.min(mb, M - m0);
    const am = a.subarray(m0 * K, (m0 + mn) * K); // these rows of a
    if (!aIn) s.put(aBlock, a, m0 * K, mn * K);
    if (!outIn) s.put(oBlock, out, m0 * N, mn * N);
    const pa = aIn ? am.byteOffset : aBlock, po = outIn ? out.byteOffset + m0 * N * 4 : oBlock;
    for (let k0 = 0; k0 < K; k0 += kc) {
      const kn = Math.min(kc, K - k0);
      // a block of a's columns that is all zeros adds nothing: the gradient of a metric that reads a
      // few logits is zero at all but a few of the vocabulary's 50257 (no need to stream its weights)
      if (zeroColumns(am, mn, K, k0, kn)) continue;
      let pb = b.byteOffset + k0 * N * 4;
      if (!bIn) {
        s.put(bBlock, b, k0 * N, kn * N);
        pb = bBlock;
      }
      threadedMatmulAcc(s, po, pa + k0 * 4, pb, mn, kn, N, K, pack);
    }
    if (!outIn) s.copyOut(out, m0 * N, oBlock, mn * N);
  }
  s.release(mark);
}

/** a (M, K)'s columns k0 … k0+kn-1 are all zero */
function zeroColumns(a: Float32Array, M: number, K: number, k0: number, kn: number): boolean {
  for (let i = 0; i < M; i++) if (!isZero(a, i * K + k0, kn)) return false;
  return true;
}

/** Rows of a from which matmul_acc copies each panel of b's columns before use (see ./backward_wasm.ts). */
const PACK_ROWS = 6;

/**
 * km.exports.matmul_acc over all N columns (byte addresses), cut into column ranges for the
 * threads; each thread packs b's panels into its own part of `pack` (room for jobThreads() of
 * K · ACC_TILE_COLUMNS floats) when a has enough rows for the copy to pay.
 */
function threadedMatmulAcc(s: Scratch, out: number, a: number, b: number, M: number, K: number, N: number, lda: number, pack: number): void {
  const w = ACC_TILE_COLUMNS, chunk = Math.max(w, Math.ceil(N / (jobThreads() * ITEMS_PER_THREAD) / w) * w); // whole register tiles
  const packBytes = M >= PACK_ROWS ? allocBytes(K * w) : 0;
  runJob(s.km, 'matmul_acc_job', s.args([out, a, b, M, K, N, lda, packBytes && pack, packBytes, chunk]), Math.ceil(N / chunk), 2 * M * K * N);
}

/** dinp (N) += dout (N) · GELU'(inp (N)), in this thread's loose memory, a block at a time, shared among the threads when big. */
export function geluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, N: number): void {
  const s = workScratch();
  inBlocks(s, N, 3, (at, n) => {
    const x = s.copyIn(inp, at, n), d = s.copyIn(dout, at, n), g = s.copyIn(dinp, at, n);
    const n4 = Math.ceil(n / 4) * 4; // whole vectors: the padding lanes are computed and dropped
    const chunk = Math.max(4096, Math.ceil(n4 / (jobThreads() * ITEMS_PER_THREAD) / 4) * 4);
    runJob(s.km, 'gelu_backward_job', s.args([g, x, d, n4, chunk]), Math.ceil(n4 / chunk), 40 * n4);
    s.copyOut(dinp, at, g, n);
  });
}

/**
 * The backward of layernormApply without the parameters' gradients (an attribution's backward
 * pass), a block of rows at a time in this thread's loose memory; with them (training), the loops.
 */
export function layernormApplyBackward(
  dinp: Float32Array, dscale: Float32Array, dweight: Float32Array | null, dbias: Float32Array | null,
  dout: Float32Array, inp: Float32Array, scale: Float32Array, weight: Float32Array, BT: number, C: number,
): void {
  if (dweight || dbias) return js.layernormApplyBackward(dinp, dscale, dweight, dbias, dout, inp, scale, weight, BT, C);
  const s = workScratch();
  const w = s.copyIn(weight, 0, C);
  inBlocks(s, BT, 3 * C + 2, (at, n) => {
    const g = s.copyIn(dinp, at * C, n * C), ds = s.copyIn(dscale, at, n);
    s.km.exports.layernorm_apply_backward(g, ds, s.copyIn(dout, at * C, n * C), s.copyIn(inp, at * C, n * C), s.copyIn(scale, at, n), w, n, C);
    s.copyOut(dinp, at * C, g, n * C);
    s.copyOut(dscale, at, ds, n);
  });
}

/** The backward of layernormScale, a block of rows at a time in this thread's loose memory. */
export function layernormScaleBackward(dinp: Float32Array, dscale: Float32Array, inp: Float32Array, scale: Float32Array, BT: number, C: number): void {
  const s = workScratch();
  inBlocks(s, BT, 2 * C + 2, (at, n) => {
    const g = s.copyIn(dinp, at * C, n * C);
    s.km.exports.layernorm_scale_backward(g, s.copyIn(dscale, at, n), s.copyIn(inp, at * C, n * C), s.copyIn(scale, at, n), n, C);
    s.copyOut(dinp, at * C, g, n * C);
  });
}

/**
 * The backward of attentionValuesForward (../js.ts has the loops), head by head as two products:
 * datt_h (Tq, Tk) += dz_h (Tq, hs) · v_hᵀ, and dv_h (Tk, hs) += att_hᵀ · dz_h.
 */
export function attentionValuesBackward(
  datt: Float32Array, dv: Float32Array, dz: Float32Array, att: Float32Array, v: Float32Array,
  B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const hs = C / NH;
  const dzh = new Float32Array(Tq * hs), vT = new Float32Array(hs * Tk), attT = new Float32Array(Tk * Tq), dvh = new Float32Array(Tk * hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      gatherHead(dzh, dz, b, h, Tq, C, hs);
      for (let t = 0; t < Tk; t++) for (let c = 0; c < hs; c++) vT[c * Tk + t] = v[(b * Tk + t) * C + h * hs + c];
      const at = ((b * NH + h) * Tq) * Tk, att_h = att.subarray(at, at + Tq * Tk);
      matmulAccumulate(datt.subarray(at, at + Tq * Tk), dzh, vT, Tq, hs, Tk);
      for (let i = 0; i < Tq; i++) for (let t = 0; t < Tk; t++) attT[t * Tq + i] = att_h[i * Tk + t];
      dvh.fill(0);
      matmulAccumulate(dvh, attT, dzh, Tk, Tq, hs);
      scatterAddHead(dv, dvh, b, h, Tk, C, hs);
    }
  }
}

/**
 * The backward of attentionScoresForward, head by head as two products of the scores' gradient
 * (masked entries taken as 0) scaled by 1/√hs: dq_h += ds · k_h, dk_h += dsᵀ · q_h.
 */
export function attentionScoresBackward(
  dq: Float32Array, dk: Float32Array, datt: Float32Array, q: Float32Array, k: Float32Array,
  B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const hs = C / NH, scale = 1 / Math.sqrt(hs);
  const ds = new Float32Array(Tq * Tk), dsT = new Float32Array(Tk * Tq);
  const kh = new Float32Array(Tk * hs), qh = new Float32Array(Tq * hs), dqh = new Float32Array(Tq * hs), dkh = new Float32Array(Tk * hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const at = ((b * NH + h) * Tq) * Tk;
      for (let i = 0; i < Tq; i++) {
        const t = Tk - Tq + i; // the query's position: keys after it are masked
        for (let t2 = 0; t2 < Tk; t2++) {
          const g = t2 <= t ? datt[at + i * Tk + t2] * scale : 0;
          ds[i * Tk + t2] = g;
          dsT[t2 * Tq + i] = g;
        }
      }
      gatherHead(kh, k, b, h, Tk, C, hs);
      gatherHead(qh, q, b, h, Tq, C, hs);
      dqh.fill(0);
      matmulAccumulate(dqh, ds, kh, Tq, Tk, hs);
      scatterAddHead(dq, dqh, b, h, Tq, C, hs);
      dkh.fill(0);
      matmulAccumulate(dkh, dsT, qh, Tk, Tq, hs);
      scatterAddHead(dk, dkh, b, h, Tk, C, hs);
    }
  }
}

/** out (T, hs) = head h of x (B, T, NH, hs), batch row b */
function gatherHead(out: Float32Array, x: Float32Array, b: number, h: number, T: number, C: number, hs: number): void {
  for (let t = 0; t < T; t++) out.set(x.subarray((b * T + t) * C + h * hs, (b * T + t) * C + (h + 1) * hs), t * hs);
}

/** head h of x (B, T, NH, hs), batch row b, += d (T, hs) */
function scatterAddHead(x: Float32Array, d: Float32Array, b: number, h: number, T: number, C: number, hs: number): void {
  for (let t = 0; t < T; t++) {
    const o = (b * T + t) * C + h * hs;
    for (let c = 0; c < hs; c++) x[o + c] += d[t * hs + c];
  }
}
