/**
 * Finding heads by the shape of their attention, after TransformerLens's head_detector.py.
 *
 * The idea: write down where a head of some kind *should* attend, as a (T, T) matrix over query
 * rows and key columns (a "detection pattern"), then score every head by how much of its real
 * attention lands on the marked cells. One scoring function serves every kind, and any pattern a
 * user writes by hand.
 *
 *   previous-token head    query t attends to t − 1
 *   duplicate-token head   query t attends to earlier positions holding the same token
 *   induction head         query t attends to the position just *after* an earlier copy of its
 *                          token (the token that came next last time)
 *
 * The patterns are built from the tokens, so they work on any text, not only on repeated random
 * sequences. Shapes: B = batch, nh = heads, T = tokens; a pattern is (T, T), row-major, with
 * nothing above the diagonal (a query cannot see the future).
 *
 * The score of a head (`scoreHeads`), for a pattern D and attention A:
 *
 *   'marked_rows' (the default): the mean, over the query rows that D marks (rows with a nonzero
 *       entry), of Σ_k A[t, k]·D[t, k]. With one 1 per marked row this is "the average attention
 *       a query gives to the cell where it should look": 1 for a perfect head, 0 for a head that
 *       never looks there. Rows with nothing to find (a token seen for the first time) do not
 *       drag the score down.
 *   'attention' (TransformerLens's error_measure="mul"): Σ A·D / Σ A over the whole matrix, i.e.
 *       the same sum divided by all T rows.
 *
 * Library code: errors are plain Errors that say what is wrong.
 */
import type { GPT } from '../mingpt/model.ts';

export type HeadKind = 'previous_token' | 'duplicate_token' | 'induction';
export const HEAD_KINDS: readonly HeadKind[] = ['previous_token', 'duplicate_token', 'induction'];

/** A detection pattern: T × T weights, row = query position, column = key position. */
export interface DetectionPattern {
  T: number;
  /** (T, T), row-major */
  data: Float32Array;
}

// -----------------------------------------------------------------------------------------------
// the patterns of the three kinds

/** Ones on the sub-diagonal: query t ≥ 1 should attend to t − 1. */
export function previousTokenPattern(T: number): DetectionPattern {
  const data = new Float32Array(T * T);
  for (let t = 1; t < T; t++) data[t * T + t - 1] = 1;
  return { T, data };
}

/** Query t should attend to every earlier position s < t with tokens[s] = tokens[t] (itself excluded). */
export function duplicateTokenPattern(tokens: readonly number[]): DetectionPattern {
  const T = tokens.length, data = new Float32Array(T * T);
  for (let t = 0; t < T; t++) for (let s = 0; s < t; s++) if (tokens[s] === tokens[t]) data[t * T + s] = 1;
  return { T, data };
}

/**
 * Query t should attend to every position s + 1 ≤ t where s < t held the same token as t: the
 * duplicate-token pattern moved one column to the right (the token that followed last time).
 */
export function inductionPattern(tokens: readonly number[]): DetectionPattern {
  const T = tokens.length, data = new Float32Array(T * T);
  for (let t = 0; t < T; t++) for (let s = 0; s + 1 < t; s++) if (tokens[s] === tokens[t]) data[t * T + s + 1] = 1;
  return { T, data };
}

/** The pattern of one kind for one sequence of tokens. */
export function detectionPattern(kind: HeadKind, tokens: readonly number[]): DetectionPattern {
  if (kind === 'previous_token') return previousTokenPattern(tokens.length);
  if (kind === 'duplicate_token') return duplicateTokenPattern(tokens);
  if (kind === 'induction') return inductionPattern(tokens);
  throw new Error(`unknown head kind "${kind as string}": expected one of ${HEAD_KINDS.join(', ')}`);
}

/** A pattern written as a list of rows (T rows of T numbers), checked. */
export function patternFromRows(rows: readonly (readonly number[])[]): DetectionPattern {
  const T = rows.length;
  const data = new Float32Array(T * T);
  rows.forEach((row, t) => {
    if (row.length !== T) throw new Error(`a detection pattern must be square: row ${t} has ${row.length} entries, expected ${T}`);
    data.set(row, t * T);
  });
  const p = { T, data };
  checkPattern(p, T);
  return p;
}

/** The pattern must be (T, T), finite, and have nothing above the diagonal. */
export function checkPattern(p: DetectionPattern, T: number): void {
  if (p.T !== T || p.data.length !== T * T) throw new Error(`the detection pattern is ${p.T} × ${p.T} (${p.data.length} entries); the attention has T = ${T}`);
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < T; k++) {
      const v = p.data[t * T + k];
      if (!Number.isFinite(v)) throw new Error(`the detection pattern has a non-finite entry at row ${t}, column ${k}`);
      if (k > t && v !== 0) throw new Error(`the detection pattern marks row ${t}, column ${k}, above the diagonal: a query never sees a later key`);
    }
  }
}

// -----------------------------------------------------------------------------------------------
// one scoring function for every kind

export interface ScoreOptions {
  /** how the sum Σ A·D is turned into a score (see the header); 'marked_rows' by default */
  normalize?: 'marked_rows' | 'attention';
  /** ignore attention to position 0 (BOS), which many heads use as a resting place */
  exclude_bos?: boolean;
  /** ignore attention of each query to itself */
  exclude_current_token?: boolean;
}

/** The nonzero cells of a pattern, in row-major order: [t, k, weight] triples, and the marked rows. */
function cellsOf(p: DetectionPattern, o: ScoreOptions): { cells: number[]; rows: number } {
  const T = p.T, cells: number[] = [];
  let rows = 0;
  for (let t = 0; t < T; t++) {
    let marked = false;
    for (let k = 0; k <= t; k++) {
      const w = p.data[t * T + k];
      if (w === 0 || (o.exclude_bos && k === 0) || (o.exclude_current_token && k === t)) continue;
      cells.push(t, k, w);
      marked = true;
    }
    if (marked) rows++;
  }
  return { cells, rows };
}

/**
 * Every head's score of one layer: `att` is the layer's attention pattern (B, nh, T, T), and
 * `pattern` one detection pattern for all sequences or one per sequence (B of them).
 * Returns nh scores. The sums run in doubles, batch row by batch row, query row by query row.
 */
export function scoreHeads(att: ArrayLike<number>, B: number, nh: number, T: number, pattern: DetectionPattern | readonly DetectionPattern[], o: ScoreOptions = {}): number[] {
  if (att.length !== B * nh * T * T) throw new Error(`the attention pattern has ${att.length} entries; (B, nh, T, T) = (${B}, ${nh}, ${T}, ${T}) needs ${B * nh * T * T}`);
  const perRow = Array.isArray(pattern) ? (pattern as readonly DetectionPattern[]) : null;
  if (perRow && perRow.length !== B) throw new Error(`${perRow.length} detection patterns for a batch of ${B} sequences`);
  const patterns = perRow ?? [pattern as DetectionPattern];
  for (const p of patterns) checkPattern(p, T);
  const marked = patterns.map((p) => cellsOf(p, o));
  const normalize = o.normalize ?? 'marked_rows';
  const scores: number[] = [];
  for (let h = 0; h < nh; h++) {
    let sum = 0, denom = 0;
    for (let b = 0; b < B; b++) {
      const base = (b * nh + h) * T * T;
      const { cells, rows } = marked[perRow ? b : 0];
      for (let i = 0; i < cells.length; i += 3) {
        const w = cells[i + 2];
        const a = att[base + cells[i] * T + cells[i + 1]];
        sum += w === 1 ? a : a * w;
      }
      if (normalize === 'marked_rows') denom += rows;
      else {
        for (let t = 0; t < T; t++) for (let k = 0; k <= t; k++) {
          if ((o.exclude_bos && k === 0) || (o.exclude_current_token && k === t)) continue;
          denom += att[base + t * T + k];
        }
      }
    }
    scores.push(denom === 0 ? 0 : sum / denom);
  }
  return scores;
}

// -----------------------------------------------------------------------------------------------
// running a model

export interface DetectOptions extends ScoreOptions {
  /** the layers to score (all by default) */
  layers?: readonly number[];
}

/**
 * TransformerLens's detect_head: run `tokens` (B, T) through the model, keeping only the
 * attention patterns, and score every head against `pattern`: a head kind (its pattern built
 * from each sequence's tokens) or patterns of your own (one for all sequences, or one each).
 * Returns scores[layer][head] (layers not asked for are left empty).
 */
export function detectHead(model: GPT, tokens: number[][], pattern: HeadKind | DetectionPattern | readonly DetectionPattern[], o: DetectOptions = {}): number[][] {
  const L = model.config.n_layer, nh = model.config.n_head;
  const B = tokens.length, T = tokens[0]?.length ?? 0;
  const layers = o.layers ?? Array.from({ length: L }, (_, l) => l);
  for (const l of layers) if (!(Number.isInteger(l) && l >= 0 && l < L)) throw new Error(`no layer ${l}: the model has ${L} layers (0 … ${L - 1})`);
  const patterns = typeof pattern === 'string' ? tokens.map((row) => detectionPattern(pattern, row)) : pattern;
  const names = layers.map((l) => `blocks.${l}.attn.hook_pattern`);
  const scores: number[][] = Array.from({ length: L }, () => []);
  // the patterns are scored as they pass; nothing else is kept
  model.run_with_hooks(tokens, names.map((name, i) => [name, (act) => { scores[layers[i]] = scoreHeads(act.data, B, nh, T, patterns, o); }]), { stop_at_layer: Math.max(...layers) + 1 });
  return scores;
}
