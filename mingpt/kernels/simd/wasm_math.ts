/**
 * Pieces of WebAssembly that several kernels share, emitted into the function being written
 * (./wasm.ts's Code), so that the same arithmetic is the same instructions wherever it appears:
 *
 *   exp4      e^t in four lanes (GELU, softmax)
 *   laneSum   (l0 + l1) + (l2 + l3): four partial sums added up, always in this order
 *   laneMax   the largest lane
 *   madd      a · b + acc, fused or not
 *   addAsDoubles, doubleSum   long sums (a softmax over a vocabulary, a layer norm's mean) kept in
 *             double precision, two f64 lanes for the low and the high half of each vector, as
 *             the plain kernels keep theirs in JavaScript's doubles
 *   rangeJob  a kernel over a range of output columns as a job of ./threads.ts (matmul, matmul_acc)
 */
import { Code } from './wasm.ts';

/** f32 on the stack: (v[0] + v[1]) + (v[2] + v[3]) of the v128 local v */
export function laneSum(f: Code, v: number): void {
  f.get(v).f32x4_extract_lane(0).get(v).f32x4_extract_lane(1).f32_add();
  f.get(v).f32x4_extract_lane(2).get(v).f32x4_extract_lane(3).f32_add();
  f.f32_add();
}

/** f32 on the stack: the largest of the four lanes of the v128 local v */
export function laneMax(f: Code, v: number): void {
  f.get(v).f32x4_extract_lane(0).get(v).f32x4_extract_lane(1).f32_max();
  f.get(v).f32x4_extract_lane(2).get(v).f32x4_extract_lane(3).f32_max();
  f.f32_max();
}

/** lo += the f32 lanes 0, 1 of the v128 local x as doubles, hi += its lanes 2, 3 */
export function addAsDoubles(f: Code, x: number, lo: number, hi: number): void {
  f.get(lo).get(x).f64x2_promote_low_f32x4().f64x2_add().set(lo);
  f.get(hi).get(x).get(x).shuffle32([2, 3, 2, 3]).f64x2_promote_low_f32x4().f64x2_add().set(hi);
}

/** f64 on the stack: (lo[0] + lo[1]) + (hi[0] + hi[1]) */
export function doubleSum(f: Code, lo: number, hi: number): void {
  f.get(lo).f64x2_extract_lane(0).get(lo).f64x2_extract_lane(1).f64_add();
  f.get(hi).f64x2_extract_lane(0).get(hi).f64x2_extract_lane(1).f64_add();
  f.f64_add();
}

/** acc ← a · b + acc in four lanes: one fused instruction with relaxed SIMD, else mul then add */
export function madd(f: Code, relaxed: boolean, a: number, b: number, acc: number): void {
  if (relaxed) f.get(a).get(b).get(acc).f32x4_relaxed_madd().set(acc);
  else f.get(a).get(b).f32x4_mul().get(acc).f32x4_add().set(acc);
}

/** Locals for exp4 (make them once per function). */
export interface ExpLocals { n: number; r: number }
export function expLocals(f: Code): ExpLocals {
  return { n: f.local('v128'), r: f.local('v128') };
}

/**
 * out = e^t in four lanes, for t in [−87, 88] (callers clamp or mask), where e^t is a normal
 * float32; NaN gives NaN. WebAssembly has no exp, so it is computed the usual way: t = n·ln 2 + r with n an
 * integer and |r| ≤ ln2/2, e^r by a polynomial (Cephes' expf coefficients, float32 accurate),
 * 2ⁿ by writing n + 127 into a float's exponent bits. `out` may be `t`.
 */
export function exp4(f: Code, t: number, out: number, { n, r }: ExpLocals): void {
  // n = round(t / ln 2), r = t − n·ln 2 (ln 2 in two parts, so r keeps its low bits)
  f.get(t).f32x4_const(Math.LOG2E).f32x4_mul().f32x4_nearest().set(n);
  f.get(t).get(n).f32x4_const(0.693359375).f32x4_mul().f32x4_sub().get(n).f32x4_const(-2.12194440e-4).f32x4_mul().f32x4_sub().set(r);
  // e^r = 1 + r + r²·P(r)
  f.f32x4_const(1.9875691500e-4).get(r).f32x4_mul().f32x4_const(1.3981999507e-3).f32x4_add();
  f.get(r).f32x4_mul().f32x4_const(8.3334519073e-3).f32x4_add();
  f.get(r).f32x4_mul().f32x4_const(4.1665795894e-2).f32x4_add();
  f.get(r).f32x4_mul().f32x4_const(1.6666665459e-1).f32x4_add();
  f.get(r).f32x4_mul().f32x4_const(5.0000001201e-1).f32x4_add();
  f.get(r).get(r).f32x4_mul().f32x4_mul().get(r).f32x4_add().f32x4_const(1).f32x4_add();
  // e^t = e^r · 2ⁿ, 2ⁿ's bits = (n + 127) << 23. n + 127 + 1.5·2²³ is a float whose low mantissa
  // bits are n + 127; shifting left by 23 drops the rest (cheaper than converting to integers)
  f.get(n).f32x4_const(12582912 + 127).f32x4_add().i32(23).i32x4_shl().f32x4_mul().set(out);
}

/**
 * A job for ./threads.ts, `name`(args, item, thread), that calls the kernel at `index` in the
 * module on one range of its output columns: with the `argc` i32 words at args, then
 * lo = item · chunk and hi = min(total, lo + chunk), where total is word `totalAt` of the
 * arguments and chunk the word after them. With `perThread`, that argument is the address of an
 * area each thread has its own part of: the kernel gets it + thread · (the word after the
 * arguments), and chunk is the word after that.
 */
export function rangeJob(name: string, index: number, argc: number, totalAt: number, perThread?: number): Code {
  const f = new Code(name, ['i32', 'i32', 'i32']);
  const [args, item, thread] = [0, 1, 2];
  const chunkAt = perThread === undefined ? argc : argc + 1;
  const lo = f.local('i32'), hi = f.local('i32'), total = f.local('i32');
  f.get(args).i32_load(4 * totalAt).set(total);
  f.get(item).get(args).i32_load(4 * chunkAt).i32_mul().set(lo);
  // hi = min(total, lo + chunk)
  f.get(lo).get(args).i32_load(4 * chunkAt).i32_add().set(hi);
  f.when(() => f.get(hi).get(total).i32_gt_u(), () => f.get(total).set(hi));
  for (let k = 0; k < argc; k++) {
    f.get(args).i32_load(4 * k);
    if (k === perThread) f.get(thread).get(args).i32_load(4 * argc).i32_mul().i32_add();
  }
  f.get(lo).get(hi).call(index);
  return f;
}
