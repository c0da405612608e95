/**
 * A kernel call's room in a WebAssembly memory. The SIMD kernels can only read their memory, so
 * a call copies the activations it is given into a scratch area there, runs, and copies the
 * results out. Scratch hands out the area from the start, 16-byte aligned, with 16 bytes to
 * spare after each array (the vector kernels may read or write up to 3 floats past an end); its
 * first 128 bytes hold a job's arguments (./threads.ts). Nothing is allocated in JavaScript: the
 * areas are made once, with their memory.
 */
import type { KernelMemory } from './memory.ts';

const ARGS_BYTES = 128;

/** byte offsets rounded up to 16 (a vector); not `& ~15`: offsets may pass 2³¹ */
const align = (x: number) => Math.ceil(x / 16) * 16;

/** Bytes that alloc(n) takes. */
export const allocBytes = (n: number) => align(n * 4 + 16);

export class Scratch {
  private at: number;
  constructor(readonly km: KernelMemory, private readonly base: number, private readonly end: number) {
    this.at = base + ARGS_BYTES;
  }

  /** bytes still free */
  get room(): number {
    return this.end - this.at;
  }

  /** n floats: their byte address */
  alloc(n: number): number {
    const p = this.at;
    if (p + allocBytes(n) > this.end) throw new Error(`internal: SIMD kernel scratch overflow (${n} floats, ${this.room} bytes free)`);
    this.at += allocBytes(n);
    return p;
  }

  /** a copy of a[from … from + n): its byte address */
  copyIn(a: Float32Array, from: number, n: number): number {
    const p = this.alloc(n);
    this.put(p, a, from, n);
    return p;
  }

  /** the n floats at byte address p = a[from … from + n) */
  put(p: number, a: Float32Array, from: number, n: number): void {
    this.km.f32.set(a.subarray(from, from + n), p >>> 2);
  }

  /** dst[at … at + n) = the n floats at byte address p */
  copyOut(dst: Float32Array, at: number, p: number, n: number): void {
    dst.set(this.km.f32.subarray(p >>> 2, (p >>> 2) + n), at);
  }

  /** Writes a job's arguments (i32 words); returns their byte address. */
  args(words: number[]): number {
    this.km.i32.set(words, this.base >>> 2); // (addresses past 2³¹ wrap, as wasm's i32 reads them)
    return this.base;
  }

  /** Where the next alloc starts: give it to `release` to free everything allocated since. */
  mark(): number {
    return this.at;
  }
  release(mark: number): void {
    this.at = mark;
  }
}
