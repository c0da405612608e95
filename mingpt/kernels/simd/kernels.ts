/**
 * The SIMD kernels with the signatures of ../kernels.ts: same arguments, same results to float32
 * rounding (1e-6 relative; the tests check them against the naive loops). ../backend.ts swaps
 * them in for their plain twins.
 *
 * matmulForward finds the memory the weights are in (./memory.ts), copies the activations into
 * this thread's scratch area there — in blocks of rows, so any BT fits — runs the WebAssembly
 * kernel (split by output channels over the kernel threads when the product is big, ./threads.ts)
 * and copies the result out. Arrays already in that memory are used where they are.
 */
import { kernelMemoryOf, looseMemory, scratchOf, LOOSE_ACT_BYTES, LOOSE_WEIGHT_BYTES, type KernelMemory } from './memory.ts';
import { threadedMatmul } from './threads.ts';

/** out (BT, OC) = inp (BT, C) · weight (OC, C)ᵀ + bias (OC) */
export function matmulForward(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null,
  BT: number, C: number, OC: number,
): void {
  if (BT <= 0 || OC <= 0) return;
  const km = kernelMemoryOf(weight);
  const scratch = km ? scratchOf(km) : -1;
  if (km && scratch >= 0) matmulInMemory(km, scratch, km.slotBytes, out, inp, weight.byteOffset, bias, BT, C, OC);
  else matmulLoose(out, inp, weight, bias, BT, C, OC);
}

const inside = (km: KernelMemory, a: Float32Array) => a.buffer === km.buffer;

/**
 * The product with the weights at byte `w` of km; the scratch area [scratch, scratch + bytes)
 * holds whatever else is not in km already: bias, then blocks of input and output rows.
 */
function matmulInMemory(
  km: KernelMemory, scratch: number, bytes: number,
  out: Float32Array, inp: Float32Array, w: number, bias: Float32Array | null, BT: number, C: number, OC: number,
): void {
  const f32 = km.f32;
  let free = scratch;
  let b = 0; // no bias
  if (bias) {
    if (inside(km, bias)) b = bias.byteOffset;
    else {
      b = free;
      f32.set(bias.subarray(0, OC), free >>> 2);
      free += align(OC * 4);
    }
  }
  const inpIn = inside(km, inp), outIn = inside(km, out);
  if (inpIn && outIn) {
    threadedMatmul(km, out.byteOffset, inp.byteOffset, w, b, BT, C, OC);
    return;
  }
  // blocks of rows: as many as fit in what is left of the scratch area
  const room = scratch + bytes - free;
  const perRow = (inpIn ? 0 : C * 4) + (outIn ? 0 : OC * 4) + 32;
  const rows = Math.min(BT, Math.floor(room / perRow));
  if (rows < 1) throw new Error(`matmulForward: one row of ${C} inputs and ${OC} outputs does not fit in the ${bytes}-byte scratch area`);
  const xAt = free, oAt = align(free + (inpIn ? 0 : rows * C * 4));
  for (let r0 = 0; r0 < BT; r0 += rows) {
    const n = Math.min(rows, BT - r0);
    let x = inp.byteOffset + r0 * C * 4, o = out.byteOffset + r0 * OC * 4;
    if (!inpIn) {
      f32.set(inp.subarray(r0 * C, (r0 + n) * C), xAt >>> 2);
      x = xAt;
    }
    if (!outIn) o = oAt;
    threadedMatmul(km, o, x, w, b, n, C, OC);
    if (!outIn) out.set(f32.subarray(oAt >>> 2, (oAt >>> 2) + n * OC), r0 * OC);
  }
}

/**
 * The same product when the weights are in no kernel memory: blocks of weight rows are copied
 * into this thread's loose memory one after the other, each used for every input row.
 */
function matmulLoose(
  out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null,
  BT: number, C: number, OC: number,
): void {
  const km = looseMemory(), f32 = km.f32;
  const block = Math.max(1, Math.min(OC, Math.floor(LOOSE_WEIGHT_BYTES / (C * 4))));
  if (block * C * 4 > LOOSE_WEIGHT_BYTES) throw new Error(`matmulForward: one weight row of ${C} floats does not fit in the kernel memory`);
  const partOut = block === OC ? out : new Float32Array(BT * block); // (BT, block) when OC is split
  for (let o0 = 0; o0 < OC; o0 += block) {
    const n = Math.min(block, OC - o0);
    f32.set(weight.subarray(o0 * C, (o0 + n) * C), 0);
    const target = block === OC ? out : partOut.subarray(0, BT * n);
    matmulInMemory(km, LOOSE_WEIGHT_BYTES, LOOSE_ACT_BYTES, target, inp, 0, bias ? bias.subarray(o0, o0 + n) : null, BT, C, n);
    if (target !== out) for (let i = 0; i < BT; i++) out.set(target.subarray(i * n, (i + 1) * n), i * OC + o0);
  }
}

/**
 * GPT-2's GELU over N values (in place allowed: out may be inp). Through this thread's loose
 * memory, a block at a time, padded to whole vectors of 4.
 */
export function geluForward(out: Float32Array, inp: Float32Array, N: number): void {
  const km = looseMemory(), f32 = km.f32;
  const block = LOOSE_ACT_BYTES / 4; // floats per block, a multiple of 4
  for (let i0 = 0; i0 < N; i0 += block) {
    const n = Math.min(block, N - i0);
    f32.set(inp.subarray(i0, i0 + n), LOOSE_WEIGHT_BYTES >>> 2);
    km.exports.gelu(LOOSE_WEIGHT_BYTES, LOOSE_WEIGHT_BYTES, Math.ceil(n / 4) * 4);
    out.set(f32.subarray(LOOSE_WEIGHT_BYTES >>> 2, (LOOSE_WEIGHT_BYTES >>> 2) + n), i0);
  }
}

/** byte offsets rounded up to 16 (a vector) */
const align = (x: number) => Math.ceil(x / 16) * 16; // (not `& ~15`: offsets may pass 2³¹)
