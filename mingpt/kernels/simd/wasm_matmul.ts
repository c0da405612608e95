/**
 * matmul: out (BT, OC) = inp (BT, C) · weight (OC, C)ᵀ + bias (OC), for the output channels
 * o0 … o1-1 only (so that threads can share one product by channel ranges). Pointers are byte
 * addresses in the module's memory; bias 0 means none.
 *
 *   - Register tiles of 2 rows × 4 output channels (DotTiles below): per step along
 *     k, 2 + 4 loads for 8 multiply-adds (each loaded weight serves 2 rows, each input 4
 *     channels). An odd last row takes 1 × 4 tiles; the last OC % 4 channels 1 × 1 tiles.
 *   - Blocks of rows for the caches: the rows are taken ROW_BLOCK_BYTES of inputs at a time
 *     (170 rows at C = 768), and within a block every group of 4 channels passes over all its
 *     rows. The block's inputs stay in the L2 cache while the weights stream past once per
 *     block; the 4 weight rows of a tile stay in L1 while the tile walks down the block. Without
 *     the blocks, a product of 1024 rows re-reads 3 MB of inputs from L3 for every 4 channels.
 *   - While a group of 4 channels walks down a block of 32 rows or more, the next group's weight
 *     rows are read ahead, a few cache lines after each tile (WebAssembly has no prefetch
 *     instruction): they then come from memory while the current group computes, not when the
 *     next one starts (measured, 12 layers' c_fc with cold weights: 5% faster at 512 and 1024
 *     rows). A block of fewer rows reads each group's rows in order just before its tiles
 *     instead: one stream for the processor's prefetcher (see AHEAD_MIN_ROWS).
 *   - Every output is the same sequence of operations whichever tile computes it, so its value
 *     does not depend on BT, on the channel range, on the blocks or on the threads.
 *
 * matmul_job(args, item, thread) is the same product as a job for ./threads.ts: args points at
 * [out, inp, w, bias, BT, C, OC, chunk] (i32 words) and item j does channels j·chunk … +chunk.
 */
import { Code } from './wasm.ts';
import { laneSum, madd, rangeJob } from './wasm_math.ts';

/**
 * Register tiles of dot products: out[r][n] = Σₖ a_r[k] · b_n[k] for r < R, n < N, each row K
 * floats long and contiguous. The caller points `pa[r]` and `pb[n]` at the rows (the emitted
 * code advances them), then `emit` adds the loop and calls `each(r, n, s)` once per output with
 * its value in the f32 local `s`. The locals are made once per function, for the largest tile.
 *
 * Four lanes along k: a v128 load brings 4 consecutive k of a row, one multiply-add does 4
 * products. Each output keeps its 4 lane sums to the end of the row, adds them up as laneSum
 * does, then the last K % 4 products one by one: the same operations whichever tile it is in. 2 × 4 is the largest tile whose 8 accumulators and 6 loaded vectors fit in the 16
 * vector registers V8 uses on x64; each vector is loaded once into a local (V8 does not merge
 * repeated loads) and the loop is not unrolled (V8 then hoists every load of the body to its top
 * and spills registers: 50 → 32 GFLOP/s, measured).
 */
class DotTiles {
  readonly pa: number[];
  readonly pb: number[];
  private readonly acc: number[][];
  private readonly va: number[];
  private readonly vb: number[];
  private readonly cnt: number;
  private readonly s: number;
  constructor(private readonly f: Code, private readonly relaxed: boolean, maxR: number, maxN: number) {
    this.pa = Array.from({ length: maxR }, () => f.local('i32'));
    this.pb = Array.from({ length: maxN }, () => f.local('i32'));
    this.acc = this.pa.map(() => this.pb.map(() => f.local('v128')));
    this.va = this.pa.map(() => f.local('v128'));
    this.vb = this.pb.map(() => f.local('v128'));
    this.cnt = f.local('i32');
    this.s = f.local('f32');
  }

  emit(R: number, N: number, K: number, each: (r: number, n: number, s: number) => void): void {
    const { f, pa, pb, acc, va, vb, cnt, s } = this;
    for (let r = 0; r < R; r++) for (let n = 0; n < N; n++) f.v128_zero().set(acc[r][n]);
    f.get(K).i32(2).i32_shr_u().set(cnt);
    f.while_(() => f.get(cnt), () => {
      for (let r = 0; r < R; r++) f.get(pa[r]).v128_load().set(va[r]);
      for (let n = 0; n < N; n++) f.get(pb[n]).v128_load().set(vb[n]);
      for (let r = 0; r < R; r++) for (let n = 0; n < N; n++) madd(f, this.relaxed, va[r], vb[n], acc[r][n]);
      for (let r = 0; r < R; r++) f.get(pa[r]).i32(16).i32_add().set(pa[r]);
      for (let n = 0; n < N; n++) f.get(pb[n]).i32(16).i32_add().set(pb[n]);
      f.get(cnt).i32(1).i32_sub().set(cnt);
    });
    for (let r = 0; r < R; r++) {
      for (let n = 0; n < N; n++) {
        laneSum(f, acc[r][n]);
        f.set(s);
        for (let t = 0; t < 3; t++) { // the last K % 4 products, one by one
          f.when(() => f.get(K).i32(3).i32_and().i32(t).i32_gt_u(), () => {
            f.get(s).get(pa[r]).f32_load(4 * t).get(pb[n]).f32_load(4 * t).f32_mul().f32_add().set(s);
          });
        }
        each(r, n, s);
      }
    }
  }
}

/**
 * Bytes of input rows per block of rows: a quarter of a 2 MiB L2, leaving room for the weights'
 * stream (measured, 12 layers' c_fc with cold weights at 128, 512 and 1024 rows: 512 KiB ran 7%
 * faster than 192 KiB, as fast as 384 or 768 KiB; no blocks at all lost 15% at 1024 rows).
 */
const ROW_BLOCK_BYTES = 512 << 10;

/** The longest weight rows whose next group is read ahead: 8 rows of 4 KiB fill 32 of L1's 48 KiB. */
const L1_AHEAD_ROW_BYTES = 4096;

/** The fewest rows in a block for which the next weight rows are read ahead; fewer read each group's rows in order first. */
const AHEAD_MIN_ROWS = 32;

export function matmul(relaxed: boolean): Code {
  const f = new Code('matmul', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [out, inp, w, bias, BT, C, OC, o0, o1] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const i = f.local('i32'), o = f.local('i32'), rowBytes = f.local('i32');
  const rb0 = f.local('i32'), rb1 = f.local('i32'), RB = f.local('i32');
  const pf = f.local('i32'), pfEnd = f.local('i32'), perTile = f.local('i32'), t = f.local('i32'), touched = f.local('i32'), few = f.local('i32');
  const tiles = new DotTiles(f, relaxed, 2, 4);

  /** reads perTile more cache lines of the next four weight rows (from pf, up to pfEnd) */
  const touchNext = () => {
    f.get(perTile).set(t);
    f.while_(() => f.get(t), () => {
      f.when(() => f.get(pf).get(pfEnd).i32_lt_u(), () => {
        f.get(touched).get(pf).i32_load().i32_add().set(touched);
        f.get(pf).i32(64).i32_add().set(pf);
      });
      f.get(t).i32(1).i32_sub().set(t);
    });
  };

  /** the R × N outputs at rows i…, channels o… */
  const tile = (R: number, N: number) => {
    for (let r = 0; r < R; r++) f.get(inp).get(i).i32(r).i32_add().get(rowBytes).i32_mul().i32_add().set(tiles.pa[r]);
    for (let n = 0; n < N; n++) f.get(w).get(o).i32(n).i32_add().get(rowBytes).i32_mul().i32_add().set(tiles.pb[n]);
    tiles.emit(R, N, C, (r, n, s) => {
      f.when(() => f.get(bias), () => {
        f.get(s).get(bias).get(o).i32(n).i32_add().i32(2).i32_shl().i32_add().f32_load().f32_add().set(s);
      });
      // out[(i + r) · OC + o + n] = s
      f.get(out).get(i).i32(r).i32_add().get(OC).i32_mul().get(o).i32_add().i32(n).i32_add().i32(2).i32_shl().i32_add();
      f.get(s).f32_store();
    });
  };

  f.get(C).i32(2).i32_shl().set(rowBytes);
  // RB = the even number of rows whose inputs fill ROW_BLOCK_BYTES, at least 2
  f.i32(ROW_BLOCK_BYTES).get(rowBytes).i32_div_u().i32(-2).i32_and().set(RB);
  f.when(() => f.get(RB).i32(2).i32_lt_u(), () => f.i32(2).set(RB));
  f.i32(0).set(rb0);
  f.while_(() => f.get(rb0).get(BT).i32_lt_u(), () => {
    // rb1 = min(BT, rb0 + RB)
    f.get(rb0).get(RB).i32_add().get(BT).get(rb0).get(RB).i32_add().get(BT).i32_lt_u().select().set(rb1);
    // cache lines of the next four weight rows to read after each tile: C/4 lines over the block's tiles
    f.get(C).i32(2).i32_shr_u().get(rb1).get(rb0).i32_sub().i32(1).i32_add().i32(1).i32_shr_u().i32_div_u().i32(1).i32_add().set(perTile);
    // only when this group's rows and the next group's fit in L1 together (C ≤ 1024); else the
    // reads ahead would push out the rows in use (measured at C = 3072: 4% slower)
    f.when(() => f.get(rowBytes).i32(L1_AHEAD_ROW_BYTES).i32_gt_u(), () => f.i32(0).set(perTile));
    // nor when the block has few rows: a burst of reads that miss the caches then holds up the
    // few tiles left to hide it. Such a block reads each group's weight rows in order first
    // instead (`few`), one line after the other: one stream the processor's prefetcher follows
    // well, where the first tile's four rows side by side are four (measured, GPT-2 small's 49
    // products with cold weights, two threads: 11 rows 41.8 → 34.9 ms, 1 row 21.1 → 15.3 ms)
    f.get(rb1).get(rb0).i32_sub().i32(AHEAD_MIN_ROWS).i32_lt_u().set(few);
    f.when(() => f.get(few), () => f.i32(0).set(perTile));
    // channels four at a time: rows two at a time, then an odd last row (only in the last block)
    f.get(o0).set(o);
    f.while_(() => f.get(o).i32(4).i32_add().get(o1).i32_le_u(), () => {
      // the next four weight rows (within this call's channels): read ahead, a few lines per tile,
      // so that they come from memory while this group computes (WebAssembly has no prefetch)
      f.when(() => f.get(few), () => {
        f.get(w).get(o).get(rowBytes).i32_mul().i32_add().set(pf);
        f.get(pf).get(rowBytes).i32(2).i32_shl().i32_add().set(pfEnd); // the group's 4 rows
        f.while_(() => f.get(pf).get(pfEnd).i32_lt_u(), () => {
          f.get(touched).get(pf).i32_load().i32_add().set(touched);
          f.get(pf).i32(64).i32_add().set(pf);
        });
      });
      f.get(w).get(o).i32(4).i32_add().get(rowBytes).i32_mul().i32_add().set(pf);
      f.get(w).get(o).i32(8).i32_add().get(o1).get(o).i32(8).i32_add().get(o1).i32_lt_u().select().get(rowBytes).i32_mul().i32_add().set(pfEnd);
      f.get(rb0).set(i);
      f.while_(() => f.get(i).i32(2).i32_add().get(rb1).i32_le_u(), () => {
        tile(2, 4);
        touchNext();
        f.get(i).i32(2).i32_add().set(i);
      });
      f.when(() => f.get(i).get(rb1).i32_lt_u(), () => {
        tile(1, 4);
        touchNext();
      });
      f.get(o).i32(4).i32_add().set(o);
    });
    // the last OC % 4 channels one at a time
    f.while_(() => f.get(o).get(o1).i32_lt_u(), () => {
      f.get(rb0).set(i);
      f.while_(() => f.get(i).get(rb1).i32_lt_u(), () => {
        tile(1, 1);
        f.get(i).i32(1).i32_add().set(i);
      });
      f.get(o).i32(1).i32_add().set(o);
    });
    f.get(rb1).set(rb0);
  });
  // (the touched words' sum goes nowhere; the reads were the point)
  return f;
}

/** matmul over the channels of one item: see the file's comment. `matmulIndex`: matmul's place in the module. */
export function matmulJob(matmulIndex: number): Code {
  return rangeJob('matmul_job', matmulIndex, 7, 6); // [out, inp, w, bias, BT, C, OC], chunk; total = OC
}
