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
 * products are shared among the kernel threads as one job of column ranges (./threads.ts), the
 * blocks of the sum done one after the other inside each item.
 *
 * The attention's backward kernels are products too, through the same kernel: each is one job
 * for all heads (an item per head), reading a head's columns of the (T, C) activations in place
 * and the (T, T) matrices transposed where the product needs them so; the GELU's and
 * the layer norm's backward are kernels of their own (gelu_backward, layernorm_apply_backward,
 * layernorm_scale_backward in ./wasm_rows.ts, beside their forward twins).
 */
import { kernelMemoryOf, slotScratch, workScratch } from './memory.ts';
import { inBlocks, ITEMS_PER_THREAD } from './kernels.ts';
import * as js from '../js.ts';
import { allocBytes, type Scratch } from './scratch.ts';
import { jobThreads, runJob } from './threads.ts';
import { ACC_JOB_ARGS, ACC_TILE_COLUMNS } from './backward_wasm.ts';

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
  const blocks = Math.ceil(K / kc), live = new Int32Array(blocks), liveAt = s.alloc(blocks); // which blocks of the sum to do
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
    // a block of a's columns that is all zeros adds nothing: the gradient of a metric that reads a
    // few logits is zero at all but a few of the vocabulary's 50257 (no need to stream its weights)
    let liveK = 0;
    for (let j = 0; j < blocks; j++) {
      const kn = Math.min(kc, K - j * kc);
      live[j] = zeroColumns(am, mn, K, j * kc, kn) ? 0 : 1;
      liveK += live[j] * kn;
    }
    if (bIn && liveK > 0) {
      // b in place: every block of the sum in one job
      s.km.i32.set(live, liveAt >>> 2);
      threadedMatmulAcc(s, po, pa, b.byteOffset, mn, K, N, K, kc, pack, liveK === K ? 0 : liveAt, liveK);
    } else if (!bIn) {
      // b copied in a block at a time, a job for each
      for (let j = 0, k0 = 0; j < blocks; j++, k0 += kc) {
        const kn = Math.min(kc, K - k0);
        if (!live[j]) continue;
        s.put(bBlock, b, k0 * N, kn * N);
        threadedMatmulAcc(s, po, pa + k0 * 4, bBlock, mn, kn, N, K, kn, pack, 0, kn);
      }
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
 * km.exports.matmul_acc over all N columns (byte addresses) and the sum's blocks of kBlock terms
 * (those flagged in the i32 words at `live`; 0: all of them), cut into column ranges for the
 * threads; each thread packs b's panels into its own part of `pack` (room for jobThreads() of
 * kBlock · ACC_TILE_COLUMNS floats) when a has enough rows for the copy to pay. liveK: the terms
 * of the sum done (for the split's flop count).
 */
function threadedMatmulAcc(
  s: Scratch, out: number, a: number, b: number, M: number, K: number, N: number, lda: number,
  kBlock: number, pack: number, live: number, liveK: number,
): void {
  const w = ACC_TILE_COLUMNS, chunk = Math.max(w, Math.ceil(N / (jobThreads() * ITEMS_PER_THREAD) / w) * w); // whole register tiles
  const packBytes = M >= PACK_ROWS ? allocBytes(kBlock * w) : 0;
  const args = accArgs({
    out, a, b, M, K, N, sam: lda, sak: 1, ldb: N, ldo: N, pack: packBytes && pack, packBytes, chunk, kBlock, live, outStep: 0, aStep: 0, bStep: 0,
  });
  runJob(s.km, 'matmul_acc_job', s.args(args), Math.ceil(N / chunk), 2 * M * liveK * N);
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
 * The attention's backward products, head by head: for each head h, out_h += a_h · b_h, all heads
 * in one job (./backward_wasm.ts's matmul_acc_job, items by head). Each operand is the byte
 * address of head 0's block in the scratch and the bytes from one head's to the next; a's element
 * (m, k) is sam · m + sak · k floats on (so a may be read transposed), b's and out's rows ld apart.
 */
interface HeadOperand { at: number; step: number; ld: number }
function headProducts(
  s: Scratch, heads: number, out: HeadOperand, a: { at: number; step: number; sam: number; sak: number }, b: HeadOperand,
  M: number, K: number, N: number,
): void {
  const w = ACC_TILE_COLUMNS, chunk = Math.max(w, Math.ceil((heads * N) / (jobThreads() * ITEMS_PER_THREAD) / w) * w);
  const kBlock = Math.min(K, K_BLOCK);
  const packBytes = M >= PACK_ROWS ? allocBytes(kBlock * w) : 0;
  const pack = packBytes ? s.alloc((jobThreads() * packBytes) / 4) : 0;
  const args = accArgs({
    out: out.at, a: a.at, b: b.at, M, K, N, sam: a.sam, sak: a.sak, ldb: b.ld, ldo: out.ld, pack, packBytes, chunk, kBlock, live: 0,
    outStep: out.step, aStep: a.step, bStep: b.step,
  });
  runJob(s.km, 'matmul_acc_job', s.args(args), heads * Math.ceil(N / chunk), 2 * heads * M * K * N);
  if (pack) s.release(pack);
}

/** matmul_acc_job's argument words, by name. */
function accArgs(a: Record<(typeof ACC_JOB_ARGS)[number], number>): number[] {
  return ACC_JOB_ARGS.map((name) => a[name]);
}

/** Heads per group: as many as fit in the scratch with `fixed` floats taken and `perHead` more for each (at least 1). */
function headGroup(s: Scratch, NH: number, fixed: number, perHead: number, what: string): number {
  const g = Math.min(NH, Math.floor((s.room - 4096 - 4 * fixed) / (4 * perHead + 64)));
  if (g < 1) throw new Error(`${what}: one head (${fixed + perHead} floats) does not fit in the ${s.room}-byte scratch area`);
  return g;
}

/**
 * The backward of attentionValuesForward (../js.ts has the loops), per head h:
 * datt_h (Tq, Tk) += dz_h (Tq, hs) · v_hᵀ (the forward product, dz's and v's heads made
 * contiguous first) and dv_h (Tk, hs) += att_hᵀ · dz_h (one job for a group of heads, att read
 * transposed). The heads go in groups when their (Tq, Tk) matrices do not all fit in the scratch.
 */
export function attentionValuesBackward(
  datt: Float32Array, dv: Float32Array, dz: Float32Array, att: Float32Array, v: Float32Array,
  B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const s = workScratch(), hs = C / NH, TT = Tq * Tk, ex = s.km.exports;
  const g = headGroup(s, NH, 3 * Tq * C + 3 * Tk * C, 3 * TT, 'attentionValuesBackward');
  for (let b = 0; b < B; b++) {
    const mark = s.mark();
    const dzp = s.copyIn(dz, b * Tq * C, Tq * C), vp = s.copyIn(v, b * Tk * C, Tk * C), dvp = s.copyIn(dv, b * Tk * C, Tk * C);
    const dzh = s.alloc(Tq * C), vh = s.alloc(Tk * C); // (NH, Tq, hs), (NH, Tk, hs)
    ex.split_heads(dzh, dzp, Tq, C, hs);
    ex.split_heads(vh, vp, Tk, C, hs);
    for (let h0 = 0; h0 < NH; h0 += g) {
      const n = Math.min(g, NH - h0), at = (b * NH + h0) * TT, group = s.mark();
      const attp = s.copyIn(att, at, n * TT), dattp = s.copyIn(datt, at, n * TT), prod = s.alloc(n * TT); // (n, Tq, Tk) each
      for (let h = 0; h < n; h++) ex.matmul(prod + 4 * h * TT, dzh + 4 * (h0 + h) * Tq * hs, vh + 4 * (h0 + h) * Tk * hs, 0, Tq, hs, Tk, 0, Tk);
      ex.residual(dattp, dattp, prod, n * TT); // (whole vectors: past the end, the scratch's padding)
      headProducts(s, n, { at: dvp + 4 * h0 * hs, step: 4 * hs, ld: C }, { at: attp, step: 4 * TT, sam: 1, sak: Tk }, { at: dzp + 4 * h0 * hs, step: 4 * hs, ld: C }, Tk, Tq, hs);
      s.copyOut(datt, at, dattp, n * TT);
      s.release(group);
    }
    s.copyOut(dv, b * Tk * C, dvp, Tk * C);
    s.release(mark);
  }
}

/**
 * The backward of attentionScoresForward: with ds the scores' gradient (masked entries taken as 0)
 * times 1/√hs, per head dq_h += ds · k_h and dk_h += dsᵀ · q_h, each one job for a group of heads.
 */
export function attentionScoresBackward(
  dq: Float32Array, dk: Float32Array, datt: Float32Array, q: Float32Array, k: Float32Array,
  B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const s = workScratch(), hs = C / NH, f = s.km.f32, TT = Tq * Tk, scale = 1 / Math.sqrt(hs);
  const g = headGroup(s, NH, 2 * Tq * C + 2 * Tk * C, TT, 'attentionScoresBackward');
  for (let b = 0; b < B; b++) {
    const mark = s.mark();
    const qp = s.copyIn(q, b * Tq * C, Tq * C), kp = s.copyIn(k, b * Tk * C, Tk * C);
    const dqp = s.copyIn(dq, b * Tq * C, Tq * C), dkp = s.copyIn(dk, b * Tk * C, Tk * C);
    for (let h0 = 0; h0 < NH; h0 += g) {
      const n = Math.min(g, NH - h0), group = s.mark();
      const ds = s.alloc(n * TT), o = ds >>> 2; // (n, Tq, Tk)
      for (let r = 0; r < n * Tq; r++) {
        const t = Tk - Tq + (r % Tq), from = (b * NH + h0) * TT + r * Tk; // row r's query sits at position t: keys after it are masked
        for (let t2 = 0; t2 < Tk; t2++) f[o + r * Tk + t2] = t2 <= t ? datt[from + t2] * scale : 0;
      }
      const cols = 4 * h0 * hs; // the group's first column, in bytes
      headProducts(s, n, { at: dqp + cols, step: 4 * hs, ld: C }, { at: ds, step: 4 * TT, sam: Tk, sak: 1 }, { at: kp + cols, step: 4 * hs, ld: C }, Tq, Tk, hs);
      headProducts(s, n, { at: dkp + cols, step: 4 * hs, ld: C }, { at: ds, step: 4 * TT, sam: 1, sak: Tk }, { at: qp + cols, step: 4 * hs, ld: C }, Tk, Tq, hs);
      s.release(group);
    }
    s.copyOut(dq, b * Tq * C, dqp, Tq * C);
    s.copyOut(dk, b * Tk * C, dkp, Tk * C);
    s.release(mark);
  }
}
