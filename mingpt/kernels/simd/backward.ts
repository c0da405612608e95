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
 * this thread's scratch area there: a block of b's rows, then blocks of a's and out's rows; out's
 * blocks are copied back after each product.
 *
 * The attention's backward kernels are products too, of one head at a time (its rows gathered
 * from the (T, NH, hs) layout, the results added back), through the same kernel; the GELU's
 * backward is its own kernel (gelu_backward in ./kernels_wasm.ts, beside the forward GELU).
 */
import { kernelMemoryOf, looseMemory, scratchOf, LOOSE_ACT_BYTES, LOOSE_WEIGHT_BYTES, type KernelMemory } from './memory.ts';
import { threadedMatmulAcc } from './threads.ts';

/** dinp += dout · weight, dweight += doutᵀ · inp, dbias += Σ rows of dout; null: not wanted. */
export function matmulBackward(
  dinp: Float32Array | null, dweight: Float32Array | null, dbias: Float32Array | null,
  dout: Float32Array, inp: Float32Array, weight: Float32Array, BT: number, C: number, OC: number,
): void {
  if (dinp) matmulAccumulate(dinp, dout, weight, BT, OC, C);
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

const inside = (km: KernelMemory, x: Float32Array) => x.buffer === km.buffer;
/** terms of the sum over k added up in one lane before they are added to out */
const K_BLOCK = 256;
/** byte offsets rounded up to 16 (a vector) */
const align = (x: number) => Math.ceil(x / 16) * 16;

/** out (M, N) += a (M, K) · b (K, N), all row-major. */
function matmulAccumulate(out: Float32Array, a: Float32Array, b: Float32Array, M: number, K: number, N: number): void {
  if (M <= 0 || K <= 0 || N <= 0) return;
  const home = kernelMemoryOf(b) ?? kernelMemoryOf(out);
  const slot = home ? scratchOf(home) : -1;
  const [km, scratch, bytes] = home && slot >= 0 ? [home, slot, home.slotBytes] : [looseMemory(), 0, LOOSE_WEIGHT_BYTES + LOOSE_ACT_BYTES];
  const f32 = km.f32;
  const bIn = inside(km, b), aIn = inside(km, a), outIn = inside(km, out);
  // the sum over k in blocks of at most K_BLOCK terms, each added to out as a whole (a float32 lane
  // summing 50257 terms of the vocabulary loses digits); b's rows of a block in place, or copied in
  const kc = Math.min(K, K_BLOCK, bIn ? K : Math.floor(bytes / 2 / (N * 4)));
  if (kc < 1) throw new Error(`matmulBackward: a row of ${N} floats does not fit in the ${bytes}-byte scratch area`);
  const bAt = scratch, aAt = bIn ? scratch : align(scratch + kc * N * 4);
  const perRow = (aIn ? 0 : kc * 4) + (outIn ? 0 : N * 4) + 32;
  const mb = Math.min(M, Math.floor((scratch + bytes - aAt) / perRow));
  if (mb < 1) throw new Error(`matmulBackward: one row does not fit in the ${bytes}-byte scratch area`);
  const oAt = align(aAt + (aIn ? 0 : mb * kc * 4));
  for (let k0 = 0; k0 < K; k0 += kc) {
    const kn = Math.min(kc, K - k0);
    let pb = b.byteOffset + k0 * N * 4;
    if (!bIn) {
      f32.set(b.subarray(k0 * N, (k0 + kn) * N), bAt >>> 2);
      pb = bAt;
    }
    for (let m0 = 0; m0 < M; m0 += mb) {
      const mn = Math.min(mb, M - m0);
      let pa = a.byteOffset + (m0 * K + k0) * 4, lda = K;
      if (!aIn) {
        for (let i = 0; i < mn; i++) f32.set(a.subarray((m0 + i) * K + k0, (m0 + i) * K + k0 + kn), (aAt >>> 2) + i * kn);
        pa = aAt;
        lda = kn;
      }
      let po = out.byteOffset + m0 * N * 4;
      if (!outIn) {
        f32.set(out.subarray(m0 * N, (m0 + mn) * N), oAt >>> 2);
        po = oAt;
      }
      threadedMatmulAcc(km, po, pa, pb, mn, kn, N, lda);
      if (!outIn) out.set(f32.subarray(oAt >>> 2, (oAt >>> 2) + mn * N), m0 * N);
    }
  }
}

/** dinp (N) += dout (N) · GELU'(inp (N)), through this thread's loose memory a block at a time. */
export function geluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, N: number): void {
  const km = looseMemory(), f32 = km.f32;
  const block = Math.floor((LOOSE_WEIGHT_BYTES + LOOSE_ACT_BYTES) / 4 / 3 / 4) * 4; // floats per array, whole vectors
  for (let i0 = 0; i0 < N; i0 += block) {
    const n = Math.min(block, N - i0);
    f32.set(inp.subarray(i0, i0 + n), 0);
    f32.set(dout.subarray(i0, i0 + n), block);
    f32.set(dinp.subarray(i0, i0 + n), 2 * block);
    km.exports.gelu_backward(2 * block * 4, 0, block * 4, Math.ceil(n / 4) * 4); // (the padding lanes are computed and dropped)
    dinp.set(f32.subarray(2 * block, 2 * block + n), i0);
  }
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
