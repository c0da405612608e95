/**
 * Causal self-attention as WebAssembly, for one head of one batch element, query rows i0 … i1-1
 * (so that threads can share it by head and by block of queries). The head's rows are given by
 * their first address and a row stride in bytes: q and z have Tq rows, k and v Tk rows, hs floats
 * used in each. Query i sits at position t = Tk − Tq + i and sees keys 0 … t. Pointers are byte
 * addresses in the module's memory.
 *
 *   attention         the fused kernel: for each pair of query rows, its scores against the
 *                     keys it sees, the softmax, the weighted sum of values — the scores live in
 *                     two rows of scratch (S), never as a (Tq, Tk) matrix
 *   attention_scores  the same scores into att (Tq, Tk), the future masked to −∞
 *   softmax           rows of x (rows, n) ← softmax, in place
 *   attention_values  z rows = att rows · v
 *   split_heads       (T, C) → (NH, T, hs): each head's rows made contiguous, and
 *   merge_heads       back. The callers stage q, k, v and z this way when many queries read
 *                     each key: with the rows of a head hs floats apart instead of C, a head's
 *                     keys and values (256 KiB each at T = 1024) sit in the caches without the
 *                     set conflicts of a 3 KiB stride.
 *
 * The fused kernel gives bit for bit the z of the three others, because it is made of the same
 * emitted code (the pieces below), applied to the same rows in the same order:
 *  - a score is a dot product in four lane sums along the head's channels, added up as
 *    (l0 + l2) + (l1 + l3), times the scale — four keys at a time with shuffles, or one key at a
 *    time with the same additions: its value does not depend on the tile;
 *  - a row's softmax keeps (double) lane sums by key index mod 4 and adds them up in one order; the keys
 *    after the query's position are −∞ in both (the fused kernel pads its row with −∞ up to a
 *    multiple of 4 where the three-step kernels have the rest of the row), and a −∞ adds an exact
 *    0 to a lane sum and nothing to a maximum;
 *  - the weighted sum over keys runs, for both rows of a pair, over keys 0 … L−1, L being one
 *    past the last nonzero probability of either row (found by looking, so the same in both:
 *    beyond it, both have only exact zeros). Rows are paired from an even i0 in both.
 * (Paired differently — a block of queries against cached keys pairs from its own first row — a
 * row adds weight 0 · value for keys only its partner sees, which changes nothing unless its sum
 * so far is exactly −0, or a value is infinite.)
 *
 * The *_job functions are the same kernels as jobs for ./threads.ts (item = one batch element,
 * one head, one block of QUERY_BLOCK query rows; the most expensive blocks, the last queries, first).
 */
import { Code } from './wasm.ts';
import { addAsDoubles, doubleSum, exp4, expLocals, laneMax, madd, type ExpLocals } from './wasm_math.ts';

/** The pieces, emitted into one function with its own locals. */
class AttentionCode {
  private readonly el: ExpLocals;
  // scores: row and key pointers, accumulators, loaded vectors, the step count, the K % 4 mask, the key index, the scale
  private readonly pa: number[];
  private readonly pb: number[];
  private readonly dacc: number[][];
  private readonly va: number[];
  private readonly vb: number[];
  private readonly dcnt: number;
  private readonly mask: number;
  private readonly t2: number;
  private readonly scale: number;
  private readonly scalev: number;
  // softmax: a pointer, the end of the whole vectors, n % 4, vectors, the sum (in doubles, then f32)
  private readonly sp: number;
  private readonly send: number;
  private readonly srem: number;
  private readonly sx: number;
  private readonly st: number;
  private readonly sacc: number;
  private readonly slo: number;
  private readonly shi: number;
  private readonly sM: number;
  private readonly ssum: number;
  // values: channel offset, value pointer, key count, probability pointers and splats, loaded values, sums
  private readonly cb: number;
  private readonly pv: number;
  private readonly cnt: number;
  private readonly pp: number[];
  private readonly ps: number[];
  private readonly vv: number[];
  private readonly acc: number[][];
  private readonly accs: number[];

  constructor(private readonly f: Code, private readonly relaxed: boolean) {
    const i32 = () => f.local('i32'), v128 = () => f.local('v128'), f32 = () => f.local('f32');
    this.el = expLocals(f);
    this.pa = [i32(), i32()];
    this.pb = [i32(), i32(), i32(), i32()];
    this.dacc = [0, 1].map(() => [v128(), v128(), v128(), v128()]);
    this.va = [v128(), v128()];
    this.vb = [v128(), v128(), v128(), v128()];
    [this.dcnt, this.t2] = [i32(), i32()];
    [this.mask, this.scalev, this.scale] = [v128(), v128(), f32()];
    [this.sp, this.send, this.srem] = [i32(), i32(), i32()];
    [this.sx, this.st, this.sacc, this.slo, this.shi, this.sM, this.ssum] = [v128(), v128(), v128(), v128(), v128(), v128(), f32()];
    [this.cb, this.pv, this.cnt] = [i32(), i32(), i32()];
    this.pp = [i32(), i32()];
    this.ps = [v128(), v128()];
    this.vv = [v128(), v128(), v128(), v128()];
    this.acc = [0, 1].map(() => [v128(), v128(), v128(), v128()]);
    this.accs = [f32(), f32()];
  }

  /** Before scores: scale = 1 / √hs, and the mask of the lanes a row's last hs % 4 channels fill. */
  setup(hs: number): void {
    const f = this.f;
    f.f32(1).get(hs).f32_convert_i32_u().f32_sqrt().f32_div().set(this.scale);
    f.get(this.scale).f32x4_splat().set(this.scalev);
    f.i32x4_const([0, 1, 2, 3]).get(hs).i32(3).i32_and().i32x4_splat().i32x4_lt_s().set(this.mask);
  }

  /**
   * dacc[r][j] = the four lane sums of a_r · b_j over hs floats (pa[r], pb[j] point at the rows
   * and are advanced). The last hs % 4 floats are a fifth, masked step: the lanes past the row
   * are zeroed in both vectors, so what lies beyond adds an exact 0.
   */
  private dot(R: number, N: number, hs: number): void {
    const { f, pa, pb, dacc, va, vb, dcnt, mask, relaxed } = this;
    for (let r = 0; r < R; r++) for (let j = 0; j < N; j++) f.v128_zero().set(dacc[r][j]);
    const step = (masked: boolean) => {
      for (let r = 0; r < R; r++) {
        f.get(pa[r]).v128_load();
        if (masked) f.get(mask).v128_and();
        f.set(va[r]);
      }
      for (let j = 0; j < N; j++) {
        f.get(pb[j]).v128_load();
        if (masked) f.get(mask).v128_and();
        f.set(vb[j]);
      }
      for (let r = 0; r < R; r++) for (let j = 0; j < N; j++) madd(f, relaxed, va[r], vb[j], dacc[r][j]);
    };
    f.get(hs).i32(2).i32_shr_u().set(dcnt);
    f.while_(() => f.get(dcnt), () => {
      step(false);
      for (let r = 0; r < R; r++) f.get(pa[r]).i32(16).i32_add().set(pa[r]);
      for (let j = 0; j < N; j++) f.get(pb[j]).i32(16).i32_add().set(pb[j]);
      f.get(dcnt).i32(1).i32_sub().set(dcnt);
    });
    f.when(() => f.get(hs).i32(3).i32_and(), () => step(true));
  }

  /**
   * dst[r][t2] = q_r · k_t2 · scale for rows r < R and keys t2 < n: qRow[r] = the query rows,
   * k0 = key 0, stride = bytes from one key row to the next, dst[r] = the score rows (byte
   * addresses). Four keys at a time, their lane sums reduced together by shuffles; the last n % 4
   * keys one at a time, reduced in the same order of additions.
   */
  scores(R: number, n: number, qRow: number[], k0: number, stride: number, hs: number, dst: number[]): void {
    const { f, pa, pb, dacc, t2, scale, scalev, sx, st } = this;
    const at = (N: number) => {
      for (let r = 0; r < R; r++) f.get(qRow[r]).set(pa[r]);
      for (let j = 0; j < N; j++) f.get(k0).get(t2).i32(j).i32_add().get(stride).i32_mul().i32_add().set(pb[j]);
      this.dot(R, N, hs);
    };
    f.i32(0).set(t2);
    f.while_(() => f.get(t2).i32(4).i32_add().get(n).i32_le_u(), () => {
      at(4);
      for (let r = 0; r < R; r++) {
        const [a, b, c, d] = dacc[r];
        // [a0+a2, a1+a3, b0+b2, b1+b3] and the same for c, d; then [(a0+a2)+(a1+a3), … for b, c, d]
        f.get(a).get(b).shuffle32([0, 1, 4, 5]).get(a).get(b).shuffle32([2, 3, 6, 7]).f32x4_add().set(sx);
        f.get(c).get(d).shuffle32([0, 1, 4, 5]).get(c).get(d).shuffle32([2, 3, 6, 7]).f32x4_add().set(st);
        f.get(dst[r]).get(t2).i32(2).i32_shl().i32_add();
        f.get(sx).get(st).shuffle32([0, 2, 4, 6]).get(sx).get(st).shuffle32([1, 3, 5, 7]).f32x4_add();
        f.get(scalev).f32x4_mul().v128_store();
      }
      f.get(t2).i32(4).i32_add().set(t2);
    });
    f.while_(() => f.get(t2).get(n).i32_lt_u(), () => {
      at(1);
      for (let r = 0; r < R; r++) {
        const a = dacc[r][0];
        f.get(dst[r]).get(t2).i32(2).i32_shl().i32_add();
        f.get(a).f32x4_extract_lane(0).get(a).f32x4_extract_lane(2).f32_add();
        f.get(a).f32x4_extract_lane(1).get(a).f32x4_extract_lane(3).f32_add().f32_add();
        f.get(scale).f32_mul().f32_store();
      }
      f.get(t2).i32(1).i32_add().set(t2);
    });
  }

  /** row[from … to−1] = −∞ (float indices) */
  fillMinusInf(row: number, from: number, to: number): void {
    const { f, sp, send } = this;
    f.get(row).get(from).i32(2).i32_shl().i32_add().set(sp);
    f.get(row).get(to).i32(2).i32_shl().i32_add().set(send);
    f.while_(() => f.get(sp).get(send).i32_lt_u(), () => {
      f.get(sp).f32(-Infinity).f32_store();
      f.get(sp).i32(4).i32_add().set(sp);
    });
  }

  /** the last n % 4 floats at sp as a vector, −∞ in the lanes past the row's end */
  private tailVector(): void {
    const { f, sp, srem, sx } = this;
    f.f32x4_const(-Infinity).set(sx);
    for (let j = 0; j < 3; j++) {
      f.when(() => f.get(srem).i32(j).i32_gt_u(), () => f.get(sx).get(sp).f32_load(4 * j).f32x4_replace_lane(j).set(sx));
    }
  }

  /**
   * sx ← e^(sx − max), exactly 0 where sx − max < −87 (−∞, the masked keys, included); NaN
   * stays NaN, so that a NaN score makes the row NaN, as in the plain softmax
   */
  private expShifted(): void {
    const { f, sx, st, sM, el } = this;
    f.get(sx).get(sM).f32x4_sub().set(sx);
    f.get(sx).f32x4_const(-87).f32x4_pmax().set(st);
    exp4(f, st, st, el);
    f.get(st).get(sx).f32x4_const(-87).f32x4_lt().v128_andnot().set(sx);
  }

  /**
   * row (n floats at byte address row) ← its softmax, in place. The sum of the exponentials is
   * kept in doubles (over a vocabulary of 50257, float32 lane sums would drift by 1e-5).
   */
  softmaxRow(row: number, n: number): void {
    const { f, sp, send, srem, sx, sacc, slo, shi, sM, ssum } = this;
    f.get(n).i32(3).i32_and().set(srem);
    f.get(row).get(n).i32(-4).i32_and().i32(2).i32_shl().i32_add().set(send);
    // the maximum
    f.f32x4_const(-Infinity).set(sacc);
    f.get(row).set(sp);
    f.while_(() => f.get(sp).get(send).i32_lt_u(), () => { // (pmax: a NaN is passed over, as by the plain kernel's `>`)
      f.get(sacc).get(sp).v128_load().f32x4_pmax().set(sacc);
      f.get(sp).i32(16).i32_add().set(sp);
    });
    f.when(() => f.get(srem), () => {
      this.tailVector();
      f.get(sacc).get(sx).f32x4_pmax().set(sacc);
    });
    laneMax(f, sacc);
    f.f32x4_splat().set(sM);
    // e = exp(x − max), stored, and summed by lanes in doubles
    f.v128_zero().set(slo);
    f.v128_zero().set(shi);
    f.get(row).set(sp);
    f.while_(() => f.get(sp).get(send).i32_lt_u(), () => {
      f.get(sp).v128_load().set(sx);
      this.expShifted();
      f.get(sp).get(sx).v128_store();
      addAsDoubles(f, sx, slo, shi);
      f.get(sp).i32(16).i32_add().set(sp);
    });
    f.when(() => f.get(srem), () => {
      this.tailVector();
      this.expShifted();
      for (let j = 0; j < 3; j++) f.when(() => f.get(srem).i32(j).i32_gt_u(), () => f.get(sp).get(sx).f32x4_extract_lane(j).f32_store(4 * j));
      addAsDoubles(f, sx, slo, shi);
    });
    doubleSum(f, slo, shi);
    f.f32_demote_f64().set(ssum);
    // p = e / sum
    f.get(ssum).f32x4_splat().set(sM);
    f.get(row).set(sp);
    f.while_(() => f.get(sp).get(send).i32_lt_u(), () => {
      f.get(sp).get(sp).v128_load().get(sM).f32x4_div().v128_store();
      f.get(sp).i32(16).i32_add().set(sp);
    });
    for (let j = 0; j < 3; j++) {
      f.when(() => f.get(srem).i32(j).i32_gt_u(), () => f.get(sp).get(sp).f32_load(4 * j).get(ssum).f32_div().f32_store(4 * j));
    }
  }

  /** leaves on the stack one past the index of the last nonzero float among row[0 … n−1] (0 if none) */
  lastNonzero(row: number, n: number): void {
    const { f, sp } = this;
    f.get(n).set(sp);
    f.block().loop();
    f.get(sp).i32_eqz().br_if(1);
    f.get(row).get(sp).i32(2).i32_shl().i32_add().i32(4).i32_sub().f32_load().f32(0).f32_ne().br_if(1);
    f.get(sp).i32(1).i32_sub().set(sp);
    f.br(0).end().end();
    f.get(sp);
  }

  /**
   * zRow[r][c] = Σ_{t < L} p[r][t] · v[t][c] for rows r < R and the hs channels of a head:
   * pRow[r] = the probabilities, v0 = key 0's values, stride = bytes from one value row to the
   * next, zRow[r] = the outputs. Lanes along c: 16 channels (4 vectors) at a time for both rows,
   * then 4, then one by one.
   */
  values(R: number, L: number, pRow: number[], v0: number, stride: number, hs: number, zRow: number[]): void {
    const { f, cb, pv, cnt, pp, ps, vv, acc, accs, relaxed } = this;
    const chunk = (NV: number) => {
      for (let r = 0; r < R; r++) for (let j = 0; j < NV; j++) f.v128_zero().set(acc[r][j]);
      f.get(v0).get(cb).i32_add().set(pv);
      for (let r = 0; r < R; r++) f.get(pRow[r]).set(pp[r]);
      f.get(L).set(cnt);
      f.while_(() => f.get(cnt), () => {
        for (let r = 0; r < R; r++) f.get(pp[r]).v128_load32_splat().set(ps[r]);
        for (let j = 0; j < NV; j++) f.get(pv).v128_load(16 * j).set(vv[j]);
        for (let r = 0; r < R; r++) for (let j = 0; j < NV; j++) madd(f, relaxed, ps[r], vv[j], acc[r][j]);
        f.get(pv).get(stride).i32_add().set(pv);
        for (let r = 0; r < R; r++) f.get(pp[r]).i32(4).i32_add().set(pp[r]);
        f.get(cnt).i32(1).i32_sub().set(cnt);
      });
      for (let r = 0; r < R; r++) for (let j = 0; j < NV; j++) f.get(zRow[r]).get(cb).i32_add().get(acc[r][j]).v128_store(16 * j);
      f.get(cb).i32(16 * NV).i32_add().set(cb);
    };
    f.i32(0).set(cb);
    f.while_(() => f.get(cb).i32(64).i32_add().get(hs).i32(2).i32_shl().i32_le_u(), () => chunk(4));
    f.while_(() => f.get(cb).i32(16).i32_add().get(hs).i32(2).i32_shl().i32_le_u(), () => chunk(1));
    f.while_(() => f.get(cb).get(hs).i32(2).i32_shl().i32_lt_u(), () => { // the last hs % 4 channels
      for (let r = 0; r < R; r++) f.f32(0).set(accs[r]);
      f.get(v0).get(cb).i32_add().set(pv);
      for (let r = 0; r < R; r++) f.get(pRow[r]).set(pp[r]);
      f.get(L).set(cnt);
      f.while_(() => f.get(cnt), () => {
        for (let r = 0; r < R; r++) f.get(accs[r]).get(pp[r]).f32_load().get(pv).f32_load().f32_mul().f32_add().set(accs[r]);
        f.get(pv).get(stride).i32_add().set(pv);
        for (let r = 0; r < R; r++) f.get(pp[r]).i32(4).i32_add().set(pp[r]);
        f.get(cnt).i32(1).i32_sub().set(cnt);
      });
      for (let r = 0; r < R; r++) f.get(zRow[r]).get(cb).i32_add().get(accs[r]).f32_store();
      f.get(cb).i32(4).i32_add().set(cb);
    });
  }
}

const I32 = (n: number) => new Array<'i32'>(n).fill('i32');

/**
 * Walks query rows i0 … i1−1 two at a time (an odd last row alone), calling body(R) with
 * `i` = the first row of the tile, `n` = the keys the tile's last row sees.
 */
function queryPairs(f: Code, Tq: number, Tk: number, i0: number, i1: number, i: number, n: number, body: (R: number) => void): void {
  f.get(i0).set(i);
  f.while_(() => f.get(i).get(i1).i32_lt_u(), () => {
    f.get(i).i32(1).i32_add().get(i1).i32_lt_u().if_();
    f.get(Tk).get(Tq).i32_sub().get(i).i32_add().i32(2).i32_add().set(n); // t of row i+1, plus 1
    body(2);
    f.get(i).i32(2).i32_add().set(i);
    f.else_();
    f.get(Tk).get(Tq).i32_sub().get(i).i32_add().i32(1).i32_add().set(n);
    body(1);
    f.get(i).i32(1).i32_add().set(i);
    f.end();
  });
}

/** rows[r] = base + (i + r) · stride for r < R */
function rowsAt(f: Code, R: number, base: number, i: number, stride: number, rows: number[]): void {
  for (let r = 0; r < R; r++) f.get(base).get(i).i32(r).i32_add().get(stride).i32_mul().i32_add().set(rows[r]);
}

/** the larger of L and what is on the stack, into L (L1: a free local) */
function maxInto(f: Code, L: number, L1: number): void {
  f.tee(L1).get(L).get(L1).get(L).i32_gt_u().select().set(L);
}

/**
 * attention(z, q, k, v, Tq, Tk, stride, hs, i0, i1, S): the fused kernel for one head; rows
 * `stride` bytes apart. S: two rows of ⌈Tk/4⌉·4 floats.
 */
export function attention(relaxed: boolean): Code {
  const f = new Code('attention', I32(11));
  const [z, q, k, v, Tq, Tk, stride, hs, i0, i1, S] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const a = new AttentionCode(f, relaxed);
  const sStride = f.local('i32'), i = f.local('i32'), n = f.local('i32'), n4 = f.local('i32'), L = f.local('i32'), L1 = f.local('i32');
  const qRow = [f.local('i32'), f.local('i32')], sRow = [f.local('i32'), f.local('i32')], zRow = [f.local('i32'), f.local('i32')];
  a.setup(hs);
  f.get(Tk).i32(3).i32_add().i32(-4).i32_and().i32(2).i32_shl().set(sStride);
  f.get(S).set(sRow[0]);
  f.get(S).get(sStride).i32_add().set(sRow[1]);
  queryPairs(f, Tq, Tk, i0, i1, i, n, (R) => {
    rowsAt(f, R, q, i, stride, qRow);
    rowsAt(f, R, z, i, stride, zRow);
    a.scores(R, n, qRow, k, stride, hs, sRow);
    // each row: −∞ after its own position, up to a whole number of vectors; then its softmax
    f.get(n).i32(3).i32_add().i32(-4).i32_and().set(n4);
    for (let r = 0; r < R; r++) {
      f.get(n).i32(R - 1 - r).i32_sub().set(L1); // one past row r's position
      a.fillMinusInf(sRow[r], L1, n4);
      a.softmaxRow(sRow[r], n4);
    }
    a.lastNonzero(sRow[0], n4);
    f.set(L);
    if (R === 2) {
      a.lastNonzero(sRow[1], n4);
      maxInto(f, L, L1);
    }
    a.values(R, L, sRow, v, stride, hs, zRow);
  });
  return f;
}

/** attention_scores(att, q, k, Tq, Tk, stride, hs, i0, i1): att (Tq, Tk) rows i0 … i1−1 for one head. */
export function attentionScores(relaxed: boolean): Code {
  const f = new Code('attention_scores', I32(9));
  const [att, q, k, Tq, Tk, stride, hs, i0, i1] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const a = new AttentionCode(f, relaxed);
  const aStride = f.local('i32'), i = f.local('i32'), n = f.local('i32'), from = f.local('i32');
  const qRow = [f.local('i32'), f.local('i32')], aRow = [f.local('i32'), f.local('i32')];
  a.setup(hs);
  f.get(Tk).i32(2).i32_shl().set(aStride);
  queryPairs(f, Tq, Tk, i0, i1, i, n, (R) => {
    rowsAt(f, R, q, i, stride, qRow);
    rowsAt(f, R, att, i, aStride, aRow);
    a.scores(R, n, qRow, k, stride, hs, aRow);
    for (let r = 0; r < R; r++) {
      f.get(n).i32(R - 1 - r).i32_sub().set(from);
      a.fillMinusInf(aRow[r], from, Tk); // masked: no peeking ahead
    }
  });
  return f;
}

/** attention_values(z, att, v, Tq, Tk, stride, hs, i0, i1): z rows i0 … i1−1 of one head = att rows · v. */
export function attentionValues(relaxed: boolean): Code {
  const f = new Code('attention_values', I32(9));
  const [z, att, v, Tq, Tk, stride, hs, i0, i1] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const a = new AttentionCode(f, relaxed);
  const aStride = f.local('i32'), i = f.local('i32'), n = f.local('i32'), L = f.local('i32'), L1 = f.local('i32');
  const aRow = [f.local('i32'), f.local('i32')], zRow = [f.local('i32'), f.local('i32')];
  f.get(Tk).i32(2).i32_shl().set(aStride);
  queryPairs(f, Tq, Tk, i0, i1, i, n, (R) => {
    rowsAt(f, R, att, i, aStride, aRow);
    rowsAt(f, R, z, i, stride, zRow);
    a.lastNonzero(aRow[0], Tk);
    f.set(L);
    if (R === 2) {
      a.lastNonzero(aRow[1], Tk);
      maxInto(f, L, L1);
    }
    a.values(R, L, aRow, v, stride, hs, zRow);
  });
  return f;
}

/** softmax(x, rows, n): each row of x (rows, n) ← its softmax, in place. */
export function softmax(relaxed: boolean): Code {
  const f = new Code('softmax', I32(3));
  const [x, rows, n] = [0, 1, 2];
  const a = new AttentionCode(f, relaxed);
  const row = f.local('i32'), end = f.local('i32');
  f.get(x).set(row);
  f.get(x).get(rows).get(n).i32_mul().i32(2).i32_shl().i32_add().set(end);
  f.while_(() => f.get(row).get(end).i32_lt_u(), () => {
    a.softmaxRow(row, n);
    f.get(row).get(n).i32(2).i32_shl().i32_add().set(row);
  });
  return f;
}

/**
 * split_heads(dst, src, T, C, hs) makes dst (C/hs, T, hs) from src (T, C); merge_heads(dst, src,
 * T, C, hs) the reverse. Copies of hs floats: whole vectors, then the last hs % 4 one by one.
 */
export function splitHeads(merge: boolean): Code {
  const f = new Code(merge ? 'merge_heads' : 'split_heads', I32(5));
  const [dst, src, T, C, hs] = [0, 1, 2, 3, 4];
  const t = f.local('i32'), h = f.local('i32'), a = f.local('i32'), b = f.local('i32'), end = f.local('i32'), endv = f.local('i32');
  f.i32(0).set(t);
  f.while_(() => f.get(t).get(T).i32_lt_u(), () => {
    f.i32(0).set(h);
    f.while_(() => f.get(h).get(C).i32_lt_u(), () => { // h: the head's first channel
      // a = the (T, C) side, b = the (heads, T, hs) side: (h / hs · T + t) · hs
      f.get(t).get(C).i32_mul().get(h).i32_add().i32(2).i32_shl().set(a);
      f.get(h).get(hs).i32_div_u().get(T).i32_mul().get(t).i32_add().get(hs).i32_mul().i32(2).i32_shl().set(b);
      const [from, to] = merge ? [b, a] : [a, b];
      f.get(from).get(hs).i32(2).i32_shl().i32_add().set(end);
      f.get(from).get(hs).i32(-4).i32_and().i32(2).i32_shl().i32_add().set(endv);
      f.while_(() => f.get(from).get(endv).i32_lt_u(), () => {
        f.get(dst).get(to).i32_add().get(src).get(from).i32_add().v128_load().v128_store();
        f.get(from).i32(16).i32_add().set(from).get(to).i32(16).i32_add().set(to);
      });
      f.while_(() => f.get(from).get(end).i32_lt_u(), () => {
        f.get(dst).get(to).i32_add().get(src).get(from).i32_add().f32_load().f32_store();
        f.get(from).i32(4).i32_add().set(from).get(to).i32(4).i32_add().set(to);
      });
      f.get(h).get(hs).i32_add().set(h);
    });
    f.get(t).i32(1).i32_add().set(t);
  });
  return f;
}

// -----------------------------------------------------------------------------------------------
// jobs: args [out, a, b, (c,) B, Tq, Tk, hs, NH, rowMajor, …] as i32 words. The arrays are laid out
// (B, NH, T, hs), each head's rows contiguous, or with rowMajor (B, T, C), C = NH·hs, as the model has them.

/** Query rows per work item: blocks start at even rows, as the pairing above needs. */
export const QUERY_BLOCK = 32;

interface Item { b: number; h: number; i0: number; i1: number; Tq: number; Tk: number; hs: number; NH: number; rowMajor: number; stride: number }

/**
 * Decodes item → (batch element b, head h, block of query rows [i0, i1)) into new locals, from
 * the args words B, Tq, Tk, hs, NH, rowMajor starting at byte offset `off` (B's).
 */
function decodeItem(f: Code, args: number, item: number, off: number): Item {
  const l: Item = {
    b: f.local('i32'), h: f.local('i32'), i0: f.local('i32'), i1: f.local('i32'), Tq: f.local('i32'), Tk: f.local('i32'),
    hs: f.local('i32'), NH: f.local('i32'), rowMajor: f.local('i32'), stride: f.local('i32'),
  };
  const nQB = f.local('i32'), per = f.local('i32'), rem = f.local('i32');
  f.get(args).i32_load(off + 4).set(l.Tq);
  f.get(args).i32_load(off + 8).set(l.Tk);
  f.get(args).i32_load(off + 12).set(l.hs);
  f.get(args).i32_load(off + 16).set(l.NH);
  f.get(args).i32_load(off + 20).set(l.rowMajor);
  // a row is hs floats, or C = NH·hs with rowMajor
  f.get(l.hs).get(l.NH).i32_mul().get(l.hs).get(l.rowMajor).select().i32(2).i32_shl().set(l.stride);
  f.get(l.Tq).i32(QUERY_BLOCK - 1).i32_add().i32(QUERY_BLOCK).i32_div_u().set(nQB);
  f.get(l.NH).get(nQB).i32_mul().set(per);
  f.get(item).get(per).i32_div_u().set(l.b);
  f.get(item).get(per).i32_rem_u().set(rem);
  f.get(rem).get(nQB).i32_div_u().set(l.h);
  // the last blocks (the most keys) first
  f.get(nQB).i32(1).i32_sub().get(rem).get(nQB).i32_rem_u().i32_sub().i32(QUERY_BLOCK).i32_mul().set(l.i0);
  f.get(l.i0).i32(QUERY_BLOCK).i32_add().set(l.i1);
  f.when(() => f.get(l.i1).get(l.Tq).i32_gt_u(), () => f.get(l.Tq).set(l.i1));
  return l;
}

/** on the stack: the byte address of row 0 of head h of batch element b in the array at args word `at`, of `rows` rows */
function headAt(f: Code, args: number, at: number, it: Item, rows: number): void {
  f.get(args).i32_load(at);
  // rowMajor: (b · rows · NH + h) · hs floats in; else ((b · NH + h) · rows) · hs
  f.get(it.b).get(rows).i32_mul().get(it.NH).i32_mul().get(it.h).i32_add();
  f.get(it.b).get(it.NH).i32_mul().get(it.h).i32_add().get(rows).i32_mul();
  f.get(it.rowMajor).select().get(it.hs).i32_mul().i32(2).i32_shl().i32_add();
}

/** on the stack: the byte address of att[b, h] for att (B, NH, Tq, Tk) at args word `at` */
function matrixAt(f: Code, args: number, at: number, it: Item): void {
  f.get(args).i32_load(at);
  f.get(it.b).get(it.NH).i32_mul().get(it.h).i32_add().get(it.Tq).i32_mul().get(it.Tk).i32_mul().i32(2).i32_shl().i32_add();
}

/** attention_job: args [z, q, k, v, B, Tq, Tk, hs, NH, rowMajor, S, Sbytes]; item → attention(...) in the thread's S. */
export function attentionJob(index: number): Code {
  const f = new Code('attention_job', I32(3));
  const [args, item, thread] = [0, 1, 2];
  const it = decodeItem(f, args, item, 16);
  headAt(f, args, 0, it, it.Tq);
  headAt(f, args, 4, it, it.Tq);
  headAt(f, args, 8, it, it.Tk);
  headAt(f, args, 12, it, it.Tk);
  f.get(it.Tq).get(it.Tk).get(it.stride).get(it.hs).get(it.i0).get(it.i1);
  f.get(args).i32_load(40).get(thread).get(args).i32_load(44).i32_mul().i32_add(); // this thread's S
  f.call(index);
  return f;
}

/** attention_scores_job: args [att, q, k, B, Tq, Tk, hs, NH, rowMajor]; att is (B, NH, Tq, Tk). */
export function attentionScoresJob(index: number): Code {
  const f = new Code('attention_scores_job', I32(3));
  const [args, item] = [0, 1];
  const it = decodeItem(f, args, item, 12);
  matrixAt(f, args, 0, it);
  headAt(f, args, 4, it, it.Tq);
  headAt(f, args, 8, it, it.Tk);
  f.get(it.Tq).get(it.Tk).get(it.stride).get(it.hs).get(it.i0).get(it.i1);
  f.call(index);
  return f;
}

/** attention_values_job: args [z, att, v, B, Tq, Tk, hs, NH, rowMajor]. */
export function attentionValuesJob(index: number): Code {
  const f = new Code('attention_values_job', I32(3));
  const [args, item] = [0, 1];
  const it = decodeItem(f, args, item, 12);
  headAt(f, args, 0, it, it.Tq);
  matrixAt(f, args, 4, it);
  headAt(f, args, 8, it, it.Tk);
  f.get(it.Tq).get(it.Tk).get(it.stride).get(it.hs).get(it.i0).get(it.i1);
  f.call(index);
  return f;
}

/** softmax_job: args [x, rows, n, chunk]; item j does rows j·chunk … +chunk. */
export function softmaxJob(index: number): Code {
  const f = new Code('softmax_job', I32(3));
  const [args, item] = [0, 1];
  const r0 = f.local('i32'), r1 = f.local('i32');
  f.get(item).get(args).i32_load(12).i32_mul().set(r0);
  f.get(r0).get(args).i32_load(12).i32_add().set(r1);
  f.when(() => f.get(r1).get(args).i32_load(4).i32_gt_u(), () => f.get(args).i32_load(4).set(r1));
  f.get(args).i32_load(0).get(r0).get(args).i32_load(8).i32_mul().i32(2).i32_shl().i32_add();
  f.get(r1).get(r0).i32_sub().get(args).i32_load(8).call(index);
  return f;
}
