/**
 * The few numbers every experiment reads off logits, written once:
 *
 * - logSumExp / logSoftmaxAt: log-probabilities, computed stably (subtract the max first);
 * - logitDiff: logit(token) − logit(other), the assignment's and the IOI paper's metric;
 * - firstDifference: the first position where two token sequences differ.
 */

/** log Σ exp(row[i]) over row = x[offset … offset + n), in doubles. */
export function logSumExp(x: ArrayLike<number>, offset = 0, n = x.length - offset): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (x[offset + i] > max) max = x[offset + i];
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(x[offset + i] - max);
  return Math.log(sum) + max;
}

/** log softmax(row)[index] for the row x[offset … offset + n). */
export function logSoftmaxAt(x: ArrayLike<number>, index: number, offset = 0, n = x.length - offset): number {
  return x[offset + index] - logSumExp(x, offset, n);
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

/** The first position where a and b differ (−1 when they agree everywhere they both have). */
export function firstDifference(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
