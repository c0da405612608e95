/**
 * The elementwise and row-wise kernels as WebAssembly: GELU and its backward, the residual add
 * and the two steps of the layer norm and their backward. Same operations as their twins in ../js.ts, on byte
 * addresses in the module's memory, four lanes at a time. gelu, gelu_backward and residual work
 * on whole vectors (the caller leaves room for up to 3 floats past N); the layer norm handles each
 * row's last C % 4 numbers one by one, so rows need not start on a vector.
 */
import { Code } from './wasm.ts';
import { addAsDoubles, doubleSum, exp4, expLocals, type ExpLocals } from './wasm_math.ts';

/** e = e^{−2u} of the GELU at x, u = √(2/π)·(x + 0.044715·x³), with −2u clamped to [−87, 88] (NaN stays NaN). */
function expMinus2u(f: Code, x: number, e: number, el: ExpLocals): void {
  f.get(x).get(x).f32x4_mul().get(x).f32x4_mul().f32x4_const(0.044715).f32x4_mul().get(x).f32x4_add();
  f.f32x4_const(-2 * Math.sqrt(2 / Math.PI)).f32x4_mul();
  f.f32x4_const(-87).f32x4_pmax().f32x4_const(88).f32x4_pmin().set(e);
  exp4(f, e, e, el);
}

/**
 * gelu(out, inp, N): GPT-2's tanh form, 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³),
 * rewritten with tanh(u) = 1 − 2/(e^{2u} + 1) as x / (1 + e^{−2u}). −2u is clamped to [−87, 88],
 * where e^{−2u} is a normal float32 (the GELU is then x or 0 to float32). out may be inp.
 */
export function gelu(): Code {
  const f = new Code('gelu', ['i32', 'i32', 'i32']);
  const [out, inp, N] = [0, 1, 2];
  const p = f.local('i32'), end = f.local('i32'), q = f.local('i32');
  const x = f.local('v128'), t = f.local('v128'), el = expLocals(f);
  f.get(inp).set(p).get(out).set(q);
  f.get(inp).get(N).i32(2).i32_shl().i32_add().set(end);
  f.while_(() => f.get(p).get(end).i32_lt_u(), () => {
    f.get(p).v128_load().set(x);
    expMinus2u(f, x, t, el);
    // out = x / (1 + e^t)
    f.get(q).get(x).get(t).f32x4_const(1).f32x4_add().f32x4_div().v128_store();
    f.get(p).i32(16).i32_add().set(p).get(q).i32(16).i32_add().set(q);
  });
  return f;
}

/** gelu_job: args [out, inp, N, chunk] (chunk a multiple of 4); item j does j·chunk … +chunk. */
export function geluJob(index: number): Code {
  const f = new Code('gelu_job', ['i32', 'i32', 'i32']);
  const [args, item] = [0, 1];
  const at = f.local('i32'), n = f.local('i32');
  f.get(item).get(args).i32_load(12).i32_mul().set(at);
  f.get(args).i32_load(8).get(at).i32_sub().set(n);
  f.when(() => f.get(n).get(args).i32_load(12).i32_gt_u(), () => f.get(args).i32_load(12).set(n));
  f.get(args).i32_load(0).get(at).i32(2).i32_shl().i32_add();
  f.get(args).i32_load(4).get(at).i32(2).i32_shl().i32_add();
  f.get(n).call(index);
  return f;
}

/** gelu_backward_job: args [dinp, inp, dout, N, chunk] (chunk a multiple of 4); item j does j·chunk … +chunk. */
export function geluBackwardJob(index: number): Code {
  const f = new Code('gelu_backward_job', ['i32', 'i32', 'i32']);
  const [args, item] = [0, 1];
  const at = f.local('i32'), n = f.local('i32');
  f.get(item).get(args).i32_load(16).i32_mul().set(at);
  f.get(args).i32_load(12).get(at).i32_sub().set(n);
  f.when(() => f.get(n).get(args).i32_load(16).i32_gt_u(), () => f.get(args).i32_load(16).set(n));
  for (const word of [0, 4, 8]) f.get(args).i32_load(word).get(at).i32(2).i32_shl().i32_add();
  f.get(n).call(index);
  return f;
}

/**
 * gelu_backward(dinp, inp, dout, N): dinp += dout · GELU'(inp). With e = e^{−2u} (clamped as in
 * gelu) and h = 1 / (1 + e) = ½(1 + tanh u): GELU'(x) = h + x · 2h²e · du/dx, where
 * du/dx = √(2/π)·(1 + 3·0.044715·x²).
 */
export function geluBackward(): Code {
  const f = new Code('gelu_backward', ['i32', 'i32', 'i32', 'i32']);
  const [dinp, inp, dout, N] = [0, 1, 2, 3];
  const off = f.local('i32'), end = f.local('i32'), p = f.local('i32');
  const x = f.local('v128'), e = f.local('v128'), h = f.local('v128'), el = expLocals(f);
  f.get(N).i32(2).i32_shl().set(end);
  f.i32(0).set(off);
  f.while_(() => f.get(off).get(end).i32_lt_u(), () => {
    f.get(inp).get(off).i32_add().v128_load().set(x);
    expMinus2u(f, x, e, el);
    f.f32x4_const(1).get(e).f32x4_const(1).f32x4_add().f32x4_div().set(h); // h = 1 / (1 + e)
    f.get(dinp).get(off).i32_add().tee(p); // (the address dinp is stored to)
    // h + x · 2h²e · √(2/π)(1 + 3·0.044715·x²)
    f.get(x).get(x).f32x4_mul().f32x4_const(3 * 0.044715).f32x4_mul().f32x4_const(1).f32x4_add().f32x4_const(Math.sqrt(2 / Math.PI)).f32x4_mul();
    f.get(x).f32x4_mul().get(h).f32x4_mul().get(h).f32x4_mul().get(e).f32x4_mul().f32x4_const(2).f32x4_mul().get(h).f32x4_add();
    // dinp += dout · that
    f.get(dout).get(off).i32_add().v128_load().f32x4_mul();
    f.get(p).v128_load().f32x4_add().v128_store();
    f.get(off).i32(16).i32_add().set(off);
  });
  return f;
}

/** residual(out, a, b, N): out = a + b. */
export function residual(): Code {
  const f = new Code('residual', ['i32', 'i32', 'i32', 'i32']);
  const [out, a, b, N] = [0, 1, 2, 3];
  const off = f.local('i32'), end = f.local('i32');
  f.get(N).i32(2).i32_shl().set(end);
  f.i32(0).set(off);
  f.while_(() => f.get(off).get(end).i32_lt_u(), () => {
    f.get(out).get(off).i32_add();
    f.get(a).get(off).i32_add().v128_load().get(b).get(off).i32_add().v128_load().f32x4_add().v128_store();
    f.get(off).i32(16).i32_add().set(off);
  });
  return f;
}

/**
 * Locals and the shared pieces of the two layer-norm kernels. Means and variances are summed in
 * doubles, as the plain kernels sum them: a residual stream row of 768 numbers, some in the
 * hundreds, loses about 1e-5 of its mean in float32 lane sums.
 */
class RowCode {
  readonly p: number;
  readonly end: number;
  readonly x: number;
  readonly lo: number;
  readonly hi: number;
  readonly mean: number;
  readonly meanv: number;
  readonly s: number;
  readonly d: number;
  constructor(private readonly f: Code) {
    [this.p, this.end] = [f.local('i32'), f.local('i32')];
    [this.x, this.lo, this.hi, this.meanv] = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
    [this.mean, this.s, this.d] = [f.local('f64'), f.local('f64'), f.local('f64')];
  }

  /** p, end ← the row's start and the end of its whole vectors */
  start(row: number, C: number): void {
    this.f.get(row).set(this.p);
    this.f.get(row).get(C).i32(-4).i32_and().i32(2).i32_shl().i32_add().set(this.end);
  }

  /** body for each whole vector at p, advancing p */
  vectors(body: () => void): void {
    const { f, p, end } = this;
    f.while_(() => f.get(p).get(end).i32_lt_u(), () => {
      body();
      f.get(p).i32(16).i32_add().set(p);
    });
  }

  /** body(j) for each of the C % 4 floats left at p + 4j */
  tail(C: number, body: (j: number) => void): void {
    const f = this.f;
    for (let j = 0; j < 3; j++) f.when(() => f.get(C).i32(3).i32_and().i32(j).i32_gt_u(), () => body(j));
  }

  /** mean (f64), meanv (its f64x2 splat) ← the mean of the row */
  rowMean(row: number, C: number): void {
    const { f, p, x, lo, hi, s, mean, meanv } = this;
    this.start(row, C);
    f.v128_zero().set(lo);
    f.v128_zero().set(hi);
    this.vectors(() => {
      f.get(p).v128_load().set(x);
      addAsDoubles(f, x, lo, hi);
    });
    doubleSum(f, lo, hi);
    f.set(s);
    this.tail(C, (j) => f.get(s).get(p).f32_load(4 * j).f64_promote_f32().f64_add().set(s));
    f.get(s).get(C).f64_convert_i32_u().f64_div().tee(mean).f64x2_splat().set(meanv);
  }
}

/** layernorm_scale(scale, inp, BT, C, eps): scale[i] = √(var(row i) + eps), biased variance. */
export function layernormScale(): Code {
  const f = new Code('layernorm_scale', ['i32', 'i32', 'i32', 'i32', 'f64']);
  const [scale, inp, BT, C, eps] = [0, 1, 2, 3, 4];
  const rc = new RowCode(f);
  const i = f.local('i32'), row = f.local('i32'), dv = f.local('v128');
  f.i32(0).set(i);
  f.while_(() => f.get(i).get(BT).i32_lt_u(), () => {
    f.get(inp).get(i).get(C).i32_mul().i32(2).i32_shl().i32_add().set(row);
    rc.rowMean(row, C);
    // Σ (x − mean)²
    rc.start(row, C);
    f.v128_zero().set(rc.lo);
    f.v128_zero().set(rc.hi);
    rc.vectors(() => {
      f.get(rc.p).v128_load().set(rc.x);
      for (const [acc, lanes] of [[rc.lo, false], [rc.hi, true]] as const) {
        f.get(rc.x);
        if (lanes) f.get(rc.x).shuffle32([2, 3, 2, 3]);
        f.f64x2_promote_low_f32x4().get(rc.meanv).f64x2_sub().set(dv);
        f.get(acc).get(dv).get(dv).f64x2_mul().f64x2_add().set(acc);
      }
    });
    doubleSum(f, rc.lo, rc.hi);
    f.set(rc.s);
    rc.tail(C, (j) => f.get(rc.s).get(rc.p).f32_load(4 * j).f64_promote_f32().get(rc.mean).f64_sub().tee(rc.d).get(rc.d).f64_mul().f64_add().set(rc.s));
    f.get(scale).get(i).i32(2).i32_shl().i32_add();
    f.get(rc.s).get(C).f64_convert_i32_u().f64_div().get(eps).f64_add().f64_sqrt().f32_demote_f64().f32_store();
    f.get(i).i32(1).i32_add().set(i);
  });
  return f;
}

/**
 * layernorm_apply(out, inp, scale, w, b, BT, C): out = (inp − mean) / scale · w + b, row by row
 * (x − mean taken in doubles, then rounded once; the rest in float32).
 */
export function layernormApply(): Code {
  const f = new Code('layernorm_apply', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [out, inp, scale, w, b, BT, C] = [0, 1, 2, 3, 4, 5, 6];
  const rc = new RowCode(f);
  const i = f.local('i32'), row = f.local('i32'), o = f.local('i32'), sv = f.local('v128'), sc = f.local('f32');
  f.i32(0).set(i);
  f.while_(() => f.get(i).get(BT).i32_lt_u(), () => {
    f.get(inp).get(i).get(C).i32_mul().i32(2).i32_shl().i32_add().set(row);
    rc.rowMean(row, C);
    f.get(scale).get(i).i32(2).i32_shl().i32_add().f32_load().tee(sc).f32x4_splat().set(sv);
    // o: the byte offset along the row, the same for out, inp, w and b
    rc.start(row, C);
    f.i32(0).set(o);
    const at = (base: number) => f.get(base).get(i).get(C).i32_mul().i32(2).i32_shl().i32_add().get(o).i32_add();
    rc.vectors(() => {
      at(out);
      f.get(rc.p).v128_load().set(rc.x);
      // x − mean, each half in doubles, back to four floats
      f.get(rc.x).f64x2_promote_low_f32x4().get(rc.meanv).f64x2_sub().f32x4_demote_f64x2_zero();
      f.get(rc.x).get(rc.x).shuffle32([2, 3, 2, 3]).f64x2_promote_low_f32x4().get(rc.meanv).f64x2_sub().f32x4_demote_f64x2_zero();
      f.shuffle32([0, 1, 4, 5]).get(sv).f32x4_div();
      f.get(w).get(o).i32_add().v128_load().f32x4_mul().get(b).get(o).i32_add().v128_load().f32x4_add().v128_store();
      f.get(o).i32(16).i32_add().set(o);
    });
    rc.tail(C, (j) => {
      at(out);
      f.get(rc.p).f32_load(4 * j).f64_promote_f32().get(rc.mean).f64_sub().f32_demote_f64().get(sc).f32_div();
      f.get(w).get(o).i32_add().f32_load(4 * j).f32_mul().get(b).get(o).i32_add().f32_load(4 * j).f32_add().f32_store(4 * j);
    });
    f.get(i).i32(1).i32_add().set(i);
  });
  return f;
}

/**
 * layernorm_apply_backward(dinp, dscale, dout, inp, scale, w, BT, C), the backward of
 * layernorm_apply without the weight's and bias's gradients (../js.ts's layernormApplyBackward
 * has the math): per row, with x̂ = (inp − mean) / scale and dx̂ = dout · w,
 *   dinp += (dx̂ − mean(dx̂)) / scale,   dscale −= Σ dx̂ · x̂ / scale.
 * The mean and the two sums over the row in doubles (as the plain kernel keeps them), the rest in
 * float32 lanes (x − mean in doubles rounded once, as layernorm_apply).
 */
export function layernormApplyBackward(): Code {
  const f = new Code('layernorm_apply_backward', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [dinp, dscale, dout, inp, scale, w, BT, C] = [0, 1, 2, 3, 4, 5, 6, 7];
  const rc = new RowCode(f);
  const i = f.local('i32'), row = f.local('i32'), o = f.local('i32'), sc = f.local('f32'), sv = f.local('v128');
  const xh = f.local('v128'), dxh = f.local('v128'), dlo = f.local('v128'), dhi = f.local('v128'), dot = f.local('f64'), xs = f.local('f32'), ds = f.local('f32');
  /** the address of the same place as rc.p in the array at `base` (row i, byte o along it) */
  const at = (base: number) => f.get(base).get(i).get(C).i32_mul().i32(2).i32_shl().i32_add().get(o).i32_add();
  f.i32(0).set(i);
  f.while_(() => f.get(i).get(BT).i32_lt_u(), () => {
    f.get(inp).get(i).get(C).i32_mul().i32(2).i32_shl().i32_add().set(row);
    rc.rowMean(row, C);
    f.get(scale).get(i).i32(2).i32_shl().i32_add().f32_load().tee(sc).f32x4_splat().set(sv);
    // Σ dx̂ (in lo, hi) and Σ dx̂ · x̂ (in dlo, dhi), as doubles
    rc.start(row, C);
    f.i32(0).set(o);
    for (const v of [rc.lo, rc.hi, dlo, dhi]) f.v128_zero().set(v);
    rc.vectors(() => {
      f.get(rc.p).v128_load().set(rc.x);
      f.get(rc.x).f64x2_promote_low_f32x4().get(rc.meanv).f64x2_sub().f32x4_demote_f64x2_zero();
      f.get(rc.x).get(rc.x).shuffle32([2, 3, 2, 3]).f64x2_promote_low_f32x4().get(rc.meanv).f64x2_sub().f32x4_demote_f64x2_zero();
      f.shuffle32([0, 1, 4, 5]).get(sv).f32x4_div().set(xh);
      at(dout).v128_load().get(w).get(o).i32_add().v128_load().f32x4_mul().set(dxh);
      addAsDoubles(f, dxh, rc.lo, rc.hi);
      f.get(dxh).get(xh).f32x4_mul().set(dxh);
      addAsDoubles(f, dxh, dlo, dhi);
      f.get(o).i32(16).i32_add().set(o);
    });
    doubleSum(f, rc.lo, rc.hi);
    f.set(rc.s);
    doubleSum(f, dlo, dhi);
    f.set(dot);
    rc.tail(C, (j) => {
      f.get(rc.p).f32_load(4 * j).f64_promote_f32().get(rc.mean).f64_sub().f32_demote_f64().get(sc).f32_div().set(xs);
      at(dout).f32_load(4 * j).get(w).get(o).i32_add().f32_load(4 * j).f32_mul().set(ds);
      f.get(rc.s).get(ds).f64_promote_f32().f64_add().set(rc.s);
      f.get(dot).get(ds).get(xs).f32_mul().f64_promote_f32().f64_add().set(dot);
    });
    // dinp += (dx̂ − mean(dx̂)) / scale
    f.get(rc.s).get(C).f64_convert_i32_u().f64_div().f32_demote_f64().f32x4_splat().set(xh);
    rc.start(row, C);
    f.i32(0).set(o);
    rc.vectors(() => {
      at(dinp);
      at(dinp).v128_load();
      at(dout).v128_load().get(w).get(o).i32_add().v128_load().f32x4_mul().get(xh).f32x4_sub().get(sv).f32x4_div();
      f.f32x4_add().v128_store();
      f.get(o).i32(16).i32_add().set(o);
    });
    rc.tail(C, (j) => {
      at(dinp);
      at(dinp).f32_load(4 * j);
      at(dout).f32_load(4 * j).get(w).get(o).i32_add().f32_load(4 * j).f32_mul().get(xh).f32x4_extract_lane(0).f32_sub().get(sc).f32_div();
      f.f32_add().f32_store(4 * j);
    });
    // dscale −= Σ dx̂ · x̂ / scale
    f.get(dscale).get(i).i32(2).i32_shl().i32_add();
    f.get(dscale).get(i).i32(2).i32_shl().i32_add().f32_load().f64_promote_f32().get(dot).get(sc).f64_promote_f32().f64_div().f64_sub().f32_demote_f64().f32_store();
    f.get(i).i32(1).i32_add().set(i);
  });
  return f;
}

/**
 * layernorm_scale_backward(dinp, dscale, inp, scale, BT, C), the backward of layernorm_scale
 * (../js.ts's layernormScaleBackward): dinp += dscale / (C · scale) · (inp − mean), row by row
 * (the mean in doubles, x − mean rounded once, the rest in float32 lanes).
 */
export function layernormScaleBackward(): Code {
  const f = new Code('layernorm_scale_backward', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [dinp, dscale, inp, scale, BT, C] = [0, 1, 2, 3, 4, 5];
  const rc = new RowCode(f);
  const i = f.local('i32'), row = f.local('i32'), o = f.local('i32'), fs = f.local('f32'), fv = f.local('v128');
  const at = (base: number) => f.get(base).get(i).get(C).i32_mul().i32(2).i32_shl().i32_add().get(o).i32_add();
  const word = (base: number) => f.get(base).get(i).i32(2).i32_shl().i32_add().f32_load();
  f.i32(0).set(i);
  f.while_(() => f.get(i).get(BT).i32_lt_u(), () => {
    f.get(inp).get(i).get(C).i32_mul().i32(2).i32_shl().i32_add().set(row);
    rc.rowMean(row, C);
    // the factor dscale / (C · scale), in doubles, rounded once
    word(dscale).f64_promote_f32().get(C).f64_convert_i32_u();
    word(scale).f64_promote_f32().f64_mul().f64_div().f32_demote_f64().tee(fs).f32x4_splat().set(fv);
    rc.start(row, C);
    f.i32(0).set(o);
    rc.vectors(() => {
      f.get(rc.p).v128_load().set(rc.x);
      at(dinp);
      at(dinp).v128_load();
      f.get(rc.x).f64x2_promote_low_f32x4().get(rc.meanv).f64x2_sub().f32x4_demote_f64x2_zero();
      f.get(rc.x).get(rc.x).shuffle32([2, 3, 2, 3]).f64x2_promote_low_f32x4().get(rc.meanv).f64x2_sub().f32x4_demote_f64x2_zero();
      f.shuffle32([0, 1, 4, 5]).get(fv).f32x4_mul().f32x4_add().v128_store();
      f.get(o).i32(16).i32_add().set(o);
    });
    rc.tail(C, (j) => {
      at(dinp);
      at(dinp).f32_load(4 * j);
      f.get(rc.p).f32_load(4 * j).f64_promote_f32().get(rc.mean).f64_sub().f32_demote_f64().get(fs).f32_mul();
      f.f32_add().f32_store(4 * j);
    });
    f.get(i).i32(1).i32_add().set(i);
  });
  return f;
}

