/**
 * A very small WebAssembly assembler: just enough to write the SIMD kernels (./kernels_wasm.ts)
 * as readable TypeScript and turn them into a module's bytes at startup. No native toolchain, no
 * committed binary: the bytes you run are made from the source you read.
 *
 * A function body is built with `Code`, one method per instruction, named after the instruction
 * in the WebAssembly text format (`f32x4_add` is `f32x4.add`). Locals are numbers handed out by
 * `Code.local(type)`. `wasmModule()` wraps the functions into a module that imports one shared
 * memory ("env", "memory") and exports every function by name.
 *
 * The binary format: https://webassembly.github.io/spec/core/binary/ (opcodes below are from
 * there and from the SIMD and relaxed-SIMD proposals).
 */

type ValType = 'i32' | 'f32' | 'f64' | 'v128';
const VALTYPE: Record<ValType, number> = { i32: 0x7f, f32: 0x7d, f64: 0x7c, v128: 0x7b };

/** Unsigned LEB128, the variable-length integers of the binary format. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** Signed LEB128 (for i32.const). */
function sleb(n: number): number[] {
  const out: number[] = [];
  n |= 0;
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const utf8 = (s: string) => [...uleb(Buffer.byteLength(s)), ...Buffer.from(s, 'utf8')];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];

/** The body of one function: its parameters, its extra locals and its instructions. */
export class Code {
  readonly bytes: number[] = [];
  private readonly types: ValType[];
  private readonly extra: ValType[] = [];
  constructor(readonly name: string, readonly params: ValType[], readonly result: ValType | null = null) {
    this.types = [...params];
  }
  /** A new local of the given type; returns its index. Parameters are locals 0 … params-1. */
  local(type: ValType): number {
    this.extra.push(type);
    this.types.push(type);
    return this.types.length - 1;
  }
  /** The encoded locals declaration and body (the code section's entry). */
  encode(): number[] {
    const groups: number[][] = this.extra.map((t) => [1, VALTYPE[t]]);
    const body = [...vec(groups), ...this.bytes, 0x0b];
    return [...uleb(body.length), ...body];
  }

  /** while (cond) body — `cond` leaves an i32 on the stack; `body` may not branch out of the loop */
  while_(cond: () => void, body: () => void): this {
    this.block().loop();
    cond();
    this.i32_eqz().br_if(1);
    body();
    return this.br(0).end().end();
  }
  /** if (cond) then — `cond` leaves an i32 on the stack */
  when(cond: () => void, then: () => void): this {
    cond();
    this.if_();
    then();
    return this.end();
  }

  private op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  private simd(code: number, ...rest: number[]): this {
    return this.op(0xfd, ...uleb(code), ...rest);
  }
  /** memarg: alignment (log2 bytes) and a constant byte offset added to the address */
  private mem(align: number, offset: number): number[] {
    return [...uleb(align), ...uleb(offset)];
  }

  // control
  block(): this { return this.op(0x02, 0x40); }
  loop(): this { return this.op(0x03, 0x40); }
  if_(): this { return this.op(0x04, 0x40); }
  else_(): this { return this.op(0x05); }
  end(): this { return this.op(0x0b); }
  br(depth: number): this { return this.op(0x0c, ...uleb(depth)); }
  br_if(depth: number): this { return this.op(0x0d, ...uleb(depth)); }
  /** call the function with this index in the module (its position in wasmModule's list) */
  call(funcIndex: number): this { return this.op(0x10, ...uleb(funcIndex)); }
  /** a if c else b, for stack [a, b, c] */
  select(): this { return this.op(0x1b); }

  // locals
  get(i: number): this { return this.op(0x20, ...uleb(i)); }
  set(i: number): this { return this.op(0x21, ...uleb(i)); }
  tee(i: number): this { return this.op(0x22, ...uleb(i)); }

  // i32
  i32(n: number): this { return this.op(0x41, ...sleb(n)); }
  i32_load(offset = 0): this { return this.op(0x28, ...this.mem(2, offset)); }
  i32_eqz(): this { return this.op(0x45); }
  i32_lt_u(): this { return this.op(0x49); }
  i32_gt_u(): this { return this.op(0x4b); }
  i32_le_u(): this { return this.op(0x4d); }
  i32_add(): this { return this.op(0x6a); }
  i32_sub(): this { return this.op(0x6b); }
  i32_mul(): this { return this.op(0x6c); }
  i32_div_u(): this { return this.op(0x6e); }
  i32_rem_u(): this { return this.op(0x70); }
  i32_and(): this { return this.op(0x71); }
  i32_shl(): this { return this.op(0x74); }
  i32_shr_u(): this { return this.op(0x76); }

  // f32
  f32(x: number): this {
    const b = Buffer.alloc(4);
    b.writeFloatLE(x);
    return this.op(0x43, ...b);
  }
  f32_load(offset = 0): this { return this.op(0x2a, ...this.mem(2, offset)); }
  f32_store(offset = 0): this { return this.op(0x38, ...this.mem(2, offset)); }
  f32_ne(): this { return this.op(0x5c); }
  f32_sqrt(): this { return this.op(0x91); }
  f32_add(): this { return this.op(0x92); }
  f32_sub(): this { return this.op(0x93); }
  f32_mul(): this { return this.op(0x94); }
  f32_div(): this { return this.op(0x95); }
  f32_max(): this { return this.op(0x97); }
  f32_convert_i32_u(): this { return this.op(0xb3); }
  f32_demote_f64(): this { return this.op(0xb6); }

  // f64 (sums kept in double precision, as the plain kernels keep them)
  f64_sqrt(): this { return this.op(0x9f); }
  f64_add(): this { return this.op(0xa0); }
  f64_sub(): this { return this.op(0xa1); }
  f64_mul(): this { return this.op(0xa2); }
  f64_div(): this { return this.op(0xa3); }
  f64_convert_i32_u(): this { return this.op(0xb8); }
  f64_promote_f32(): this { return this.op(0xbb); }

  // v128: four f32 lanes
  v128_load(offset = 0): this { return this.simd(0x00, ...this.mem(0, offset)); } // align 1: rows need not be 16-byte aligned
  v128_store(offset = 0): this { return this.simd(0x0b, ...this.mem(0, offset)); }
  /** one f32 from memory into all four lanes */
  v128_load32_splat(offset = 0): this { return this.simd(0x09, ...this.mem(2, offset)); }
  /** a constant vector of four i32 lanes */
  i32x4_const(lanes: [number, number, number, number]): this {
    const b = Buffer.alloc(16);
    lanes.forEach((x, i) => b.writeInt32LE(x, 4 * i));
    return this.simd(0x0c, ...b);
  }
  /** four f32 lanes picked from the eight of [a, b] (lanes 0-3 are a's, 4-7 b's) */
  shuffle32(lanes: [number, number, number, number]): this {
    return this.simd(0x0d, ...lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]));
  }
  /** all four lanes 0 */
  v128_zero(): this { return this.simd(0x0c, ...new Array(16).fill(0)); }
  f32x4_splat(): this { return this.simd(0x13); }
  /** the constant c in all four lanes (f32.const c, f32x4.splat) */
  f32x4_const(c: number): this { return this.f32(c).f32x4_splat(); }
  f32x4_extract_lane(lane: number): this { return this.simd(0x1f, lane); }
  f32x4_replace_lane(lane: number): this { return this.simd(0x20, lane); }
  /** lane-wise comparisons: all ones where true, zeros where false */
  f32x4_lt(): this { return this.simd(0x43); }
  v128_and(): this { return this.simd(0x4e); }
  /** a & ~b */
  v128_andnot(): this { return this.simd(0x4f); }
  f32x4_nearest(): this { return this.simd(0x6a); }
  f32x4_add(): this { return this.simd(0xe4); }
  f32x4_sub(): this { return this.simd(0xe5); }
  f32x4_mul(): this { return this.simd(0xe6); }
  f32x4_div(): this { return this.simd(0xe7); }
  /** b if a < b else a: the plain x86 max (f32x4.max, which also orders −0 < +0 and spreads NaN, takes seven instructions) */
  f32x4_pmax(): this { return this.simd(0xeb); }
  /** b if b < a else a */
  f32x4_pmin(): this { return this.simd(0xea); }
  // v128: two f64 lanes
  f64x2_splat(): this { return this.simd(0x14); }
  f64x2_extract_lane(lane: number): this { return this.simd(0x21, lane); }
  f64x2_add(): this { return this.simd(0xf0); }
  f64x2_sub(): this { return this.simd(0xf1); }
  f64x2_mul(): this { return this.simd(0xf2); }
  /** f32 lanes 0 and 1 as two f64 */
  f64x2_promote_low_f32x4(): this { return this.simd(0x5f); }
  /** two f64 lanes as f32 lanes 0 and 1 (lanes 2 and 3 zero) */
  f32x4_demote_f64x2_zero(): this { return this.simd(0x5e); }
  // v128: four i32 lanes (to build powers of two from their bits)
  i32x4_splat(): this { return this.simd(0x11); }
  i32x4_lt_s(): this { return this.simd(0x39); }
  i32x4_shl(): this { return this.simd(0xab); }
  /** relaxed SIMD: a · b + c, fused or not as the hardware does it (the same way every time) */
  f32x4_relaxed_madd(): this { return this.simd(0x105); }
}

/**
 * A module of the given functions: imports ("env", "memory"), a shared memory of `pages` pages
 * at least and at most `maxPages`; exports each function under its name, and names it so in the
 * name section.
 */
export function wasmModule(funcs: Code[], memory: { minPages: number; maxPages: number }): Uint8Array {
  // one function type per function (duplicates are allowed and keep this simple)
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((t) => [VALTYPE[t]])), ...(f.result ? [1, VALTYPE[f.result]] : [0])]);
  const imports = [[...utf8('env'), ...utf8('memory'), 0x02, 0x03, ...uleb(memory.minPages), ...uleb(memory.maxPages)]];
  const exports = funcs.map((f, i) => [...utf8(f.name), 0x00, ...uleb(i)]);
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec(funcs.map((_, i) => uleb(i)))),
    ...section(7, vec(exports)),
    ...section(10, vec(funcs.map((f) => f.encode()))),
    // the "name" custom section: function names, so that profiles and stack traces show them
    ...section(0, [...utf8('name'), ...section(1, vec(funcs.map((f, i) => [...uleb(i), ...utf8(f.name)])))]),
  ]);
}
