/**
 * The SIMD kernel of the backward pass's products, written with the assembler in ./wasm.ts beside
 * the forward ones (./kernels_wasm.ts lists them all), on pointers (byte addresses) into one
 * WebAssembly memory.
 *
 * matmul_acc: out (M, N) += a (M, K) · b (K, N), for the columns n0 … n1-1 only (so that threads
 * can share a product by column ranges). a's element (m, k) is `sam` · m + `sak` · k floats from
 * a, so a may be a transposed matrix (sam 1) or a block of columns of a wider one; the rows of b
 * and out are `ldb` and `ldo` floats apart (one head's columns of a (T, C) activation, say).
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
 *     rows one after the other: in place its rows are ldb · 4 bytes apart, and when that is a
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
 * matmul_acc_job(args, item, thread) is the same as a job for ./threads.ts, for one product or
 * several of one shape (the heads of an attention): see its comment below.
 */
import { Code } from './wasm.ts';
import { madd } from './wasm_math.ts';

/** Columns of matmul_acc's register tile: threads share a product in whole multiples of it. */
export const ACC_TILE_COLUMNS = 12;

export function matmulAcc(relaxed: boolean): Code {
  const RT = 3, NV = ACC_TILE_COLUMNS / 4; // the register tile: rows × vectors of 4 columns
  const f = new Code('matmul_acc', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [out, a, b, M, K, sam, sak, ldb, ldo, pack, n0, n1] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const m = f.local('i32'), n = f.local('i32'), cnt = f.local('i32'), s = f.local('f32'), po = f.local('i32');
  const pa = Array.from({ length: RT }, () => f.local('i32')); // the tile's rows of a, advancing along k
  const pb = f.local('i32'); // b at row k, the tile's first column
  const acc = pa.map(() => Array.from({ length: NV }, () => f.local('v128'))); // acc[r][v]
  const va = f.local('v128'), vb = Array.from({ length: NV }, () => f.local('v128'));
  const rowA = f.local('i32'), colA = f.local('i32'), rowB = f.local('i32'); // sam · 4, sak · 4, ldb · 4
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
      for (let r = 0; r < R; r++) f.get(pa[r]).get(colA).i32_add().set(pa[r]);
      f.get(pb).get(step).i32_add().set(pb);
      f.get(cnt).i32(1).i32_sub().set(cnt);
    });
    // out[m + r, n + 4v …] += acc[r][v]
    for (let r = 0; r < R; r++) {
      f.get(out).get(m).i32(r).i32_add().get(ldo).i32_mul().get(n).i32_add().i32(2).i32_shl().i32_add().set(po);
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

  f.get(sam).i32(2).i32_shl().set(rowA);
  f.get(sak).i32(2).i32_shl().set(colA);
  f.get(ldb).i32(2).i32_shl().set(rowB);
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
        f.get(pa[0]).get(colA).i32_add().set(pa[0]);
        f.get(pb).get(rowB).i32_add().set(pb);
        f.get(cnt).i32(1).i32_sub().set(cnt);
      });
      f.get(out).get(m).get(ldo).i32_mul().get(n).i32_add().i32(2).i32_shl().i32_add().set(po);
      f.get(po).get(po).f32_load().get(s).f32_add().f32_store();
      f.get(m).i32(1).i32_add().set(m);
    });
  });
  return f;
}

/** The words of matmul_acc_job's arguments, in order. */
export const ACC_JOB_ARGS = ['out', 'a', 'b', 'M', 'K', 'N', 'sam', 'sak', 'ldb', 'ldo', 'pack', 'packBytes', 'chunk', 'kBlock', 'live', 'outStep', 'aStep', 'bStep'] as const;

/**
 * matmul_acc_job(args, item, thread): one item of `products` products of one shape, out_p += a_p ·
 * b_p with out_p = out + p · outStep (bytes; a_p and b_p the same with aStep, bStep). args points
 * at the i32 words ACC_JOB_ARGS: item j does product p = j / items and columns c·chunk … +chunk
 * of it, c = j % items, where items = ⌈N / chunk⌉. The sum over k goes kBlock terms at a time,
 * each block added to out as a whole (so an output gets the same operations in the same order as
 * from one call per block), and block i only when live is 0 or the i32 word live[i] is not 0 (a
 * block of a's columns that is all zeros adds nothing). All the blocks in one job: a job per
 * block was too small to share (at 46 rows, 37 µs an item, about what waking a helper costs).
 * Each thread packs into its own area, pack + thread · packBytes. `index`: matmul_acc's place in the module.
 */
export function matmulAccJob(index: number): Code {
  const f = new Code('matmul_acc_job', ['i32', 'i32', 'i32']);
  const [args, item, thread] = [0, 1, 2];
  const w = Object.fromEntries(ACC_JOB_ARGS.map((name, i) => [name, 4 * i])) as Record<(typeof ACC_JOB_ARGS)[number], number>;
  const arg = (name: (typeof ACC_JOB_ARGS)[number]) => f.get(args).i32_load(w[name]);
  const lo = f.local('i32'), hi = f.local('i32'), k0 = f.local('i32'), kn = f.local('i32'), live = f.local('i32'), all = f.local('i32');
  const items = f.local('i32'), p = f.local('i32');
  // items = ⌈N / chunk⌉, p = item / items, lo = (item % items) · chunk, hi = min(N, lo + chunk)
  arg('N'), arg('chunk'), f.i32_add().i32(1).i32_sub(), arg('chunk'), f.i32_div_u().set(items);
  f.get(item).get(items).i32_div_u().set(p);
  f.get(item).get(items).i32_rem_u(), arg('chunk'), f.i32_mul().set(lo);
  f.get(lo), arg('chunk'), f.i32_add().set(hi);
  f.when(() => (f.get(hi), arg('N'), f.i32_gt_u()), () => (arg('N'), f.set(hi)));
  arg('live'), f.tee(live).i32_eqz().set(all);
  f.i32(0).set(k0);
  f.while_(() => (f.get(k0), arg('K'), f.i32_lt_u()), () => {
    // kn = min(kBlock, K − k0)
    arg('kBlock'), arg('K'), f.get(k0).i32_sub(), arg('kBlock'), arg('K'), f.get(k0).i32_sub().i32_lt_u().select().set(kn);
    // (with live = 0, the word read is memory's first, and `all` decides)
    f.when(() => f.get(all).get(live).i32_load().i32_add(), () => {
      arg('out'), f.get(p), arg('outStep'), f.i32_mul().i32_add();
      arg('a'), f.get(p), arg('aStep'), f.i32_mul().i32_add().get(k0), arg('sak'), f.i32_mul().i32(2).i32_shl().i32_add(); // a_p + 4·k0·sak
      arg('b'), f.get(p), arg('bStep'), f.i32_mul().i32_add().get(k0), arg('ldb'), f.i32_mul().i32(2).i32_shl().i32_add(); // b_p + 4·k0·ldb
      arg('M'), f.get(kn), arg('sam'), arg('sak'), arg('ldb'), arg('ldo');
      arg('pack'), f.get(thread), arg('packBytes'), f.i32_mul().i32_add();
      f.get(lo).get(hi).call(index);
    });
    f.when(() => f.get(all).i32_eqz(), () => f.get(live).i32(4).i32_add().set(live));
    f.get(k0), arg('kBlock'), f.i32_add().set(k0);
  });
  return f;
}
