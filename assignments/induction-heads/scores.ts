/**
 * The data and the head scores of the induction-heads experiment.
 *
 *   - repeatedTokens: a seeded batch of [BOS, x1 … xn, x1 … xn]
 *   - three scores per head, each the mean of one diagonal stripe of its attention pattern: the
 *     stripes are detection patterns for lens/head_detector.ts, which does the scoring
 *   - detection: a head is flagged when its score stands out from the other heads' scores
 *     (mean + k·std over all heads), the "dynamic threshold" of the seed project
 *   - precision, recall and F1 of the flagged heads against a labelled list
 *
 * Positions in a sequence of length T = 2n + 1:
 *
 *     0      1 … n          n+1 … 2n
 *     BOS    first copy     second copy      (position t of the second copy holds x_{t−n})
 *
 * For a query t in the second copy, its token appeared before at t − n; the token that followed
 * it then sits at t − n + 1. Those two offsets, and the previous position t − 1, are the stripes
 * the three scores read.
 */
import { RNG } from '../../mingpt/utils.ts';
import { headName } from '../../lens/heads.ts';
import { scoreHeads, type DetectionPattern } from '../../lens/head_detector.ts';

// -----------------------------------------------------------------------------------------------
// the data

export interface RepeatedTokensOptions {
  batch: number;
  /** n, the length of each copy */
  seqLen: number;
  /** random tokens are drawn uniformly from the ids [lo, hi) */
  lo: number;
  hi: number;
  bos: number;
  seed: number;
}

/** B sequences [BOS, x1 … xn, x1 … xn] with the x drawn independently (repeats allowed). */
export function repeatedTokens(o: RepeatedTokensOptions): number[][] {
  // BEGIN TASK 2.1: the repeated random sequences
  const rng = new RNG(o.seed);
  const rows: number[][] = [];
  for (let b = 0; b < o.batch; b++) {
    const x = Array.from({ length: o.seqLen }, () => rng.randint(o.lo, o.hi));
    rows.push([o.bos, ...x, ...x]);
  }
  return rows;
  // END TASK 2.1
}

/** "lo,hi" -> [lo, hi], whole numbers with 0 ≤ lo < hi. Throws a RangeError otherwise. */
export function parseTokenRange(text: string): [number, number] {
  const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(text);
  if (!m) throw new RangeError(`a token range is two whole numbers LO,HI (the ids [LO, HI)), e.g. 256,1256; got "${text}"`);
  const lo = Number(m[1]), hi = Number(m[2]);
  if (!(hi > lo)) throw new RangeError(`${text}: HI must be larger than LO (the range [LO, HI) would be empty)`);
  return [lo, hi];
}

// -----------------------------------------------------------------------------------------------
// the scores

export type ScoreKind = 'induction' | 'previous_token' | 'duplicate_token';
export const SCORE_KINDS: readonly ScoreKind[] = ['induction', 'previous_token', 'duplicate_token'];

/** score[layer][head] for each kind */
export type HeadScores = Record<ScoreKind, number[][]>;

/** The stripe t in [from, to), key t − offset, as a (T, T) detection pattern for lens/head_detector.ts. */
export function stripePattern(T: number, from: number, to: number, offset: number): DetectionPattern {
  if (!(from - offset >= 0 && from < to && to <= T)) throw new Error(`stripe t in [${from}, ${to}), key t − ${offset}, does not fit in T = ${T}`);
  const data = new Float32Array(T * T);
  for (let t = from; t < to; t++) data[t * T + (t - offset)] = 1;
  return { T, data };
}

/**
 * For every head of one layer, the mean of att[b, h, t, t − offset] over the batch and over the
 * query positions t in [from, to). `att` is the layer's pattern laid out (B, nh, T, T). This is
 * the head detector's score ('marked_rows') for the stripe's pattern.
 */
export function stripeScore(att: ArrayLike<number>, B: number, nh: number, T: number, from: number, to: number, offset: number): number[] {
  // BEGIN TASK 2.2: one stripe's mean attention, per head
  return scoreHeads(att, B, nh, T, stripePattern(T, from, to, offset));
  // END TASK 2.2
}

/** The cells a score averages: query positions t in [from, to), each with the key t − offset. */
export interface Stripe {
  from: number;
  to: number;
  offset: number;
}

/**
 * The stripe of each kind in sequences [BOS, x1 … xn, x1 … xn] (T = 2n + 1):
 *   previous-token   every t ≥ 1               -> t − 1
 *   induction        the second copy, n+1 … 2n -> t − n + 1, the token that came after this token last time
 *   duplicate-token  the second copy, n+1 … 2n -> t − n, the earlier occurrence of the same token
 */
export function stripeOf(kind: ScoreKind, n: number): Stripe {
  // BEGIN TASK 2.3: the stripe (diagonal) each score reads
  const T = 2 * n + 1;
  if (kind === 'previous_token') return { from: 1, to: T, offset: 1 };
  return { from: n + 1, to: T, offset: kind === 'induction' ? n - 1 : n };
  // END TASK 2.3
}

function checkRepeated(T: number, n: number): void {
  if (T !== 2 * n + 1) throw new Error(`the pattern has T = ${T} positions; a BOS and two copies of ${n} tokens have ${2 * n + 1}`);
}

/** Every head's score of one kind, for one layer's pattern (B, nh, T, T) over repeated sequences with copies of n tokens. */
function kindScores(kind: ScoreKind, att: ArrayLike<number>, B: number, nh: number, T: number, n: number): number[] {
  checkRepeated(T, n);
  const { from, to, offset } = stripeOf(kind, n);
  return stripeScore(att, B, nh, T, from, to, offset);
}

/** Previous-token score: attention from every position t ≥ 1 to t − 1 (any T: it needs no repeat). */
export function previousTokenScores(att: ArrayLike<number>, B: number, nh: number, T: number): number[] {
  return stripeScore(att, B, nh, T, 1, T, 1);
}

/** Induction score: attention from the second copy's position t to t − n + 1, the token that came after this token last time. */
export function inductionScores(att: ArrayLike<number>, B: number, nh: number, T: number, n: number): number[] {
  return kindScores('induction', att, B, nh, T, n);
}

/** Duplicate-token score: attention from the second copy's position t to t − n, the earlier occurrence of the same token. */
export function duplicateTokenScores(att: ArrayLike<number>, B: number, nh: number, T: number, n: number): number[] {
  return kindScores('duplicate_token', att, B, nh, T, n);
}

// -----------------------------------------------------------------------------------------------
// detection and its evaluation

export interface Detection {
  /** mean and (population) standard deviation of the scores of all heads */
  mean: number;
  std: number;
  k: number;
  min_score: number;
  /** max(mean + k·std, min_score); a head is flagged when its score is above it */
  threshold: number;
  /** flagged heads, "layer.head", highest score first */
  heads: string[];
}

/**
 * Flag the heads whose score is above mean + k·std of all heads' scores. A threshold taken from
 * the scores adapts to the model and the sequence length. `minScore` is a floor for models where
 * no head does the job at all: there the largest of many small scores would stand out too.
 */
export function detectHeads(scores: number[][], k: number, minScore = 0): Detection {
  // BEGIN TASK 2.4: detection with the dynamic threshold
  const all = scores.flat();
  const mean = all.reduce((a, b) => a + b, 0) / all.length;
  const std = Math.sqrt(all.reduce((a, b) => a + (b - mean) ** 2, 0) / all.length);
  const threshold = Math.max(mean + k * std, minScore);
  const flagged: { name: string; score: number }[] = [];
  scores.forEach((row, l) => row.forEach((s, h) => {
    if (s > threshold) flagged.push({ name: headName({ layer: l, head: h }), score: s });
  }));
  flagged.sort((a, b) => b.score - a.score);
  return { mean, std, k, min_score: minScore, threshold, heads: flagged.map((f) => f.name) };
  // END TASK 2.4
}

export interface Evaluation {
  labelled: string[];
  true_positives: string[];
  false_positives: string[];
  false_negatives: string[];
  /** null where the ratio is 0/0: nothing flagged (precision), nothing labelled (recall) */
  precision: number | null;
  recall: number | null;
  f1: number | null;
}

/** Precision, recall and F1 of `detected` against `labelled` (lists of "layer.head"). */
export function evaluateDetection(detected: readonly string[], labelled: readonly string[]): Evaluation {
  // BEGIN TASK 2.5: precision, recall and F1
  const want = new Set(labelled), got = new Set(detected);
  const tp = detected.filter((h) => want.has(h));
  const fp = detected.filter((h) => !want.has(h));
  const fn = labelled.filter((h) => !got.has(h));
  const precision = detected.length ? tp.length / detected.length : null;
  const recall = labelled.length ? tp.length / labelled.length : null;
  const f1 = precision === null || recall === null ? null : precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { labelled: [...labelled], true_positives: tp, false_positives: fp, false_negatives: fn, precision, recall, f1 };
  // END TASK 2.5
}

// -----------------------------------------------------------------------------------------------
// what the literature reports for GPT-2 small

export interface LabelledHeads {
  source: string;
  induction: string[];
  previous_token: string[];
  duplicate_token: string[];
}

/**
 * GPT-2 small's heads as reported in the interpretability literature (README.md has the
 * references): induction heads from the ARENA course materials on induction circuits;
 * previous-token and duplicate-token heads from the IOI circuit (Wang et al. 2022).
 */
export const GPT2_SMALL_HEADS: LabelledHeads = {
  source: 'GPT-2 small as reported in the literature: induction heads from ARENA (induction circuits chapter); previous-token and duplicate-token heads from the IOI circuit, Wang et al. 2022',
  induction: ['5.1', '5.5', '6.9', '7.2', '7.10'],
  previous_token: ['2.2', '4.11'],
  duplicate_token: ['0.1', '0.10', '3.0'],
};
