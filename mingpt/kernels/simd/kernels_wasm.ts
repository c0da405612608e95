/**
 * The SIMD kernels, written with the little assembler in ./wasm.ts. Each is the same operation as
 * its twin in ../kernels.ts, on pointers (byte addresses) into one WebAssembly memory.
 *
 * matmul: out (BT, OC) = inp (BT, C) · weight (OC, C)ᵀ + bias (OC), for the output channels
 * o0 … o1-1 only (so that threads can share one product by channel ranges).
 *
 *   - Four lanes along k. Both inp and weight rows are contiguous along k (weights are (OC, C)),
 *     so one v128 load brings 4 consecutive k of a row, and one multiply-add does 4 products.
 *     Each output keeps 4 partial sums (one per lane) until the end of the row, then adds them
 *     up: (lane0 + lane1) + (lane2 + lane3), then the last C % 4 products one by one, then bias.
 *   - A register tile of 2 rows × 4 output channels: 8 accumulators, and per step along k 2 + 4
 *     loads for 8 multiply-adds (each loaded weight serves 2 rows, each input 4 channels). Two
 *     steps per loop turn (k advances by 8) to halve the loop overhead.
 *   - Every output, whichever tile computes it (2×4, the 1×4 of an odd last row, the 1×1 of the
 *     last OC % 4 channels), is the same sequence of operations, so its value does not depend on
 *     BT, on the channel range, or on how the work is split between threads: the same inputs
 *     give bit-identical outputs by every path.
 *   - `relaxed`: the multiply-add is f32x4.relaxed_madd (one fused instruction where the CPU has
 *     FMA); otherwise f32x4.mul then f32x4.add. Either way every tile uses the same one.
 *   - Why not more: each vector is loaded once into a local, because V8 does not merge repeated
 *     loads, and the loop is not unrolled, because V8 then hoists all the loads of the body to its
 *     top and spills registers (both measured: 15 and 32 GFLOP/s instead of about 50).
 */
import { Code, wasmModule } from './wasm.ts';
import { matmulAcc } from './backward_wasm.ts';

/** How much memory the module may be given, in 64 KiB pages: up to 4 GiB. */
export const MAX_PAGES = 65536;

function matmul(relaxed: boolean): Code {
  const RT = 2, NT = 4; // the register tile: rows × output channels
  const f = new Code('matmul', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [out, inp, w, bias, BT, C, OC, o0, o1] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const i = f.local('i32'), o = f.local('i32'), cnt = f.local('i32'), s = f.local('f32');
  const px = Array.from({ length: RT }, () => f.local('i32')); // the tile's input rows, advancing along k
  const pw = Array.from({ length: NT }, () => f.local('i32')); // its weight rows
  const acc = px.map(() => pw.map(() => f.local('v128'))); // acc[r][n]
  const rowBytes = f.local('i32'); // C · 4
  const vx = px.map(() => f.local('v128')), vw = pw.map(() => f.local('v128')); // one step's loaded vectors

  /** acc[r][n] += x_r · w_n for the 4 lanes at byte offset `off` from the row pointers */
  const step = (R: number, N: number, off: number) => {
    // each vector is loaded once into a local (V8 does not merge repeated loads)
    for (let r = 0; r < R; r++) f.get(px[r]).v128_load(off).set(vx[r]);
    for (let n = 0; n < N; n++) f.get(pw[n]).v128_load(off).set(vw[n]);
    for (let r = 0; r < R; r++) {
      for (let n = 0; n < N; n++) {
        if (relaxed) f.get(vx[r]).get(vw[n]).get(acc[r][n]).f32x4_relaxed_madd().set(acc[r][n]);
        else f.get(vx[r]).get(vw[n]).f32x4_mul().get(acc[r][n]).f32x4_add().set(acc[r][n]);
      }
    }
  };
  const advance = (R: number, N: number, bytes: number) => {
    for (let r = 0; r < R; r++) f.get(px[r]).i32(bytes).i32_add().set(px[r]);
    for (let n = 0; n < N; n++) f.get(pw[n]).i32(bytes).i32_add().set(pw[n]);
  };

  /** the R × N outputs at rows i…, channels o…: everything about one tile */
  const tile = (R: number, N: number) => {
    for (let r = 0; r < R; r++) f.get(inp).get(i).i32(r).i32_add().get(rowBytes).i32_mul().i32_add().set(px[r]);
    for (let n = 0; n < N; n++) f.get(w).get(o).i32(n).i32_add().get(rowBytes).i32_mul().i32_add().set(pw[n]);
    for (let r = 0; r < R; r++) for (let n = 0; n < N; n++) f.v128_zero().set(acc[r][n]);
    // C >> 2 steps of 4 lanes. (Not unrolled: V8 hoists all the loads of an unrolled body to
    // its top, runs out of the 16 vector registers and spills to the stack: 50 → 32 GFLOP/s.)
    f.get(C).i32(2).i32_shr_u().set(cnt);
    f.block().loop();
    f.get(cnt).i32_eqz().br_if(1);
    step(R, N, 0);
    advance(R, N, 16);
    f.get(cnt).i32(1).i32_sub().set(cnt);
    f.br(0).end().end();
    // finish each output: lane sum, the last C % 4 products, bias, store
    for (let r = 0; r < R; r++) {
      for (let n = 0; n < N; n++) {
        const a = acc[r][n];
        f.get(a).f32x4_extract_lane(0).get(a).f32x4_extract_lane(1).f32_add();
        f.get(a).f32x4_extract_lane(2).get(a).f32x4_extract_lane(3).f32_add();
        f.f32_add().set(s);
        for (let t = 0; t < 3; t++) { // C % 4 is at most 3: unrolled, each guarded
          f.get(C).i32(3).i32_and().i32(t).i32_gt_u().if_();
          f.get(s).get(px[r]).f32_load(4 * t).get(pw[n]).f32_load(4 * t).f32_mul().f32_add().set(s);
          f.end();
        }
        f.get(bias).if_();
        f.get(s).get(bias).get(o).i32(n).i32_add().i32(2).i32_shl().i32_add().f32_load().f32_add().set(s);
        f.end();
        // out[(i + r) · OC + o + n] = s
        f.get(out).get(i).i32(r).i32_add().get(OC).i32_mul().get(o).i32_add().i32(n).i32_add().i32(2).i32_shl().i32_add();
        f.get(s).f32_store();
      }
    }
  };

  f.get(C).i32(2).i32_shl().set(rowBytes);
  f.get(o0).set(o);
  // channels four at a time: rows two at a time, then an odd last row
  f.block().loop();
  f.get(o).i32(NT).i32_add().get(o1).i32_gt_u().br_if(1);
  f.i32(0).set(i);
  f.block().loop();
  f.get(i).i32(RT).i32_add().get(BT).i32_gt_u().br_if(1);
  tile(RT, NT);
  f.get(i).i32(RT).i32_add().set(i);
  f.br(0).end().end();
  for (let r = RT - 1; r >= 1; r--) { // the last BT % RT rows
    f.get(i).i32(r).i32_add().get(BT).i32_eq().if_();
    tile(r, NT);
    f.end();
  }
  f.get(o).i32(NT).i32_add().set(o);
  f.br(0).end().end();
  // the last OC % 4 channels one at a time
  f.block().loop();
  f.get(o).get(o1).i32_ge_u().br_if(1);
  f.i32(0).set(i);
  f.block().loop();
  f.get(i).get(BT).i32_ge_u().br_if(1);
  tile(1, 1);
  f.get(i).i32(1).i32_add().set(i);
  f.br(0).end().end();
  f.get(o).i32(1).i32_add().set(o);
  f.br(0).end().end();
  return f;
}

/**
 * e = e^t in four lanes, for t in [−87, 88] (locals n and r are scratch). WebAssembly has no exp:
 * t = n·ln 2 + r with n an integer and |r| ≤ ln2/2, e^r by a polynomial (Cephes' expf
 * coefficients, float32 accurate), 2ⁿ by writing n + 127 into a float's exponent bits.
 */
function exp4(f: Code, t: number, n: number, r: number, e: number): void {
  // n = round(t / ln 2), r = t − n·ln 2 (ln 2 in two parts, so r keeps its low bits)
  f.get(t).f32x4_const(Math.LOG2E).f32x4_mul().f32x4_nearest().set(n);
  f.get(t).get(n).f32x4_const(0.693359375).f32x4_mul().f32x4_sub().get(n).f32x4_const(-2.12194440e-4).f32x4_mul().f32x4_sub().set(r);
  // e^r = 1 + r + r²·P(r)
  f.f32x4_const(1.9875691500e-4).get(r).f32x4_mul().f32x4_const(1.3981999507e-3).f32x4_add();
  f.get(r).f32x4_mul().f32x4_const(8.3334519073e-3).f32x4_add();
  f.get(r).f32x4_mul().f32x4_const(4.1665795894e-2).f32x4_add();
  f.get(r).f32x4_mul().f32x4_const(1.6666665459e-1).f32x4_add();
  f.get(r).f32x4_mul().f32x4_const(5.0000001201e-1).f32x4_add();
  f.get(r).get(r).f32x4_mul().f32x4_mul().get(r).f32x4_add().f32x4_const(1).f32x4_add().set(e);
  // e^t = e^r · 2ⁿ, 2ⁿ's bits = (n + 127) << 23
  f.get(e).get(n).i32x4_trunc_sat_f32x4_s().i32(127).i32x4_splat().i32x4_add().i32(23).i32x4_shl().f32x4_mul().set(e);
}

/**
 * gelu: out (N) = GELU(inp (N)), N a multiple of 4 (the caller pads). GPT-2's tanh form,
 * 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³), rewritten with tanh(u) = 1 − 2/(e^{2u} + 1)
 * as x / (1 + e^{−2u}), four lanes at a time (e^t by exp4 above). t is clamped to [−87, 88],
 * where e^t is a normal float32 (the GELU is then x or 0 to float32).
 */
function gelu(): Code {
  const f = new Code('gelu', ['i32', 'i32', 'i32']);
  const [out, inp, N] = [0, 1, 2];
  const p = f.local('i32'), end = f.local('i32'), q = f.local('i32');
  const x = f.local('v128'), t = f.local('v128'), n = f.local('v128'), r = f.local('v128'), e = f.local('v128');
  f.get(inp).set(p).get(out).set(q);
  f.get(inp).get(N).i32(2).i32_shl().i32_add().set(end);
  f.block().loop();
  f.get(p).get(end).i32_ge_u().br_if(1);
  f.get(p).v128_load().set(x);
  // t = −2u = −2·√(2/π)·(x + 0.044715·x³), clamped
  f.get(x).get(x).f32x4_mul().get(x).f32x4_mul().f32x4_const(0.044715).f32x4_mul().get(x).f32x4_add();
  f.f32x4_const(-2 * Math.sqrt(2 / Math.PI)).f32x4_mul();
  f.f32x4_const(-87).f32x4_max().f32x4_const(88).f32x4_min().set(t);
  exp4(f, t, n, r, e);
  // out = x / (1 + e^t)
  f.get(q).get(x).get(e).f32x4_const(1).f32x4_add().f32x4_div().v128_store();
  f.get(p).i32(16).i32_add().set(p).get(q).i32(16).i32_add().set(q);
  f.br(0).end().end();
  return f;
}

/**
 * gelu_backward: dinp (N) += dout (N) · GELU'(inp (N)), N a multiple of 4 (the caller pads).
 * With e = e^{−2u} (clamped as in gelu) and h = 1 / (1 + e) = ½(1 + tanh u):
 * GELU'(x) = h + x · 2h²e · du/dx, du/dx = √(2/π)·(1 + 3·0.044715·x²).
 */
function geluBackward(): Code {
  const f = new Code('gelu_backward', ['i32', 'i32', 'i32', 'i32']);
  const [dinp, inp, dout, N] = [0, 1, 2, 3];
  const p = f.local('i32'), end = f.local('i32'), off = f.local('i32');
  const x = f.local('v128'), t = f.local('v128'), n = f.local('v128'), r = f.local('v128'), e = f.local('v128'), h = f.local('v128');
  f.i32(0).set(off);
  f.get(N).i32(2).i32_shl().set(end);
  f.block().loop();
  f.get(off).get(end).i32_ge_u().br_if(1);
  f.get(inp).get(off).i32_add().v128_load().set(x);
  f.get(x).get(x).f32x4_mul().get(x).f32x4_mul().f32x4_const(0.044715).f32x4_mul().get(x).f32x4_add();
  f.f32x4_const(-2 * Math.sqrt(2 / Math.PI)).f32x4_mul();
  f.f32x4_const(-87).f32x4_max().f32x4_const(88).f32x4_min().set(t);
  exp4(f, t, n, r, e);
  f.f32x4_const(1).get(e).f32x4_const(1).f32x4_add().f32x4_div().set(h); // h = 1 / (1 + e)
  // h + x · 2h²e · √(2/π)(1 + 3·0.044715·x²)
  f.get(x).get(x).f32x4_mul().f32x4_const(3 * 0.044715).f32x4_mul().f32x4_const(1).f32x4_add().f32x4_const(Math.sqrt(2 / Math.PI)).f32x4_mul();
  f.get(x).f32x4_mul().get(h).f32x4_mul().get(h).f32x4_mul().get(e).f32x4_mul().f32x4_const(2).f32x4_mul().get(h).f32x4_add();
  // dinp += dout · that
  f.get(dout).get(off).i32_add().v128_load().f32x4_mul();
  f.get(dinp).get(off).i32_add().set(p);
  f.get(p).v128_load().f32x4_add().set(x);
  f.get(p).get(x).v128_store();
  f.get(off).i32(16).i32_add().set(off);
  f.br(0).end().end();
  return f;
}

/** The module's bytes: every kernel, importing a shared memory of up to 4 GiB. */
export function kernelModuleBytes(relaxed: boolean): Uint8Array {
  return wasmModule([matmul(relaxed), gelu(), matmulAcc(relaxed), geluBackward()], { minPages: 0, maxPages: MAX_PAGES });
}
