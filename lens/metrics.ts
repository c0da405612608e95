/**
 * The few numbers every experiment reads off logits, written once:
 *
 * - logSumExp / logSoftmaxAt: log-probabilities, computed stably (subtract the max first);
 * - logitDiff: logit(token) − logit(other), the assignment's and the IOI paper's metric, read off
 *   logits; logitDiffs: the same straight from the last block's output, for two logits' work;
 *   logitDirection: the unembedding direction W_U[:, token] − W_U[:, other] it reads along;
 * - firstDifference: the first position where two token sequences differ.
 */
import type { GPT } from '../mingpt/model.ts';
import { takeRows } from '../mingpt/model.ts';
import { matmulForward } from '../mingpt/kernels/index.ts';

/** log Σ exp(row[i]) over row = x[offset … offset + n), in doubles; `max`: the row's maximum, when the caller has it already. */
export function logSumExp(x: ArrayLike<number>, offset = 0, n = x.length - offset, max = rowMax(x, offset, n)): number {
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(x[offset + i] - max);
  return Math.log(sum) + max;
}

function rowMax(x: ArrayLike<number>, offset: number, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (x[offset + i] > max) max = x[offset + i];
  return max;
}

/** log softmax(row)[index] for the row x[offset … offset + n); `max` as for logSumExp. */
export function logSoftmaxAt(x: ArrayLike<number>, index: number, offset = 0, n = x.length - offset, max?: number): number {
  return x[offset + index] - logSumExp(x, offset, n, max);
}

/** softmax of one row into a new Float64Array (for printing probabilities). */
export function softmax(x: ArrayLike<number>, offset = 0, n = x.length - offset): Float64Array {
  const lse = logSumExp(x, offset, n), out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.exp(x[offset + i] - lse);
  return out;
}

/** logit(token) − logit(other) in one row of logits (V) starting at `offset`. */
export function logitDiff(logits: ArrayLike<number>, token: number, other: number, offset = 0): number {
  return logits[offset + token] - logits[offset + other];
}

/**
 * logit(token[i]) − logit(other[i]) from the last block's output at n rows, x (n, C): the final
 * layer norm, then only the logits of the tokens asked for, on the same matmul kernel as the
 * model's vocabulary projection (so the same numbers as the full logits give, for a few dot
 * products per row instead of vocab_size).
 */
export function logitDiffs(model: GPT, x: Float32Array, token: readonly number[], other: readonly number[]): number[] {
  const C = model.config.n_embd, n = token.length;
  if (other.length !== n || x.length !== n * C) throw new Error(`logitDiffs: ${n} token ids, ${other.length} other ids and ${x.length / C} rows`);
  const ids = [...new Set([...token, ...other])], col = new Map(ids.map((id, j) => [id, j]));
  const xf = model.transformer.ln_f.forward(x, n, 1); // (n, C)
  const logits = new Float32Array(n * ids.length); // (n, ids): those columns of the vocabulary projection
  matmulForward(logits, xf, takeRows(model.lm_head.weight, C, ids), null, n, C, ids.length);
  return token.map((t, i) => logits[i * ids.length + col.get(t)!] - logits[i * ids.length + col.get(other[i])!]);
}

/**
 * d = W_U[:, token] − W_U[:, other] (C), in doubles: logit(token) − logit(other) is ln_f(x) · d
 * (without `other`, d = W_U[:, token], the direction of logit(token) alone).
 */
export function logitDirection(model: GPT, token: number, other?: number): Float64Array {
  const C = model.config.n_embd, W = model.lm_head.weight, d = new Float64Array(C);
  for (let c = 0; c < C; c++) d[c] = W[token * C + c] - (other === undefined ? 0 : W[other * C + c]);
  return d;
}

/** The first position where a and b differ (−1 when they agree everywhere they both have). */
export function firstDifference(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
