/**
 * The activation-patching experiment without its command line: check the inputs, run the clean
 * and the corrupted texts, patch, and attribute the clean run's answer. generate.ts calls these
 * and prints what they return (report.ts) and draws it (charts.ts).
 *
 *   const t = tokenizeInputs(bpe, { clean, corrupt, cleanToken, corruptToken });   // before loading
 *   checkContext(t, knownContext(choice));                                        // still before loading
 *   const r = await runExperiment(model, t, { patch: 'head', engine: 'fast' });
 *
 * The metric everywhere is logit(corrupt token) − logit(clean token) at the last position
 * (test/fixtures' ANALYSIS.md): negative means the model prefers the clean token.
 */
import { BPETokenizer, MAX_TOKEN_BYTES, get_encoder, tokenStrings } from '../../mingpt/bpe.ts';
import type { GPT } from '../../mingpt/model.ts';
import type { ActivationCache } from '../../lens/activation_cache.ts';
import { type Engine, type PatchingInput } from '../../sweep/sweep.ts';
import { patchingSweep } from '../../sweep/engines.ts';
import {
  get_act_patch_attn_head_out_all_pos, get_act_patch_attn_head_out_by_pos, get_act_patch_attn_out, get_act_patch_mlp_out,
  get_act_patch_resid_mid, get_act_patch_resid_post, get_act_patch_resid_pre, logitDiffMetric, nested, type AxisName, type PatchResult,
} from '../../lens/patching.ts';
import { directLogitAttribution, logitLens } from '../../lens/attribution.ts';
import { firstDifference, logitDiff, softmax } from '../../lens/metrics.ts';
import { InputError } from '../../io/errors.ts';
import { quotedText } from '../../io/show.ts';
import { visibleToken, type TopRow } from '../../cli/terminal.ts';
import { run_with_cache } from '../../lens/activation_cache.ts';

// -----------------------------------------------------------------------------
// what can be patched

/** The --patch choices: a hook point per layer (layer × position) or attention heads. */
export const PATCH_KINDS = ['resid_pre', 'resid_mid', 'resid_post', 'attn_out', 'mlp_out', 'head', 'head-pos'] as const;
export type PatchKind = (typeof PATCH_KINDS)[number];

const SWEEPS = {
  resid_pre: get_act_patch_resid_pre,
  resid_mid: get_act_patch_resid_mid,
  resid_post: get_act_patch_resid_post,
  attn_out: get_act_patch_attn_out,
  mlp_out: get_act_patch_mlp_out,
  head: get_act_patch_attn_head_out_all_pos,
  'head-pos': get_act_patch_attn_head_out_by_pos,
} as const;

/** The hook point a kind patches, with {l} for the layer (as PatchResult.hook spells it). */
export function patchHook(kind: PatchKind): string {
  return kind === 'head' || kind === 'head-pos' ? 'blocks.{l}.attn.hook_z' : `blocks.{l}.hook_${kind}`;
}

/** The axes of a kind's result. */
export function patchAxes(kind: PatchKind): AxisName[] {
  return kind === 'head' ? ['layer', 'head'] : kind === 'head-pos' ? ['layer', 'head', 'pos'] : ['layer', 'pos'];
}

// -----------------------------------------------------------------------------
// checking the inputs (tokenizer only, so mistakes are reported before the model loads)

const q = (s: string) => quotedText(s);
/**
 * index:token for at most `max` tokens of `ids`, from a little before position `at` (where the
 * texts part), with "…" where the list is cut: a message about a long text stays short.
 */
function showTokens(ids: readonly number[], at: number, max = 24): string {
  const start = Math.max(0, Math.min(at - 4, ids.length - max)), end = Math.min(ids.length, start + max);
  const shown = tokenStrings(ids.slice(start, end)).map((t, i) => `${start + i}:${visibleToken(t)}`).join(' ');
  return (start > 0 ? '… ' : '') + shown + (end < ids.length ? ' …' : '');
}

/** The one token id of a target word, or an InputError saying what it splits into. */
export function targetTokenId(bpe: BPETokenizer, word: string, flag: string): number {
  // BEGIN TASK 1.1: the answer's token id (mind the leading space)
  if (word === '') throw new InputError(`${flag} is empty; give the one token the text should predict, e.g. ${flag} " Jones"`);
  const ids = bpe.encode(word);
  if (ids.length === 1) return ids[0];
  const parts = tokenStrings(ids).map(q).join(' + ');
  let message = `${flag} ${q(word)} is not a single GPT-2 token: it splits into ${ids.length} tokens, ${parts}.`;
  // The usual slip is the leading space: " Jones" (inside a sentence) and "Jones" (at the very
  // start of a text) are different tokens, and only some words exist in both forms.
  const other = word.startsWith(' ') ? word.slice(1) : ' ' + word;
  const otherIds = other.trim() === '' ? [] : bpe.encode(other);
  if (otherIds.length === 1) {
    message += word.startsWith(' ')
      ? `\nWithout the leading space, ${q(other)} is one token (id ${otherIds[0]}); that form is what the model predicts where no space comes before the word.`
      : `\nWith a leading space, ${q(other)} is one token (id ${otherIds[0]}). Inside a sentence a word carries the space before it, so that is probably the one you mean: ${flag} ${q(other)}`;
  }
  message += '\nThe experiment compares the logits of two single tokens; choose words that are one token each.';
  throw new InputError(message);
  // END TASK 1.1
}

/** A note (not an error) when a word-like target lacks the leading space it usually needs. */
function leadingSpaceNote(bpe: BPETokenizer, word: string, flag: string): string | undefined {
  if (!/^[A-Za-z]/.test(word)) return undefined;
  const spaced = bpe.encode(' ' + word);
  if (spaced.length !== 1) return undefined;
  return `note: ${flag} ${q(word)} has no leading space. After another word GPT-2 predicts ${q(' ' + word)} (id ${spaced[0]}), a different token; use ${flag} ${q(' ' + word)} if that is what you mean.`;
}

export interface TextsAndTargets {
  clean: string;
  corrupt: string;
  cleanToken: string;
  corruptToken: string;
}

export interface Tokenized {
  clean_ids: number[];
  corrupt_ids: number[];
  clean_token_id: number;
  corrupt_token_id: number;
  notes: string[];
}

/** Every check that needs only the tokenizer. */
export function tokenizeInputs(bpe: BPETokenizer, o: TextsAndTargets): Tokenized {
  if (o.clean === '') throw new InputError('the clean text (--clean) is empty');
  if (o.corrupt === '') throw new InputError('the corrupted text (--corrupt) is empty');
  const clean_ids = bpe.encode(o.clean);
  const corrupt_ids = bpe.encode(o.corrupt);
  if (clean_ids.length !== corrupt_ids.length) {
    const at = firstDifference(clean_ids, corrupt_ids);
    throw new InputError(
      `the two texts must have the same number of tokens, so that every position has a partner to patch from; ` +
        `the clean text has ${clean_ids.length} and the corrupted text ${corrupt_ids.length}${at > 4 ? ` (they differ first at token ${at})` : ''}:\n` +
        `  clean   (${clean_ids.length}): ${showTokens(clean_ids, at)}\n` +
        `  corrupt (${corrupt_ids.length}): ${showTokens(corrupt_ids, at)}\n` +
        `Change a word for one that splits into as many tokens as the word it replaces.`,
    );
  }
  const clean_token_id = targetTokenId(bpe, o.cleanToken, '--clean-token');
  const corrupt_token_id = targetTokenId(bpe, o.corruptToken, '--corrupt-token');
  if (clean_token_id === corrupt_token_id) {
    throw new InputError(`--clean-token and --corrupt-token are the same token (${q(o.cleanToken)}, id ${clean_token_id}); their logit difference would always be 0`);
  }
  const notes = [leadingSpaceNote(bpe, o.cleanToken, '--clean-token'), leadingSpaceNote(bpe, o.corruptToken, '--corrupt-token')].filter(
    (n): n is string => n !== undefined,
  );
  if (o.clean === o.corrupt) notes.push('note: the clean and corrupted texts are identical, so every patch leaves the difference unchanged.');
  return { clean_ids, corrupt_ids, clean_token_id, corrupt_token_id, notes };
}

/**
 * Before tokenizing: a text longer than any `context` tokens could hold is refused at once by its
 * length (a token stands for at most MAX_TOKEN_BYTES bytes), instead of being tokenized first.
 */
export function checkTextLength(o: TextsAndTargets, context: number | undefined): void {
  if (context === undefined) return;
  for (const [what, flag, text] of [['clean', '--clean', o.clean], ['corrupted', '--corrupt', o.corrupt]] as const) {
    const bytes = Buffer.byteLength(text);
    if (bytes > context * MAX_TOKEN_BYTES) {
      throw new InputError(`the ${what} text (${flag}) is ${bytes} bytes long: no GPT-2 token stands for more than ${MAX_TOKEN_BYTES} bytes, `
        + `so it is at least ${Math.ceil(bytes / MAX_TOKEN_BYTES)} tokens, more than the ${context} positions the model can see (its context length); shorten it`);
    }
  }
}

/** The texts must fit the model's context; `context` undefined means not known yet (checked again after loading). */
export function checkContext(t: Tokenized, context: number | undefined): void {
  const T = t.clean_ids.length;
  if (context !== undefined && T > context) {
    throw new InputError(`the texts have ${T} tokens, more than the ${context} positions the model can see (its context length)`);
  }
}

/** After loading: the context and the vocabulary of the model actually loaded. */
export function checkAgainstModel(t: Tokenized, model: GPT): void {
  checkContext(t, model.block_size);
  const V = model.config.vocab_size;
  for (const [flag, id] of [['--clean-token', t.clean_token_id], ['--corrupt-token', t.corrupt_token_id]] as const) {
    if (id >= V) throw new InputError(`${flag} has id ${id}, outside this model's vocabulary of ${V}`);
  }
  // the texts' tokens too: an id past the embedding would read memory that is no token's row
  for (const [what, flag, ids] of [['clean', '--clean', t.clean_ids], ['corrupted', '--corrupt', t.corrupt_ids]] as const) {
    const at = ids.findIndex((id) => id >= V);
    if (at >= 0) {
      throw new InputError(`the ${what} text (${flag}) has token ${at}, ${q(tokenStrings([ids[at]])[0])} (id ${ids[at]}), outside this model's vocabulary of ${V} tokens: `
        + `its checkpoint knows only ids 0..${V - 1}; use words the model was trained on`);
    }
  }
}

/**
 * How many of the model's logits are tokens: all of them, or the tokenizer's 50257 when the
 * checkpoint pads its vocabulary (nanoGPT's 50304 rows, a multiple of 64). Padded rows are no
 * token: they are left out of the probabilities and the top-N list.
 */
const realTokens = (logits: Float32Array) => Math.min(logits.length, get_encoder().decoder.size);

// -----------------------------------------------------------------------------
// numbers for the tables

/** The n most probable next tokens, as in the assignment's table. */
export function topTokens(logits: Float32Array, n: number): TopRow[] {
  const p = softmax(logits.subarray(0, realTokens(logits)));
  const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a] || a - b).slice(0, n);
  const tokens = tokenStrings(order);
  return order.map((id, i) => ({ rank: i + 1, id, token: tokens[i], prob: p[id] }));
}

/** rank (1 = most probable) and probability of one token */
export function rankOf(logits: Float32Array, id: number): { rank: number; prob: number } {
  const V = realTokens(logits);
  const p = softmax(logits.subarray(0, V));
  let rank = 1;
  for (let i = 0; i < V; i++) if (logits[i] > logits[id]) rank++;
  return { rank, prob: p[id] };
}

// -----------------------------------------------------------------------------
// the run

/** The clean run's direct logit attribution, one number per part (ANALYSIS.md's names). */
export interface DLAParts {
  embed: number;
  heads: number[][]; // [layer][head]
  attn_bias: number[]; // [layer]
  mlp: number[]; // [layer]
  const: number;
  total: number; // the sum of the parts: the clean run's metric
}

export interface ExperimentOptions {
  patch: PatchKind;
  /** the engine of the resid_post sweep (the other kinds use the generic patch) */
  engine: Engine;
  /** keep the clean run's whole cache (every hook point) for --save-cache */
  keepCache?: boolean;
  /** called once the number of patched runs is known, then after each one */
  onStart?: (total: number) => void;
  onProgress?: (done: number, total: number) => void;
}

/** The two unpatched runs and the attribution of the clean one. */
export interface Runs {
  clean_last_logits: Float32Array; // (vocab_size) at the last position
  corrupt_last_logits: Float32Array;
  clean_logit_diff: number;
  corrupt_logit_diff: number;
  logit_lens: number[]; // L + 1 values: the stream entering block l, then the final stream
  dla: DLAParts;
  /** the clean run's cache: every hook point with keepCache, what the patch reads otherwise, none for resid_post */
  cache?: ActivationCache;
}

/** The patch: hook point, axes, shape and the values nested along the axes. */
export interface Patch {
  kind: PatchKind;
  hook: string;
  axes: AxisName[];
  shape: number[];
  matrix: unknown[];
  sweep_s: number;
}

/** The hook points attribution reads (logit lens and DLA), so the clean cache keeps only those. */
export function attributionHooks(L: number): string[] {
  const names = ['hook_embed', 'hook_pos_embed', 'ln_final.hook_scale'];
  for (let l = 0; l < L; l++) names.push(`blocks.${l}.hook_resid_pre`, `blocks.${l}.attn.hook_z`, `blocks.${l}.hook_mlp_out`);
  names.push(`blocks.${L - 1}.hook_resid_post`);
  return names;
}

const patchingInput = (t: Tokenized): PatchingInput => ({
  clean_ids: t.clean_ids, corrupt_ids: t.corrupt_ids, clean_token_id: t.clean_token_id, corrupt_token_id: t.corrupt_token_id,
});

/**
 * The clean run (its cache keeps what attribution and the patch read, or everything with
 * keepCache), the corrupted run, and the logit lens and DLA of the clean run.
 */
export function runTexts(model: GPT, t: Tokenized, o: ExperimentOptions): Runs {
  const L = model.config.n_layer, T = t.clean_ids.length, V = model.config.vocab_size;
  const keep = new Set(attributionHooks(L));
  const generic = o.patch !== 'resid_post';
  if (generic) for (let l = 0; l < L; l++) keep.add(patchHook(o.patch).replace('{l}', String(l)));
  // Logits at every position, not just the last (logits_at): with logits_at the cache's
  // ln_final.hook_scale would cover only that position, and the DLA reads it at position T − 1.
  const clean = run_with_cache(model, t.clean_ids, { names: o.keepCache ? undefined : [...keep] });
  const clean_last_logits = clean.logits.data.slice((T - 1) * V, T * V);
  const corrupt_last_logits = model.forward(t.corrupt_ids, { logits_at: [T - 1] }).logits.data.slice(0, V);
  const diff = (x: Float32Array) => logitDiff(x, t.corrupt_token_id, t.clean_token_id);

  // attribution of the clean run's answer, at the last position
  const dir = { pos: T - 1, token: [t.corrupt_token_id], other: [t.clean_token_id] };
  const logit_lens = logitLens(model, clean.cache, dir).map((row) => row[0]);
  const d = directLogitAttribution(model, clean.cache, dir);
  const dla: DLAParts = {
    embed: d.embed[0], heads: d.heads.map((l) => l.map((h) => h[0])), attn_bias: d.attn_bias.map((b) => b[0]),
    mlp: d.mlp.map((m) => m[0]), const: d.const[0], total: d.total[0],
  };
  return {
    clean_last_logits, corrupt_last_logits, clean_logit_diff: diff(clean_last_logits), corrupt_logit_diff: diff(corrupt_last_logits),
    logit_lens, dla, cache: o.keepCache || generic ? clean.cache : undefined,
  };
}

/** The patch sweep: the engine's block-output sweep for resid_post, the generic patch otherwise. */
export async function runPatch(model: GPT, t: Tokenized, runs: Runs, o: ExperimentOptions): Promise<Patch> {
  const L = model.config.n_layer, T = t.clean_ids.length;
  const start = performance.now();
  const seconds = () => (performance.now() - start) / 1000;
  if (o.patch === 'resid_post') {
    o.onStart?.(L * T);
    const r = await patchingSweep(model, patchingInput(t), { engine: o.engine, onProgress: o.onProgress });
    return { kind: o.patch, hook: patchHook(o.patch), axes: ['layer', 'pos'], shape: [L, T], matrix: r.matrix, sweep_s: seconds() };
  }
  if (!runs.cache) throw new Error('runPatch: the generic patch needs the clean run\'s cache');
  const axes = patchAxes(o.patch);
  const sizes: Record<AxisName, number> = { layer: L, pos: T, head: model.config.n_head };
  o.onStart?.(axes.reduce((n, a) => n * sizes[a], 1));
  const metric = logitDiffMetric(t.corrupt_token_id, t.clean_token_id);
  const r: PatchResult = SWEEPS[o.patch](model, t.corrupt_ids, runs.cache, metric, { onProgress: o.onProgress });
  return { kind: o.patch, hook: r.hook, axes: r.axes, shape: r.shape, matrix: nested(r), sweep_s: seconds() };
}

/**
 * The patch result as a 2-D grid for the terminal and the chart: layer × position, layer × head,
 * or, for layer × head × position, one row per head ("L0H0", "L0H1", …) × position.
 */
export function patchGrid(patch: Patch, tokens: readonly string[]): {
  matrix: number[][]; rowLabels: string[]; columnLabels: string[]; rowTitle: string; columnTitle: string;
} {
  const [L, n] = patch.shape;
  if (patch.axes.length === 3) {
    const m = patch.matrix as number[][][];
    return {
      matrix: m.flat(), rowLabels: m.flatMap((heads, l) => heads.map((_, h) => `L${l}H${h}`)), columnLabels: [...tokens],
      rowTitle: 'heads (L layer H head)', columnTitle: 'positions',
    };
  }
  const m = patch.matrix as number[][];
  const byHead = patch.axes[1] === 'head';
  return {
    matrix: m, rowLabels: Array.from({ length: L }, (_, l) => `layer ${l}`),
    columnLabels: byHead ? Array.from({ length: n }, (_, h) => `H${h}`) : [...tokens],
    rowTitle: 'layers', columnTitle: byHead ? 'heads' : 'positions',
  };
}

// -----------------------------------------------------------------------------
// patching.json

export interface ResultsContext {
  model: string;
  random_weights: boolean;
  texts: TextsAndTargets;
  tokens: Tokenized;
  top: TopRow[];
  runs: Runs;
  patch: Patch;
  engine: Engine | 'generic' | 'atp';
  load_s: number;
}

/** Everything the run printed, as numbers (the fields are listed in the README). */
export function resultsJson(c: ResultsContext): Record<string, unknown> {
  const { texts: o, tokens: t, runs, patch } = c;
  return {
    model: c.model,
    random_weights: c.random_weights,
    clean_text: o.clean,
    corrupt_text: o.corrupt,
    clean_tokens: tokenStrings(t.clean_ids),
    clean_ids: t.clean_ids,
    corrupt_ids: t.corrupt_ids,
    clean_token: o.cleanToken,
    corrupt_token: o.corruptToken,
    clean_token_id: t.clean_token_id,
    corrupt_token_id: t.corrupt_token_id,
    clean_top: c.top,
    clean_logit_diff: runs.clean_logit_diff,
    corrupt_logit_diff: runs.corrupt_logit_diff,
    patch: patch.hook,
    axes: patch.axes,
    shape: patch.shape,
    matrix: patch.matrix,
    engine: c.engine,
    logit_lens: runs.logit_lens,
    dla: runs.dla,
    timing: { load_s: c.load_s, sweep_s: patch.sweep_s },
  };
}
