/**
 * The SIMD kernel of the backward pass's products, written with the assembler in ./wasm.ts beside
 * the forward ones (./kernels_wasm.ts lists them all), on pointers (byte addresses) into one
 * WebAssembly memory.
 *
 * matmul_acc: out (M, N) += a (M, K) · b (K, N), for the columns n0 … n1-1 only (so that threads
 * can share a product by column ranges). a's rows are `lda` floats apart (it may be a block of
 * columns of a wider matrix); out and b are row-major with rows N floats long.
 *
 * Both products of the matmul's backward have this shape, with the long axis of the weights last:
 *   dinp (BT, C)    += dout (BT, OC) · weight (OC, C)
 *   dweight (OC, C) += doutᵀ (OC, BT) · inp (BT, C)
 * so the four lanes run along N, where out and b are contiguous: one v128 load brings 4 columns
 * of a row of b, and a's number is splat to all lanes. (The forward kernel's lanes run along its
 * sum instead, which is contiguous there.)
 *
 *   - A register tile of 3 rows × 12 columns (3 vectors): 9 accumulators, 3 vectors of b and one
 *     splat of a, 13 of the 16 vector registers V8 uses on x64; per step along k 3 vector loads
 *     and 3 splat loads (v128.load32_splat) for 9 multiply-adds. (2 × 16 does 8 for 6 loads and
 *     ran 10-15% slower at 46 and 256 rows; 4 × 8 and larger tiles slower still, spilling.)
 *   - Columns 12 at a time are the outer loop, rows the inner one: the 12-column panel of b
 *     (K rows of 48 bytes, 12 KiB for the wrapper's blocks of K = 256) stays in L1 while every
 *     row tile passes. Given a `pack` area (K · 48 bytes), the panel is first copied there, its
 *     rows one after the other: in place its rows are N · 4 bytes apart, and when that is a
 *     multiple of 4 KiB (N = 3072: the MLP's c_proj, dinp += dout · W) all K of them fall in the
 *     same few sets of the L1 cache and evict each other (46 rows, one thread: 32 GFLOP/s in place,
 *     57 packed, the forward product 56-63; measured).
 *     The copy is K · 3 loads and stores per panel against the tiles' M · K · 2, so a caller
 *     packs when M is more than a few rows (pack 0: read b in place).
 *   - Each output's sum over k runs in order, k = 0 … K−1, in one lane, whichever tile computes it
 *     (3 × 12, 2 × 12 and 1 × 12 for the last M % 3 rows, the same over 4 columns for the last
 *     N % 12, a scalar loop for the last N % 4): the same inputs give the same outputs however the
 *     work is split.
 *   - `relaxed`: f32x4.relaxed_madd where available (one fused instruction), else mul then add, as
 *     the forward kernel chooses (./wasm_math.ts's madd); the scalar columns use mul then add.
 *
 * matmul_acc_job(args, item, thread) is the same product as a job for ./threads.ts: args points at
 * [out, a, b, M, K, N, lda, pack, packBytes, chunk] (i32 words) and item j does columns
 * j·chunk … +chunk, packing at pack + thread · packBytes (each thread its own area).
 */
import { Code } from './wasm.ts';
import { madd, rangeJob } from './wasm_math.ts';

/** Columns of matmul_acc's register tile: threads share a product in whole multiples of it. */
export const ACC_TILE_COLUMNS = 12;

export function matmulAcc(relaxed: boolean): Code {
  const RT = 3, NV = ACC_TILE_COLUMNS / 4; // the register tile: rows × vectors of 4 columns
  const f = new Code('matmul_acc', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [out, a, b, M, K, N, lda, pack, n0, n1] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const m = f.local('i32'), n = f.local('i32'), cnt = f.local('i32'), s = f.local('f32'), po = f.local('i32');
  const pa = Array.from({ length: RT }, () => f.local('i32')); // the tile's rows of a, advancing along k
  const pb = f.local('i32'); // b at row k, the tile's first column
  const acc = pa.map(() => Array.from({ length: NV }, () => f.local('v128'))); // acc[r][v]
  const va = f.local('v128'), vb = Array.from({ length: NV }, () => f.local('v128'));
  const rowA = f.local('i32'), rowB = f.local('i32'); // lda · 4, N · 4
  const panel = f.local('i32'), step = f.local('i32'); // the current columns' row 0 of b (in place or packed), and its rows' distance

  /** the R × (4·V) outputs at rows m…, columns n… */
  const tile = (R: number, V: number) => {
    for (let r = 0; r < R; r++) f.get(a).get(m).i32(r).i32_add().get(rowA).i32_mul().i32_add().set(pa[r]);
    f.get(panel).set(pb);
    for (let r = 0; r < R; r++) for (let v = 0; v < V; v++) f.v128_zero().set(acc[r][v]);
    f.get(K).set(cnt);
    f.while_(() => f.get(cnt), () => {
      // each vector of b loaded once into a local (V8 does not merge repeated loads); a's numbers one at a time, splat
      for (let v = 0; v < V; v++) f.get(pb).v128_load(16 * v).set(vb[v]);
      for (let r = 0; r < R; r++) {
        f.get(pa[r]).v128_load32_splat().set(va);
        for (let v = 0; v < V; v++) madd(f, relaxed, va, vb[v], acc[r][v]);
      }
      for (let r = 0; r < R; r++) f.get(pa[r]).i32(4).i32_add().set(pa[r]);
      f.get(pb).get(step).i32_add().set(pb);
      f.get(cnt).i32(1).i32_sub().set(cnt);
    });
    // out[m + r, n + 4v …] += acc[r][v]
    for (let r = 0; r < R; r++) {
      f.get(out).get(m).i32(r).i32_add().get(N).i32_mul().get(n).i32_add().i32(2).i32_shl().i32_add().set(po);
      for (let v = 0; v < V; v++) f.get(po).get(po).v128_load(16 * v).get(acc[r][v]).f32x4_add().v128_store(16 * v);
    }
  };

  /** b's columns n … n + 4·V − 1 read in place */
  const inPlace = () => {
    f.get(b).get(n).i32(2).i32_shl().i32_add().set(panel);
    f.get(rowB).set(step);
  };
  /** the same columns copied to `pack`, row after row (16 · V bytes apart) */
  const packed = (V: number) => {
    f.get(b).get(n).i32(2).i32_shl().i32_add().set(pb);
    f.get(pack).set(po);
    f.get(K).set(cnt);
    f.while_(() => f.get(cnt), () => {
      for (let v = 0; v < V; v++) f.get(po).get(pb).v128_load(16 * v).v128_store(16 * v);
      f.get(pb).get(rowB).i32_add().set(pb);
      f.get(po).i32(16 * V).i32_add().set(po);
      f.get(cnt).i32(1).i32_sub().set(cnt);
    });
    f.get(pack).set(panel);
    f.i32(16 * V).set(step);
  };

  /** every row at the current columns, tiles of RT rows then the last M % RT rows */
  const rows = (V: number) => {
    f.i32(0).set(m);
    f.while_(() => f.get(m).i32(RT).i32_add().get(M).i32_le_u(), () => {
      tile(RT, V);
      f.get(m).i32(RT).i32_add().set(m);
    });
    for (let R = RT - 1; R >= 1; R--) f.when(() => f.get(M).get(m).i32_sub().i32(R).i32_sub().i32_eqz(), () => tile(R, V));
  };

  /** columns `width` at a time while they fit before n1 */
  const columns = (width: number, body: () => void) => {
    f.while_(() => f.get(n).i32(width).i32_add().get(n1).i32_le_u(), () => {
      body();
      f.get(n).i32(width).i32_add().set(n);
    });
  };

  f.get(lda).i32(2).i32_shl().set(rowA);
  f.get(N).i32(2).i32_shl().set(rowB);
  f.get(n0).set(n);
  columns(4 * NV, () => {
    f.get(pack).if_();
    packed(NV);
    f.else_();
    inPlace();
    f.end();
    rows(NV);
  });
  columns(4, () => {
    inPlace();
    rows(1);
  });
  // the last N % 4 columns one at a time, scalar
  columns(1, () => {
    f.i32(0).set(m);
    f.while_(() => f.get(m).get(M).i32_lt_u(), () => {
      f.get(a).get(m).get(rowA).i32_mul().i32_add().set(pa[0]);
      f.get(b).get(n).i32(2).i32_shl().i32_add().set(pb);
      f.f32(0).set(s);
      f.get(K).set(cnt);
      f.while_(() => f.get(cnt), () => {
        f.get(s).get(pa[0]).f32_load().get(pb).f32_load().f32_mul().f32_add().set(s);
        f.get(pa[0]).i32(4).i32_add().set(pa[0]);
        f.get(pb).get(rowB).i32_add().set(pb);
        f.get(cnt).i32(1).i32_sub().set(cnt);
      });
      f.get(out).get(m).get(N).i32_mul().get(n).i32_add().i32(2).i32_shl().i32_add().set(po);
      f.get(po).get(po).f32_load().get(s).f32_add().f32_store();
      f.get(m).i32(1).i32_add().set(m);
    });
  });
  return f;
}

/** matmul_acc over the columns of one item: see the file's comment. `index`: matmul_acc's place in the module. */
export function matmulAccJob(index: number): Code {
  return rangeJob('matmul_acc_job', index, 8, 5, 7); // [out, a, b, M, K, N, lda, pack], packBytes, chunk; total = N; pack per thread
}
