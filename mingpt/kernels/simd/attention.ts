/**
 * The attention kernels of ../js.ts as SIMD: the fused causal attention (attentionForward) and
 * the three steps the model takes when a hook wants the scores or the pattern
 * (attentionScoresForward, softmaxRows in ./kernels.ts, attentionValuesForward). The fused one
 * gives bit for bit the z of the three steps (./wasm_attention.ts says why).
 *
 * q, k, v are copied into this thread's loose memory a stage at a time — whole batch elements
 * when one fits, else groups of heads (columns) of one — each head's rows made contiguous there
 * (split_heads) unless there are only a few queries, and the module's kernels run on them, the
 * items (batch element, head, block of queries) shared among the kernel threads.
 */
import { workScratch } from './memory.ts';
import { allocBytes, type Scratch } from './scratch.ts';
import { jobThreads, runJob } from './threads.ts';
import { QUERY_BLOCK } from './wasm_attention.ts';

interface Stage { b0: number; nb: number; h0: number; g: number }

/**
 * B batch elements × NH heads cut into stages that fit `room` bytes, given the bytes a stage of
 * nb elements × g heads needs: nb > 1 only with all the heads, g < NH only with one element.
 */
function stages(B: number, NH: number, room: number, need: (nb: number, g: number) => number, what: string): Stage[] {
  const out: Stage[] = [];
  if (need(1, NH) <= room) {
    let nb = Math.min(B, Math.max(1, Math.floor(room / need(1, NH))));
    while (nb > 1 && need(nb, NH) > room) nb--;
    for (let b0 = 0; b0 < B; b0 += nb) out.push({ b0, nb: Math.min(nb, B - b0), h0: 0, g: NH });
    return out;
  }
  let g = NH - 1;
  while (g > 0 && need(1, g) > room) g--;
  if (g === 0) throw new Error(`${what}: one head of this sequence does not fit in the kernel memory (${room} bytes)`);
  for (let b0 = 0; b0 < B; b0++) for (let h0 = 0; h0 < NH; h0 += g) out.push({ b0, nb: 1, h0, g: Math.min(g, NH - h0) });
  return out;
}

/**
 * Fewer queries than this (a few rows recomputed, a token generated with a cache of keys) read
 * each key too few times for the head-major layout to repay its reshuffle: the kernels then read
 * the rows where the model has them, C floats apart.
 */
const ROW_MAJOR_BELOW = 16;

/**
 * The stage's part of a (B, rows, C) — its batch elements, its heads' columns — as a new scratch
 * array: (nb, g, rows, hs), each head's rows contiguous, through `raw`, room for (rows, g·hs);
 * or, rowMajor, as it is: (nb, rows, g·hs).
 */
function stageIn(s: Scratch, a: Float32Array, st: Stage, rows: number, C: number, hs: number, raw: number, rowMajor: boolean): number {
  const w = st.g * hs, p = s.alloc(st.nb * rows * w);
  for (let b = 0; b < st.nb; b++) {
    const first = (st.b0 + b) * rows * C, to = rowMajor ? p + b * rows * w * 4 : raw;
    if (w === C) s.put(to, a, first, rows * C);
    else for (let r = 0; r < rows; r++) s.put(to + r * w * 4, a, first + r * C + st.h0 * hs, w);
    if (!rowMajor) s.km.exports.split_heads(p + b * rows * w * 4, raw, rows, w, hs);
  }
  return p;
}

/** The inverse of stageIn: the scratch array at p → the stage's part of a (B, rows, C). */
function stageOut(s: Scratch, a: Float32Array, p: number, st: Stage, rows: number, C: number, hs: number, raw: number, rowMajor: boolean): void {
  const w = st.g * hs;
  for (let b = 0; b < st.nb; b++) {
    const from = rowMajor ? p + b * rows * w * 4 : raw;
    if (!rowMajor) s.km.exports.merge_heads(raw, p + b * rows * w * 4, rows, w, hs);
    const first = (st.b0 + b) * rows * C;
    if (w === C) s.copyOut(a, first, from, rows * C);
    else for (let r = 0; r < rows; r++) s.copyOut(a, first + r * C + st.h0 * hs, from + r * w * 4, w);
  }
}

/** The keys all Tq queries see together (query i sees Tk − Tq + i + 1). */
const visibleKeys = (Tq: number, Tk: number) => Tq * (Tk - Tq) + (Tq * (Tq + 1)) / 2;
const blocks = (Tq: number) => Math.ceil(Tq / QUERY_BLOCK);

/** z (B, Tq, C) = causal softmax(q · kᵀ / √hs) · v, head by head; q (B, Tq, C), k and v (B, Tk, C). */
export function attentionForward(
  z: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array,
  B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const s = workScratch(), hs = C / NH;
  const rowFloats = 2 * Math.ceil(Tk / 4) * 4; // each thread's two rows of scores
  const S = s.alloc(jobThreads() * rowFloats);
  const need = (nb: number, g: number) => allocBytes(Tk * g * hs) + 2 * allocBytes(nb * Tq * g * hs) + 2 * allocBytes(nb * Tk * g * hs);
  const rm = Tq < ROW_MAJOR_BELOW;
  for (const st of stages(B, NH, s.room, need, 'attentionForward')) {
    const mark = s.mark(), raw = rm ? 0 : s.alloc(Tk * st.g * hs);
    const qp = stageIn(s, q, st, Tq, C, hs, raw, rm), kp = stageIn(s, k, st, Tk, C, hs, raw, rm), vp = stageIn(s, v, st, Tk, C, hs, raw, rm);
    const zp = s.alloc(st.nb * Tq * st.g * hs);
    const args = s.args([zp, qp, kp, vp, st.nb, Tq, Tk, hs, st.g, +rm, S, rowFloats * 4]);
    runJob(s.km, 'attention_job', args, st.nb * st.g * blocks(Tq), st.nb * st.g * visibleKeys(Tq, Tk) * hs * 4);
    stageOut(s, z, zp, st, Tq, C, hs, raw, rm);
    s.release(mark);
  }
}

/** att (B, NH, Tq, Tk) = q · kᵀ / √hs with the causal mask (−∞ after each query's position). */
export function attentionScoresForward(
  att: Float32Array, q: Float32Array, k: Float32Array, B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const s = workScratch(), hs = C / NH;
  const need = (nb: number, g: number) => allocBytes(Tk * g * hs) + allocBytes(nb * Tq * g * hs) + allocBytes(nb * Tk * g * hs) + allocBytes(nb * g * Tq * Tk);
  const rm = Tq < ROW_MAJOR_BELOW;
  for (const st of stages(B, NH, s.room, need, 'attentionScoresForward')) {
    const mark = s.mark(), raw = rm ? 0 : s.alloc(Tk * st.g * hs);
    const qp = stageIn(s, q, st, Tq, C, hs, raw, rm), kp = stageIn(s, k, st, Tk, C, hs, raw, rm);
    const ap = s.alloc(st.nb * st.g * Tq * Tk);
    const args = s.args([ap, qp, kp, st.nb, Tq, Tk, hs, st.g, +rm]);
    runJob(s.km, 'attention_scores_job', args, st.nb * st.g * blocks(Tq), st.nb * st.g * visibleKeys(Tq, Tk) * hs * 2);
    s.copyOut(att, (st.b0 * NH + st.h0) * Tq * Tk, ap, st.nb * st.g * Tq * Tk); // (the stage's matrices are consecutive in att)
    s.release(mark);
  }
}

/** z (B, Tq, C) = att (B, NH, Tq, Tk) · v (B, Tk, C), head by head. */
export function attentionValuesForward(
  z: Float32Array, att: Float32Array, v: Float32Array, B: number, Tq: number, Tk: number, C: number, NH: number,
): void {
  const s = workScratch(), hs = C / NH;
  const need = (nb: number, g: number) => allocBytes(Tk * g * hs) + allocBytes(nb * g * Tq * Tk) + allocBytes(nb * Tk * g * hs) + allocBytes(nb * Tq * g * hs);
  const rm = Tq < ROW_MAJOR_BELOW;
  for (const st of stages(B, NH, s.room, need, 'attentionValuesForward')) {
    const mark = s.mark(), raw = rm ? 0 : s.alloc(Tk * st.g * hs);
    const ap = s.copyIn(att, (st.b0 * NH + st.h0) * Tq * Tk, st.nb * st.g * Tq * Tk);
    const vp = stageIn(s, v, st, Tk, C, hs, raw, rm), zp = s.alloc(st.nb * Tq * st.g * hs);
    const args = s.args([zp, ap, vp, st.nb, Tq, Tk, hs, st.g, +rm]);
    runJob(s.km, 'attention_values_job', args, st.nb * st.g * blocks(Tq), st.nb * st.g * Tq * Tk * hs * 2);
    stageOut(s, z, zp, st, Tq, C, hs, raw, rm);
    s.release(mark);
  }
}
