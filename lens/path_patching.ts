/**
 * Path patching, as in Wang et al. 2022 ("Interpretability in the Wild", Appendix B): how much of
 * a head's effect on the answer travels along one path — straight to the logits, or through the
 * queries of some later heads (the "receivers") — rather than through everything else.
 *
 * Two texts: `orig` (an IOI prompt) and `new` (its ABC twin). For a sender head S:
 *
 *   pass C   run `orig` with EVERY head's output z frozen to its value in the ordinary `orig` run,
 *            except S's, which takes its value from the `new` run. MLPs and layer norms are
 *            recomputed as usual. With the heads frozen, S's change can only reach the end
 *            through the residual stream and the MLPs: "the direct path".
 *   to_logits          the metric of pass C itself;
 *   to receivers' q    record the receivers' queries in pass C, then run `orig` once more with
 *                      only those queries replaced (pass D): the metric of pass D.
 *
 * The metric is logit(token) − logit(other) at the last position (END), one pair per batch row
 * (IOI: token = IO, other = S). Definitions: test/fixtures' ANALYSIS.md, section "Path patching".
 *
 * Two facts make this cheap, and change no number:
 * - In pass C every attention output is frozen, so positions cannot talk to each other any
 *   more: each position's stream is its own little computation (frozen attention outputs added,
 *   MLPs recomputed). We run it only at the positions someone reads — END for the logits and for
 *   receivers at END — starting at the sender's layer from the orig run's stream.
 * - When the receivers' queries change at END only (the paper's choice for the name movers),
 *   only END's stream changes in pass D (the causal mask hides END from earlier positions). So
 *   pass D runs one position, like a generation step with a key/value cache: the model's own
 *   forward pass with END's row only, attending to the orig run's keys and values at earlier
 *   positions (a frozen KVCache, ../mingpt/model.ts) and to its own. It starts at the first
 *   receiver after the senders' layer: receivers in or before it keep their orig queries, so
 *   END's stream up to there is the orig run's.
 * The metric needs two logits per row: the final layer norm at END, then those two columns of
 * the vocabulary projection only (logitDiffs, ./metrics.ts).
 */
import ndarray from 'ndarray';
import { KVCache, pickPositions, type GPT } from '../mingpt/model.ts';
import type { ActivationCache } from './activation_cache.ts';
import type { HookSpec } from '../mingpt/hooks.ts';
import { matmulForward, residualForward } from '../mingpt/kernels/index.ts';
import { allHeads, headExists, headName, type HeadRef } from './heads.ts';
import { run_with_cache } from './activation_cache.ts';
import { logitDiffs } from './metrics.ts';

/** A batch of (orig, new) pairs of one token length, each row with its own metric pair. */
export interface PairBatch {
  orig: number[][]; // (B, T)
  new: number[][]; // (B, T)
  token: number[]; // (B): the metric is logit(token[b]) − logit(other[b]) at the last position
  other: number[]; // (B)
}

export interface PathPatchOptions {
  /** heads whose queries receive the path; none: only to_logits is computed */
  receivers?: HeadRef[];
  /** where the receivers' queries are recorded and replaced: the last position (paper) or every one */
  receiverPositions?: 'end' | 'all';
  /** the sender heads to try (default: every head) */
  senders?: HeadRef[];
  /** called after each sender: done of total */
  onProgress?: (done: number, total: number) => void;
}

export interface PathPatchResult {
  /** [layer][head][b]: the metric of pass C (NaN for heads not among the senders) */
  to_logits: number[][][];
  /** [layer][head][b]: the metric of pass D; null for senders in or after the last receiver's layer, and without receivers */
  to_receivers: (number[] | null)[][] | null;
  /** [b]: the metric of the ordinary orig run, for scale */
  orig: number[];
}

/** The orig run's activations that path patching reads, kept once per batch. */
interface OrigRun {
  B: number;
  T: number;
  cache: ActivationCache;
  /** the orig run's keys and values (every position, every block) */
  kv: KVCache;
  newZ: Float32Array[]; // [l] (B, T, nh, hs): hook_z of the new run
  metric: number[];
}

function runOrig(model: GPT, pairs: PairBatch): OrigRun {
  const L = model.config.n_layer;
  const T = pairs.orig[0].length, B = pairs.orig.length;
  if (pairs.new.length !== B || pairs.new.some((r) => r.length !== T) || pairs.orig.some((r) => r.length !== T))
    throw new Error('path patching needs orig and new texts of one token length, as many of each');
  if (pairs.token.length !== B || pairs.other.length !== B) throw new Error(`path patching: ${B} rows but ${pairs.token.length} token and ${pairs.other.length} other ids`);
  const names: string[] = [];
  for (let l = 0; l < L; l++) names.push(`blocks.${l}.hook_resid_pre`, `blocks.${l}.attn.hook_z`, `blocks.${l}.hook_attn_out`);
  const kv = new KVCache(model.config, B);
  const o = run_with_cache(model, pairs.orig, { names, logits_at: [], past_kv_cache: kv });
  const n = run_with_cache(model, pairs.new, { names: (x) => x.endsWith('attn.hook_z'), logits_at: [] });
  const metric = logitDiffs(model, pickPositions(o.residual.data, B, T, model.config.n_embd, [T - 1]), pairs.token, pairs.other);
  return { B, T, cache: o.cache, kv: kv.freeze(), newZ: Array.from({ length: L }, (_, l) => n.cache.get('z', l).data), metric };
}

/** Rows (B·P, C) of a (B, T, C) activation at the positions P, S times over: rows ordered (copy, b, p). */
function gatherTiled(a: Float32Array, B: number, T: number, C: number, P: number[], S: number): Float32Array {
  return tile(pickPositions(a, B, T, C, P), S);
}

/** q (N, hs) of head h from a layer-normed input (N, C): rows h·hs … (h+1)·hs − 1 of c_attn, on the matmul kernel. */
function headQuery(model: GPT, l: number, h: number, ln: Float32Array, N: number): Float32Array {
  const C = model.config.n_embd, hs = C / model.config.n_head, W = model.transformer.h[l].attn.c_attn;
  const q = new Float32Array(N * hs);
  matmulForward(q, ln, W.weight.subarray(h * hs * C, (h + 1) * hs * C), W.bias!.subarray(h * hs, (h + 1) * hs), N, C, hs);
  return q;
}

/**
 * Pass C for several senders of one layer at once, at positions P: rows ordered (sender, b, p),
 * N = S·B·|P|. Returns the stream after the last block, (N, C), and the receivers' queries it
 * records, by receiver index: (N, hs) each (null for receivers before the senders' layer).
 */
function passC(model: GPT, run: OrigRun, senders: HeadRef[], P: number[], receivers: HeadRef[]): { x: Float32Array; q: (Float32Array | null)[] } {
  // BEGIN TASK 3.3: path patching's pass C (every other head frozen)
  const { n_layer: L, n_embd: C, n_head: nh } = model.config;
  const hs = C / nh, { B, T, cache } = run, S = senders.length, n1 = B * P.length, N = S * n1;
  const ls = senders[0].layer;
  let x = gatherTiled(cache.get('resid_pre', ls).data, B, T, C, P, S); // (N, C)
  // each sender's change in the attention output: (z_new − z_orig) · W_O[sender], at P
  const zo = cache.get('z', ls).data, zn = run.newZ[ls], Wo = model.transformer.h[ls].attn.c_proj.weight; // (C, C) as (out, in)
  const delta = new Float32Array(N * C);
  senders.forEach((sender, k) => {
    for (let b = 0; b < B; b++) {
      P.forEach((t, i) => {
        const z0 = ((b * T + t) * nh + sender.head) * hs, row = (k * n1 + b * P.length + i) * C;
        for (let o = 0; o < C; o++) {
          let sum = 0;
          for (let j = 0; j < hs; j++) sum += (zn[z0 + j] - zo[z0 + j]) * Wo[o * C + sender.head * hs + j];
          delta[row + o] = sum;
        }
      });
    }
  });
  const q: (Float32Array | null)[] = receivers.map(() => null);
  for (let l = ls; l < L; l++) {
    const block = model.transformer.h[l];
    const mine = receivers.map((r, i) => [r, i] as const).filter(([r]) => r.layer === l);
    if (mine.length) {
      const ln = block.ln_1.forward(x, N, 1);
      for (const [r, i] of mine) q[i] = headQuery(model, l, r.head, ln, N);
    }
    // frozen attention: the orig run's output (each sender's change added in its own layer)
    const attn = gatherTiled(cache.get('attn_out', l).data, B, T, C, P, S);
    if (l === ls) residualForward(attn, attn, delta, attn.length);
    const mid = new Float32Array(N * C);
    residualForward(mid, x, attn, mid.length);
    const mlp = block.mlpf(block.ln_2.forward(mid, N, 1), N, 1);
    x = new Float32Array(N * C);
    residualForward(x, mid, mlp, x.length);
  }
  return { x, q };
  // END TASK 3.3
}

/**
 * Pass D: the orig run again from the first receiver's layer, with the receivers' queries
 * replaced, q[i] (S·B·|P|, hs) for receiver i (rows (sender, b, p)). At END only (P = [END]): END's
 * row alone, against the orig run's keys and values at earlier positions; at every position: a
 * whole run. Returns the metric per row (sender, b).
 */
function passD(model: GPT, run: OrigRun, pairs: PairBatch, receivers: HeadRef[], q: Float32Array[], from: number, S: number, P: number[]): number[] {
  const { n_embd: C, n_head: nh } = model.config;
  const hs = C / nh, { B, T } = run, Tq = P.length, N = S * B * Tq;
  const hooks: HookSpec = receivers.map((r, i) => [`blocks.${r.layer}.attn.hook_q`, (act) => {
    // act (S·B, Tq, nh, hs); q[i] (S·B·Tq, hs)
    for (let n = 0; n < N; n++) act.data.set(q[i].subarray(n * hs, (n + 1) * hs), (n * nh + r.head) * hs);
  }]);
  const end = Tq === 1;
  const x = gatherTiled(run.cache.get('resid_pre', from).data, B, T, C, P, S);
  const { residual } = model.forward(null, {
    start_at_layer: from, residual: ndarray(x, [S * B, Tq, C]), logits_at: [], hooks,
    past_kv_cache: end ? run.kv.prefix(T - 1) : undefined,
  });
  return logitDiffs(model, pickPositions(residual.data, S * B, Tq, C, [Tq - 1]), tiled(pairs.token, S), tiled(pairs.other, S));
}

/** `a` repeated S times. */
function tiled(a: readonly number[], S: number): number[] {
  return Array.from({ length: S * a.length }, (_, i) => a[i % a.length]);
}

/**
 * Path patching from every sender head (or opts.senders): to the logits, and, with receivers,
 * to the receivers' queries. Values per batch row; average them for the paper's numbers.
 */
export function pathPatch(model: GPT, pairs: PairBatch, opts: PathPatchOptions = {}): PathPatchResult {
  const { n_layer: L, n_head: nh } = model.config;
  const receivers = opts.receivers ?? [];
  const where = opts.receiverPositions ?? 'end';
  for (const r of receivers) if (!headExists(r, L, nh)) throw new Error(`receiver head ${headName(r)} does not exist (${L} layers of ${nh} heads)`);
  const first = receivers.length ? Math.min(...receivers.map((r) => r.layer)) : L;
  const last = receivers.length ? Math.max(...receivers.map((r) => r.layer)) : -1;
  const run = runOrig(model, pairs);
  const { B, T } = run;
  const senders = opts.senders ?? allHeads(L, nh);
  const nan = () => new Array<number>(B).fill(NaN);
  const to_logits: number[][][] = Array.from({ length: L }, () => Array.from({ length: nh }, nan));
  const to_receivers: (number[] | null)[][] | null = receivers.length ? Array.from({ length: L }, () => Array.from({ length: nh }, () => null)) : null;
  const END = [T - 1], ALL = Array.from({ length: T }, (_, t) => t);
  // senders of one layer go through passes C and D together, their rows stacked: the weights are
  // read once per layer for all of them
  const byLayer = new Map<number, HeadRef[]>();
  for (const s of senders) byLayer.set(s.layer, [...(byLayer.get(s.layer) ?? []), s]);
  const C = model.config.n_embd;
  let done = 0;
  for (const [ls, pack] of [...byLayer].sort((a, b) => a[0] - b[0])) {
    const S = pack.length;
    const reaches = to_receivers !== null && ls < last;
    const P = reaches && where === 'all' ? ALL : END;
    const c = passC(model, run, pack, P, reaches ? receivers : []);
    // the stream at END: row (k, b, |P| − 1)
    const xEnd = P.length === 1 ? c.x : pickPositions(c.x, S * B, P.length, C, [P.length - 1]);
    const m = logitDiffs(model, xEnd, tiled(pairs.token, S), tiled(pairs.other, S));
    pack.forEach((s, k) => { to_logits[s.layer][s.head] = m.slice(k * B, (k + 1) * B); });
    if (reaches) {
      // receivers in or before the senders' layer keep their orig queries: those from the orig run;
      // at END only, pass D starts at the first receiver after the senders (before it, END's
      // stream is the orig run's, cached)
      const from = P === END ? Math.min(...receivers.filter((r) => r.layer > ls).map((r) => r.layer)) : first;
      const which = receivers.map((_, i) => i).filter((i) => receivers[i].layer >= from);
      const q = which.map((i) => c.q[i] ?? tile(origQuery(model, run, receivers[i], P), S));
      const d = passD(model, run, pairs, which.map((i) => receivers[i]), q, from, S, P);
      pack.forEach((s, k) => { to_receivers![s.layer][s.head] = d.slice(k * B, (k + 1) * B); });
    }
    done += S;
    opts.onProgress?.(done, senders.length);
  }
  return { to_logits, to_receivers, orig: run.metric };
}

/** `a` repeated S times, as one array. */
function tile(a: Float32Array, S: number): Float32Array {
  const out = new Float32Array(S * a.length);
  for (let k = 0; k < S; k++) out.set(a, k * a.length);
  return out;
}

/** A receiver's query in the orig run at P, (B·P, hs), recomputed from the cached stream. */
function origQuery(model: GPT, run: OrigRun, r: HeadRef, P: number[]): Float32Array {
  const C = model.config.n_embd, N = run.B * P.length;
  const x = pickPositions(run.cache.get('resid_pre', r.layer).data, run.B, run.T, C, P);
  return headQuery(model, r.layer, r.head, model.transformer.h[r.layer].ln_1.forward(x, N, 1), N);
}
