/**
 * Running the model on repeated random tokens, and running it again with parts removed.
 *
 *   cleanRun      one forward pass with hooks that read the attention patterns (the head scores),
 *                 keep the residual stream entering each block, and average each head's output
 *                 and each MLP's output (for mean-ablation); then the next-token log-probs.
 *   runAblated    the same tokens with some heads' outputs (attn.hook_z) and some MLP outputs
 *                 (hook_mlp_out) replaced by zero or by their mean over the clean run.
 *
 *   mlpAblation   the fast path for one MLP removed at the second-half positions (below).
 *
 * Every run is the model's own forward pass (model.forward), told where to start, which rows to
 * run and where to read the logits. Four savings keep GPT-2-sized runs bearable on a CPU:
 *   - an ablation that starts in block l restarts from the clean residual stream entering block l
 *     (`start_at_layer`, `residual`): everything before it is unchanged;
 *   - an ablation at the second-half positions only changes nothing before them (the mask), so
 *     the run computes the second half's rows alone, attending to the clean run's keys and values
 *     at the positions before (`past_kv_cache`, a frozen prefix of the clean run's KVCache);
 *   - removing block l's MLP output at some positions leaves block l's attention alone, so the
 *     stream after block l is known without running it: resid_mid + 0 (zero) or resid_mid + the
 *     mean (mean) at those positions. The run starts at block l + 1;
 *   - the unembedding, a third of GPT-2's arithmetic, is computed only at the positions whose
 *     predictions we score (`logits_at`).
 */
import ndarray from 'ndarray';
import { KVCache, pickPositions, type GPT } from '../../mingpt/model.ts';
import type { HookFn, HookSpec } from '../../mingpt/hooks.ts';
import { logSoftmaxAt } from '../../lens/metrics.ts';
import { residualForward } from '../../mingpt/kernels/index.ts';
import { duplicateTokenScores, inductionScores, previousTokenScores, type HeadScores } from './scores.ts';
import { allHeads, headName, parseHead } from '../../lens/heads.ts';

// -----------------------------------------------------------------------------------------------
// which positions are which

/**
 * Query positions (the position that makes the prediction; the target is at t + 1) for
 * sequences [BOS, x1 … xn, x1 … xn]:
 *   first half   t in [0, n)       predicts x1 … xn of the first copy: nothing to copy from yet
 *   seam         t = n             predicts the second copy's x1; xn was never followed by
 *                                  anything before, so induction cannot help here
 *   second half  t in [n+1, 2n)    predicts x2 … xn of the second copy: each one followed the
 *                                  current token last time
 */
export function halves(n: number) {
  return {
    first: [0, n] as [number, number],
    seam: n,
    second: [n + 1, 2 * n] as [number, number],
  };
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);

// -----------------------------------------------------------------------------------------------
// log-probabilities of the correct next token

export interface NextTokenStats {
  /** log P(correct next token), (B, P) flattened, for the P query positions asked for */
  logprob: Float64Array;
  /** 1 where the most probable token is the correct one */
  correct: Uint8Array;
}

/**
 * logits (B, S, V) holding, in row p of each sequence, the prediction made at query position
 * positions[p] -> the log-probability of the token that really comes next, tokens[b][t + 1], and
 * whether it is the top-1 prediction. S is the number of rows per sequence: positions.length when
 * only those rows were computed, T when the logits cover the whole sequence. Softmax in float64.
 */
export function nextTokenStats(logits: Float32Array, V: number, tokens: number[][], positions: readonly number[], S = positions.length): NextTokenStats {
  const B = tokens.length, P = positions.length;
  const logprob = new Float64Array(B * P);
  const correct = new Uint8Array(B * P);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) {
      const o = (b * S + p) * V;
      const target = tokens[b][positions[p] + 1];
      let max = -Infinity, arg = 0;
      for (let i = 0; i < V; i++) if (logits[o + i] > max) { max = logits[o + i]; arg = i; }
      logprob[b * P + p] = logSoftmaxAt(logits, target, o, V, max); // (the row's maximum, found above)
      correct[b * P + p] = arg === target ? 1 : 0;
    }
  }
  return { logprob, correct };
}

/** Mean of a (B, P) array over the batch and the positions whose index p is in [from, to). */
function meanOver(values: ArrayLike<number>, B: number, P: number, from: number, to: number): number {
  let sum = 0;
  for (let b = 0; b < B; b++) for (let p = from; p < to; p++) sum += values[b * P + p];
  return sum / (B * (to - from));
}

// -----------------------------------------------------------------------------------------------
// the clean run

/** Per layer, the mean of an activation (B, T, C) over the batch and over a set of positions. */
export interface Means {
  /** positions 1 … T−1 (position 0 sees only BOS, so it is the same in every sequence) */
  all: Float32Array[];
  /** the second copy, positions n+1 … 2n */
  second_half: Float32Array[];
}

export interface CleanRun {
  tokens: number[][];
  B: number;
  T: number;
  n: number;
  /** log P(correct next token) at query positions 0 … T−2, (B, T−1) flattened */
  logprob: Float64Array;
  correct: Uint8Array;
  scores: HeadScores;
  /** per layer, batch row 0's attention pattern (nh, T, T) */
  patterns: Float32Array[];
  /** per layer, the residual stream entering the block, (B, T, C); residPre[L] is the stream after the last block */
  residPre: Float32Array[];
  /** per layer, the residual stream between attention and MLP (hook_resid_mid), (B, T, C) */
  residMid: Float32Array[];
  /** every block's keys and values at every position (frozen): what runs of some rows attend to */
  kv: KVCache;
  /** per layer, means of attn.hook_z (laid out as C = nh × hs) and of hook_mlp_out */
  zMeans: Means;
  mlpMeans: Means;
}

const layerOf = (name: string) => Number(/^blocks\.(\d+)\./.exec(name)![1]);

/** Called once each time a transformer block finishes: the unit of the experiment's progress bar. */
export type OnBlock = () => void;

/** A hook that reports every finished block, or nothing when nobody is listening. */
const blockProgress = (onBlock?: OnBlock): HookSpec => (onBlock ? [[(name) => name.endsWith('.hook_resid_post'), () => { onBlock(); }]] : []);

/** Mean over b and t in [from, to) of act (B, T, C), into a new (C) array. */
function positionMean(act: Float32Array, B: number, T: number, C: number, from: number, to: number): Float32Array {
  const acc = new Float64Array(C);
  for (let b = 0; b < B; b++) for (let t = from; t < to; t++) {
    const o = (b * T + t) * C;
    for (let c = 0; c < C; c++) acc[c] += act[o + c];
  }
  const out = new Float32Array(C);
  for (let c = 0; c < C; c++) out[c] = acc[c] / (B * (to - from));
  return out;
}

/** One forward pass over [BOS, x, x] sequences that collects everything the experiment needs. */
export function cleanRun(model: GPT, tokens: number[][], n: number, onBlock?: OnBlock): CleanRun {
  const B = tokens.length, T = tokens[0].length;
  if (T !== 2 * n + 1) throw new Error(`expected sequences of ${2 * n + 1} tokens (BOS and two copies of ${n}), got ${T}`);
  const L = model.config.n_layer, nh = model.config.n_head;
  const C = model.config.n_embd, V = model.config.vocab_size;
  const scores: HeadScores = { induction: [], previous_token: [], duplicate_token: [] };
  const patterns: Float32Array[] = [];
  const residPre: Float32Array[] = [];
  const residMid: Float32Array[] = [];
  const zMeans: Means = { all: [], second_half: [] };
  const mlpMeans: Means = { all: [], second_half: [] };
  const means = (into: Means): HookFn => (act, name) => {
    const l = layerOf(name);
    into.all[l] = positionMean(act.data, B, T, C, 1, T);
    into.second_half[l] = positionMean(act.data, B, T, C, n + 1, T);
  };

  const hooks: HookSpec = [
    [(name) => name.endsWith('attn.hook_pattern'), (act, name) => {
      const l = layerOf(name), att = act.data; // (B, nh, T, T)
      scores.induction[l] = inductionScores(att, B, nh, T, n);
      scores.previous_token[l] = previousTokenScores(att, B, nh, T);
      scores.duplicate_token[l] = duplicateTokenScores(att, B, nh, T, n);
      patterns[l] = att.slice(0, nh * T * T); // batch row 0
    }],
    [(name) => name.endsWith('.hook_resid_pre'), (act, name) => { residPre[layerOf(name)] = act.data.slice(); }],
    [(name) => name.endsWith('.hook_resid_mid'), (act, name) => { residMid[layerOf(name)] = act.data.slice(); }],
    [(name) => name.endsWith('attn.hook_z'), means(zMeans)], // (B, T, nh, hs) is (B, T, C) in memory
    [(name) => name.endsWith('.hook_mlp_out'), means(mlpMeans)],
    ...blockProgress(onBlock),
  ];
  // every position but the last has a next token to predict
  const kv = new KVCache(model.config, B);
  const { logits, residual } = model.run_with_hooks(tokens, hooks, { logits_at: range(0, T - 1), past_kv_cache: kv });
  const { logprob, correct } = nextTokenStats(logits.data, V, tokens, range(0, T - 1));
  if (residPre.length !== L || residMid.length !== L) throw new Error('internal: the clean run did not pass every block');
  residPre[L] = residual.data; // the stream after the last block (the forward's own copy)
  return { tokens, B, T, n, logprob, correct, scores, patterns, residPre, residMid, kv: kv.freeze(), zMeans, mlpMeans };
}

export interface HalfSummary {
  first_half_logprob: number;
  second_half_logprob: number;
  seam_logprob: number;
  first_half_accuracy: number;
  second_half_accuracy: number;
  /** mean over the batch of log P(correct next token), for the targets at positions 1 … 2n */
  logprob_by_position: number[];
  accuracy_by_position: number[];
}

export function summarize(run: Pick<CleanRun, 'B' | 'T' | 'n' | 'logprob' | 'correct'>): HalfSummary {
  const { B, T, n, logprob, correct } = run;
  const P = T - 1, h = halves(n);
  return {
    first_half_logprob: meanOver(logprob, B, P, ...h.first),
    second_half_logprob: meanOver(logprob, B, P, ...h.second),
    seam_logprob: meanOver(logprob, B, P, h.seam, h.seam + 1),
    first_half_accuracy: meanOver(correct, B, P, ...h.first),
    second_half_accuracy: meanOver(correct, B, P, ...h.second),
    logprob_by_position: range(0, P).map((p) => meanOver(logprob, B, P, p, p + 1)),
    accuracy_by_position: range(0, P).map((p) => meanOver(correct, B, P, p, p + 1)),
  };
}

// -----------------------------------------------------------------------------------------------
// running again with parts removed

export type AblationMode = 'zero' | 'mean';

export interface AblationSpec {
  mode: AblationMode;
  /** heads to remove, "layer.head": their slice of attn.hook_z, so nothing of them reaches c_proj */
  heads?: readonly string[];
  /** layers whose MLP output to remove */
  mlps?: readonly number[];
  /**
   * 'second_half': positions n+1 … 2n; 'all': every position. For 'mean' with 'all', position 0
   * keeps its value: it sees only BOS, so it is the same in every sequence and equals its mean.
   */
  positions: 'second_half' | 'all';
}

/**
 * Overwrite channels [c0, c1) at positions [from, to) of a (B, Tr, C) activation holding positions
 * t0 … t0 + Tr − 1 with value[c] (or 0).
 */
function overwrite(data: Float32Array, B: number, Tr: number, t0: number, C: number, from: number, to: number, c0: number, c1: number, value: Float32Array | null): void {
  for (let b = 0; b < B; b++) for (let t = Math.max(from, t0); t < to; t++) {
    const o = (b * Tr + t - t0) * C;
    if (value) data.set(value.subarray(c0, c1), o + c0);
    else data.fill(0, o + c0, o + c1);
  }
}

/**
 * The hooks that carry out an ablation, and the first block they touch. The hooks work on runs of
 * every position, or of positions `t0` … T − 1 only.
 */
export function ablationHooks(model: GPT, run: CleanRun, spec: AblationSpec, t0 = 0): { hooks: HookSpec; firstLayer: number } {
  const nh = model.config.n_head, C = model.config.n_embd, hs = C / nh;
  const L = model.config.n_layer;
  const { B, T, n } = run;
  const [from, to] = spec.positions === 'second_half' ? [n + 1, T] : [spec.mode === 'mean' ? 1 : 0, T];
  const which = spec.positions === 'second_half' ? 'second_half' : 'all';
  const hooks: HookSpec = [];
  const byLayer = new Map<number, number[]>();
  for (const name of spec.heads ?? []) {
    const { layer, head } = parseHead(name);
    if (layer >= L || head >= nh) throw new Error(`head ${name} does not exist: the model has ${L} layers of ${nh} heads`);
    byLayer.set(layer, [...(byLayer.get(layer) ?? []), head]);
  }
  for (const [layer, heads] of byLayer) {
    const mean = spec.mode === 'mean' ? run.zMeans[which][layer] : null;
    hooks.push([`blocks.${layer}.attn.hook_z`, (act) => {
      for (const head of heads) overwrite(act.data, B, T - t0, t0, C, from, to, head * hs, (head + 1) * hs, mean);
    }]);
  }
  for (const layer of spec.mlps ?? []) {
    if (layer >= L) throw new Error(`layer ${layer} does not exist: the model has ${L} layers`);
    const mean = spec.mode === 'mean' ? run.mlpMeans[which][layer] : null;
    hooks.push([`blocks.${layer}.hook_mlp_out`, (act) => overwrite(act.data, B, T - t0, t0, C, from, to, 0, C, mean)]);
  }
  const firstLayer = Math.min(L - 1, ...byLayer.keys(), ...(spec.mlps ?? []));
  return { hooks, firstLayer };
}

export interface AblationResult {
  second_half_logprob: number;
  second_half_accuracy: number;
}

/** Mean log-prob and top-1 accuracy of logits (B, P, V) read at the second-half query positions. */
function scoreSecondHalf(model: GPT, run: Pick<CleanRun, 'tokens' | 'B' | 'n'>, logits: Float32Array): AblationResult {
  const positions = secondHalfPositions(run.n);
  const { logprob, correct } = nextTokenStats(logits, model.config.vocab_size, run.tokens, positions);
  const P = positions.length;
  return { second_half_logprob: meanOver(logprob, run.B, P, 0, P), second_half_accuracy: meanOver(correct, run.B, P, 0, P) };
}

/** The query positions of the second half, n+1 … 2n−1 (the rows whose logits we read). */
export const secondHalfPositions = (n: number) => range(...halves(n).second);

/**
 * Positions t0 … T − 1 of the clean run from block `layer` on, the stream x (B, T − t0, C) entering
 * that block, with `hooks`; the second half scored. Before t0 the run is the clean one: its keys
 * and values stand in for those positions.
 */
function runRows(model: GPT, run: CleanRun, layer: number, t0: number, x: Float32Array, hooks: HookSpec): AblationResult {
  const { logits } = model.forward(null, {
    start_at_layer: layer,
    residual: ndarray(x, [run.B, run.T - t0, model.config.n_embd]),
    past_kv_cache: t0 > 0 ? run.kv.prefix(t0) : undefined,
    logits_at: secondHalfPositions(run.n).map((t) => t - t0),
    hooks,
  });
  return scoreSecondHalf(model, run, logits.data);
}

/** The positions t0 … T − 1 of a (B, T, C) activation, (B, T − t0, C). */
const fromPosition = (a: Float32Array, B: number, T: number, C: number, t0: number) => pickPositions(a, B, T, C, range(t0, T));

/**
 * Run the clean tokens again with `spec` applied, from the first block it touches (the clean
 * stream entering that block is the same) and the first position it changes; score the second half.
 */
export function runAblated(model: GPT, run: CleanRun, spec: AblationSpec, onBlock?: OnBlock): AblationResult {
  const t0 = spec.positions === 'second_half' ? run.n + 1 : 0;
  const { hooks, firstLayer } = ablationHooks(model, run, spec, t0);
  const x = fromPosition(run.residPre[firstLayer], run.B, run.T, model.config.n_embd, t0); // a copy: the clean cache stays clean
  return runRows(model, run, firstLayer, t0, x, [...hooks, ...blockProgress(onBlock)]);
}

/**
 * The residual stream (B, n, C) after block `layer` at the second-half positions n+1 … 2n, with
 * its MLP output removed there: resid_mid + 0 (zero) or resid_mid + the MLP's second-half mean
 * (mean). Exactly what block `layer` computes with hook_mlp_out overwritten, without running it:
 * attention does not depend on the MLP's output in the same block.
 */
function mlpAblatedStream(model: GPT, run: CleanRun, layer: number, mode: AblationMode): Float32Array {
  const L = model.config.n_layer, C = model.config.n_embd;
  if (!(Number.isInteger(layer) && layer >= 0 && layer < L)) throw new Error(`layer ${layer} does not exist: the model has ${L} layers`);
  const { B, T, n } = run;
  const x = fromPosition(run.residMid[layer], B, T, C, n + 1); // (B, n, C)
  const mean = mode === 'mean' ? run.mlpMeans.second_half[layer] : null;
  if (mean) for (let r = 0; r < x.length; r += C) residualForward(x.subarray(r, r + C), x.subarray(r, r + C), mean, C); // float32 sums, as the forward's residual add makes them
  return x;
}

/**
 * Block `layer`'s MLP removed at the second-half positions, the fast way: the second half's rows
 * from block layer + 1, from mlpAblatedStream. The same numbers as runAblated({ mlps: [layer],
 * positions: 'second_half' }), one block sooner.
 */
export function mlpAblation(model: GPT, run: CleanRun, layer: number, mode: AblationMode, onBlock?: OnBlock): AblationResult {
  return runRows(model, run, layer + 1, run.n + 1, mlpAblatedStream(model, run, layer, mode), blockProgress(onBlock));
}

/** Every head except `keep`, as "layer.head" names. */
export function allHeadsExcept(model: GPT, keep: readonly string[]): string[] {
  const L = model.config.n_layer, nh = model.config.n_head;
  const kept = new Set(keep);
  const out: string[] = [];
  for (const h of allHeads(L, nh)) if (!kept.has(headName(h))) out.push(headName(h));
  return out;
}

/** The two-head circuit: remove every other head and every MLP, at every position. */
export function circuitSpec(model: GPT, keep: readonly string[], mode: AblationMode): AblationSpec {
  const L = model.config.n_layer;
  return { mode, heads: allHeadsExcept(model, keep), mlps: range(0, L), positions: 'all' };
}
