/**
 * The SIMD twin of ../js.ts's matmulBackward: the same arguments, the same results to float32
 * rounding (the tests check one against the other). Both of its products go through the one
 * WebAssembly kernel matmul_acc (./backward_wasm.ts), out (M, N) += a (M, K) · b (K, N):
 *
 *   dinp (BT, C)    += dout (BT, OC) · weight (OC, C)     b = the weights, where they live
 *   dweight (OC, C) += doutᵀ (OC, BT) · inp (BT, C)      out = the gradient buffer, where it lives
 *
 * As for the forward product (./kernels.ts), the kernel runs in the memory that holds b (else the
 * one that holds out, else this thread's loose memory), and whatever is not in it is copied into
 * this thread's scratch area there: a block of b's rows, then blocks of a's and out's rows; out's
 * blocks are copied back after each product.
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
