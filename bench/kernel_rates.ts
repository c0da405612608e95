/**
 * The kernels' speed on the shapes GPT-2 small's forward pass uses, from 1 row to 1024: the
 * matmul with the weights where the model keeps them (a kernel memory from allocParams), and the
 * fused attention of one layer. GFLOP/s on one thread and on all kernel threads, and the plain
 * JavaScript kernel beside a few. Used by bench.ts.
 */
import os from 'node:os';
import { allocParams } from '../mingpt/kernels/index.ts';
import * as js from '../mingpt/kernels/js.ts';
import * as simd from '../mingpt/kernels/simd/kernels.ts';
import * as simdAttention from '../mingpt/kernels/simd/attention.ts';
import { kernelThreads, setKernelThreads } from '../mingpt/kernels/simd/threads.ts';
import { simdSupport } from '../mingpt/kernels/simd/memory.ts';
import { RNG } from '../mingpt/utils.ts';

interface KernelRate {
  what: string;
  size: string;
  /** GFLOP/s: SIMD on one thread, SIMD on every core, plain JavaScript (null: not timed) */
  simd1: number | null;
  simdAll: number | null;
  js: number | null;
}

interface Shape {
  what: string;
  size: string;
  flop: number;
  /** makes the inputs; returns the call for simd and for js */
  make(rng: RNG): { simd: () => void; js: () => void };
  timeJs: boolean;
}

const randn = (rng: RNG, n: number, scale = 1) => Float32Array.from({ length: n }, () => scale * rng.randn());

function matmulShape(what: string, BT: number, C: number, OC: number, timeJs = false): Shape {
  return {
    what, size: `${BT} × ${C} × ${OC}`, flop: 2 * BT * C * OC, timeJs,
    make(rng) {
      const w = allocParams(OC * C + OC); // weights then bias, where a model keeps them
      for (let i = 0; i < w.length; i++) w[i] = 0.02 * rng.randn();
      const weight = w.subarray(0, OC * C), bias = w.subarray(OC * C);
      const inp = randn(rng, BT * C), out = new Float32Array(BT * OC);
      return {
        simd: () => simd.matmulForward(out, inp, weight, bias, BT, C, OC),
        js: () => js.matmulForward(out, inp, weight, bias, BT, C, OC),
      };
    },
  };
}

function attentionShape(T: number, timeJs = false): Shape {
  const C = 768, NH = 12;
  return {
    what: `attention (fused), ${T} tokens`, size: `T ${T}, ${NH} heads`, flop: 4 * C * ((T * (T + 1)) / 2), timeJs,
    make(rng) {
      const q = randn(rng, T * C, 2), k = randn(rng, T * C), v = randn(rng, T * C), z = new Float32Array(T * C);
      return {
        simd: () => simdAttention.attentionForward(z, q, k, v, 1, T, T, C, NH),
        js: () => js.attentionForward(z, q, k, v, 1, T, T, C, NH),
      };
    },
  };
}

const SHAPES: Shape[] = [
  matmulShape('attn.c_attn, 11 tokens', 11, 768, 2304),
  matmulShape('mlp.c_fc, 11 tokens', 11, 768, 3072, true),
  matmulShape('mlp.c_proj, 11 tokens', 11, 3072, 768),
  matmulShape('lm_head, last token only', 1, 768, 50257),
  matmulShape('lm_head, 11 tokens', 11, 768, 50257),
  matmulShape('mlp.c_fc, a sweep batch of 55 rows', 55, 768, 3072, true),
  matmulShape('attn.c_attn, 128 tokens', 128, 768, 2304),
  matmulShape('mlp.c_fc, 128 tokens', 128, 768, 3072),
  matmulShape('lm_head, 128 tokens', 128, 768, 50257),
  matmulShape('mlp.c_fc, 1024 tokens', 1024, 768, 3072),
  matmulShape('mlp.c_proj, 1024 tokens', 1024, 3072, 768),
  matmulShape('lm_head, 1024 tokens', 1024, 768, 50257),
  attentionShape(11), attentionShape(128, true), attentionShape(512), attentionShape(1024),
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Best of up to `runs` timings of fn (stopping after about 2 s), in seconds. */
function best(runs: number, fn: () => void): number {
  let t = Infinity, spent = 0;
  for (let i = 0; i < runs && spent < 2000; i++) {
    const t0 = performance.now();
    fn();
    const dt = performance.now() - t0;
    t = Math.min(t, dt);
    spent += dt;
  }
  return t / 1000;
}

export async function kernelRates(runs: number): Promise<KernelRate[]> {
  const rng = new RNG(7);
  const haveSimd = simdSupport().module !== null;
  const saved = kernelThreads();
  const out: KernelRate[] = [];
  for (const shape of SHAPES) {
    const call = shape.make(rng);
    const gflops = (s: number) => shape.flop / s / 1e9;
    const r: KernelRate = { what: shape.what, size: shape.size, simd1: null, simdAll: null, js: null };
    if (haveSimd) {
      setKernelThreads(1);
      call.simd();
      r.simd1 = gflops(best(runs * 4, call.simd));
      setKernelThreads(os.availableParallelism());
      for (let i = 0; i < 5; i++) { // the helper threads start in the background
        call.simd();
        await sleep(5);
      }
      r.simdAll = gflops(best(runs * 4, call.simd));
    }
    if (shape.timeJs) {
      call.js();
      r.js = gflops(best(Math.min(runs, 3), call.js));
    }
    out.push(r);
  }
  setKernelThreads(saved);
  return out;
}
