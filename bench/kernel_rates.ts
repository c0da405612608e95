/**
 * The matmul kernel's speed on the shapes GPT-2 small's forward pass and patching sweep use,
 * with the weights where the model keeps them (a kernel memory from allocParams): GFLOP/s on one
 * thread and on all kernel threads, and the plain JavaScript kernel beside it. Used by bench.ts.
 */
import os from 'node:os';
import { allocParams } from '../mingpt/kernels/index.ts';
import * as js from '../mingpt/kernels/js.ts';
import * as simd from '../mingpt/kernels/simd/kernels.ts';
import { kernelThreads, setKernelThreads } from '../mingpt/kernels/simd/threads.ts';
import { simdSupport } from '../mingpt/kernels/simd/memory.ts';
import { RNG } from '../mingpt/utils.ts';

export interface KernelRate {
  what: string;
  BT: number;
  C: number;
  OC: number;
  /** GFLOP/s: SIMD on one thread, SIMD on every core, plain JavaScript (null: not timed) */
  simd1: number | null;
  simdAll: number | null;
  js: number | null;
}

const SHAPES: Array<[string, number, number, number, boolean]> = [
  // [what, BT, C, OC, time js too]
  ['attn.c_attn, 11 tokens', 11, 768, 2304, false],
  ['attn.c_proj, 11 tokens', 11, 768, 768, false],
  ['mlp.c_fc, 11 tokens', 11, 768, 3072, true],
  ['mlp.c_proj, 11 tokens', 11, 3072, 768, false],
  ['lm_head, 11 tokens', 11, 768, 50257, false],
  ['lm_head, last token only', 1, 768, 50257, false],
  ['mlp.c_fc, a sweep batch of 55 rows', 55, 768, 3072, true],
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Best of `runs` timings of fn, in seconds. */
function best(runs: number, fn: () => void): number {
  let t = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    t = Math.min(t, performance.now() - t0);
  }
  return t / 1000;
}

export async function kernelRates(runs: number): Promise<KernelRate[]> {
  const rng = new RNG(7);
  const haveSimd = simdSupport().module !== null;
  const saved = kernelThreads();
  const out: KernelRate[] = [];
  for (const [what, BT, C, OC, timeJs] of SHAPES) {
    const w = allocParams(OC * C + OC); // weights then bias, where a model keeps them
    for (let i = 0; i < w.length; i++) w[i] = 0.02 * rng.randn();
    const weight = w.subarray(0, OC * C), bias = w.subarray(OC * C);
    const inp = Float32Array.from({ length: BT * C }, () => rng.randn());
    const res = new Float32Array(BT * OC);
    const gflops = (s: number) => (2 * BT * C * OC) / s / 1e9;
    const r: KernelRate = { what, BT, C, OC, simd1: null, simdAll: null, js: null };
    if (haveSimd) {
      setKernelThreads(1);
      simd.matmulForward(res, inp, weight, bias, BT, C, OC);
      r.simd1 = gflops(best(runs * 4, () => simd.matmulForward(res, inp, weight, bias, BT, C, OC)));
      setKernelThreads(Math.max(1, os.availableParallelism()));
      for (let i = 0; i < 20; i++) { // the helper threads start in the background
        simd.matmulForward(res, inp, weight, bias, BT, C, OC);
        await sleep(2);
      }
      r.simdAll = gflops(best(runs * 4, () => simd.matmulForward(res, inp, weight, bias, BT, C, OC)));
    }
    if (timeJs) {
      js.matmulForward(res, inp, weight, bias, BT, C, OC);
      r.js = gflops(best(Math.min(runs, 3), () => js.matmulForward(res, inp, weight, bias, BT, C, OC)));
    }
    out.push(r);
  }
  setKernelThreads(saved);
  return out;
}
