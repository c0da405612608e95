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
 *   pass D runs one position, like a generation step with a key/value cache: END attends to the
 *   orig run's keys and values at earlier positions, and to its own, recomputed.
 * The metric needs two logits per row: the final layer norm at END, then a dot product with
 * W_U[token] − W_U[other], instead of the whole vocabulary.
 */
import type { GPT } from '../mingpt/model.ts';
import type { ActivationCache } from './activation_cache.ts';
import type { HookSpec } from '../mingpt/hooks.ts';
import { allHeads, headExists, headName, type HeadRef } from './heads.ts';
import { run_with_cache } from './activation_cache.ts';

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
  newZ: Float32Array[]; // [l] (B, T, nh, hs): hook_z of the new run
  metric: number[];
}

function runOrig(model: GPT, pairs: PairBatch, firstReceiverLayer: number): OrigRun {
  const L = model.config.n_layer;
  const T = pairs.orig[0].length, B = pairs.orig.length;
  if (pairs.new.length !== B || pairs.new.some((r) => r.length !== T) || pairs.orig.some((r) => r.length !== T))
    throw new Error('path patching needs orig and new texts of one token length, as many of each');
  if (pairs.token.length !== B || pairs.other.length !== B) throw new Error(`path patching: ${B} rows but ${pairs.token.length} token and ${pairs.other.length} other ids`);
  const names: string[] = [];
  for (let l = 0; l < L; l++) {
    names.push(`blocks.${l}.hook_resid_pre`, `blocks.${l}.attn.hook_z`, `blocks.${l}.hook_attn_out`);
    if (l >= firstReceiverLayer) names.push(`blocks.${l}.attn.hook_k`, `blocks.${l}.attn.hook_v`);
  }
  const o = run_with_cache(model, pairs.orig, { names, logits_at: [T - 1] });
  const n = run_with_cache(model, pairs.new, { names: (x) => x.endsWith('attn.hook_z'), logits_at: [T - 1] });
  const V = model.config.vocab_size;
  const metric = Array.from({ length: B }, (_, b) => o.logits.data[b * V + pairs.token[b]] - o.logits.data[b * V + pairs.other[b]]);
  return { B, T, cache: o.cache, newZ: Array.from({ length: L }, (_, l) => n.cache.get('z', l).data), metric };
}

/** Rows (B·P, C) of a (B, T, C) activation at the positions P, for every b. */
function gather(a: Float32Array, B: number, T: number, C: number, P: number[]): Float32Array {
  const out = new Float32Array(B * P.length * C);
  for (let b = 0; b < B; b++) P.forEach((t, i) => out.set(a.subarray((b * T + t) * C, (b * T + t + 1) * C), (b * P.length + i) * C));
  return out;
}

/**
 * logit(token[b]) − logit(other[b]) from the last block's output at END, x (B, C): the final
 * layer norm, then the two rows of the unembedding only.
 */
export function endMetric(model: GPT, x: Float32Array, token: readonly number[], other: readonly number[]): number[] {
  const C = model.config.n_embd, B = token.length, W = model.lm_head.weight;
  const xf = model.transformer.ln_f.forward(x, B, 1); // (B, 1, C)
  return Array.from({ length: B }, (_, b) => {
    let m = 0;
    for (let c = 0; c < C; c++) m += xf[b * C + c] * (W[token[b] * C + c] - W[other[b] * C + c]);
    return m;
  });
}

/** q (N, hs) of one head from a layer-normed input (N, C): rows h·hs … (h+1)·hs − 1 of c_attn. */
function headQuery(model: GPT, l: number, h: number, ln: Float32Array, N: number): Float32Array {
  const C = model.config.n_embd, hs = C / model.config.n_head, W = model.transformer.h[l].attn.c_attn;
  const q = new Float32Array(N * hs);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < hs; j++) {
      const o = h * hs + j, w = o * C;
      let s = W.bias ? W.bias[o] : 0;
      for (let c = 0; c < C; c++) s += ln[n * C + c] * W.weight[w + c];
      q[n * hs + j] = s;
    }
  }
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
  const tile = (a: Float32Array) => { const out = new Float32Array(S * a.length); for (let k = 0; k < S; k++) out.set(a, k * a.length); return out; };
  let x = tile(gather(cache.get('resid_pre', ls).data, B, T, C, P)); // (N, C)
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
    const attn = tile(gather(cache.get('attn_out', l).data, B, T, C, P));
    const mid = new Float32Array(N * C);
    for (let k = 0; k < mid.length; k++) mid[k] = x[k] + attn[k] + (l === ls ? delta[k] : 0);
    const mlp = block.mlpf(block.ln_2.forward(mid, N, 1), N, 1);
    x = new Float32Array(N * C);
    for (let k = 0; k < x.length; k++) x[k] = mid[k] + mlp[k];
  }
  return { x, q };
  // END TASK 3.3
}

/**
 * Pass D with the receivers' queries replaced at END only: END's stream from the first
 * receiver's layer on, attending to the orig run's keys and values at earlier positions.
 * q[i] (S·B, hs) is receiver i's query for S senders' rows (sender, b). Returns the metric per row.
 */
function passDEnd(model: GPT, run: OrigRun, pairs: PairBatch, receivers: HeadRef[], q: Float32Array[], from: number, S: number): number[] {
  const { n_layer: L, n_embd: C, n_head: nh } = model.config;
  const hs = C / nh, { T, cache } = run, end = T - 1, scale = 1 / Math.sqrt(hs), n1 = run.B, B = S * n1;
  const x1 = gather(cache.get('resid_pre', from).data, n1, T, C, [end]); // (B1, C)
  let x = new Float32Array(B * C); // (S·B1, C)
  for (let k = 0; k < S; k++) x.set(x1, k * x1.length);
  for (let l = from; l < L; l++) {
    const block = model.transformer.h[l];
    const qkv = block.attn.c_attn.forward(block.ln_1.forward(x, B, 1), B); // (B, 3C)
    receivers.forEach((r, i) => {
      if (r.layer !== l) return;
      for (let b = 0; b < B; b++) qkv.set(q[i].subarray(b * hs, (b + 1) * hs), b * 3 * C + r.head * hs);
    });
    const K = cache.get('k', l).data, Vv = cache.get('v', l).data; // (B, T, nh, hs)
    const z = new Float32Array(B * C); // (B, nh, hs) laid out as (B, C)
    const att = new Float64Array(T);
    for (let b = 0; b < B; b++) {
      const bo = b % n1; // the prompt this row belongs to
      for (let h = 0; h < nh; h++) {
        const qo = b * 3 * C + h * hs;
        let max = -Infinity;
        for (let t = 0; t <= end; t++) {
          // keys before END from the orig run; END's own key from this run
          const k = t < end ? K.subarray(((bo * T + t) * nh + h) * hs) : qkv.subarray(b * 3 * C + C + h * hs);
          let s = 0;
          for (let j = 0; j < hs; j++) s += qkv[qo + j] * k[j];
          att[t] = s * scale;
          if (att[t] > max) max = att[t];
        }
        let sum = 0;
        for (let t = 0; t <= end; t++) sum += (att[t] = Math.exp(att[t] - max));
        for (let t = 0; t <= end; t++) {
          const v = t < end ? Vv.subarray(((bo * T + t) * nh + h) * hs) : qkv.subarray(b * 3 * C + 2 * C + h * hs);
          const p = att[t] / sum;
          for (let j = 0; j < hs; j++) z[b * C + h * hs + j] += p * v[j];
        }
      }
    }
    const attn = block.attn.c_proj.forward(z, B);
    const mid = new Float32Array(B * C);
    for (let k = 0; k < mid.length; k++) mid[k] = x[k] + attn[k];
    const mlp = block.mlpf(block.ln_2.forward(mid, B, 1), B, 1);
    x = new Float32Array(B * C);
    for (let k = 0; k < x.length; k++) x[k] = mid[k] + mlp[k];
  }
  return endMetric(model, x, tiled(pairs.token, S), tiled(pairs.other, S));
}

/** `a` repeated S times. */
function tiled(a: readonly number[], S: number): number[] {
  return Array.from({ length: S * a.length }, (_, i) => a[i % a.length]);
}

/** Pass D with the receivers' queries replaced at every position: an ordinary hooked run from the first receiver's layer. */
function passDAll(model: GPT, run: OrigRun, pairs: PairBatch, receivers: HeadRef[], q: Float32Array[], from: number): number[] {
  const { n_embd: C, n_head: nh, vocab_size: V } = model.config;
  const hs = C / nh, { B, T } = run;
  const hooks: HookSpec = receivers.map((r, i) => [`blocks.${r.layer}.attn.hook_q`, (act) => {
    // act (B, T, nh, hs); q[i] (B·T, hs)
    for (let n = 0; n < B * T; n++) act.data.set(q[i].subarray(n * hs, (n + 1) * hs), (n * nh + r.head) * hs);
  }]);
  const res = model.forward(null, { start_at_layer: from, residual: run.cache.get('resid_pre', from), logits_at: [T - 1], hooks });
  return Array.from({ length: B }, (_, b) => res.logits.data[b * V + pairs.token[b]] - res.logits.data[b * V + pairs.other[b]]);
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
  const run = runOrig(model, pairs, first);
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
    const P = reaches && where === 'all' ? ALL : END, n1 = B * P.length;
    const c = passC(model, run, pack, P, reaches ? receivers : []);
    // the stream at END: row (k, b, |P| − 1)
    const xEnd = P.length === 1 ? c.x : gather(c.x, S * B, P.length, C, [P.length - 1]);
    const m = endMetric(model, xEnd, tiled(pairs.token, S), tiled(pairs.other, S));
    pack.forEach((s, k) => { to_logits[s.layer][s.head] = m.slice(k * B, (k + 1) * B); });
    if (reaches) {
      // receivers in or before the senders' layer keep their orig queries: those from the orig run
      const q = receivers.map((r, i) => c.q[i] ?? tile(origQuery(model, run, r, P), S));
      if (where === 'all') {
        const hs = C / model.config.n_head;
        pack.forEach((s, k) => {
          to_receivers![s.layer][s.head] = passDAll(model, run, pairs, receivers, q.map((qi) => qi.subarray(k * n1 * hs, (k + 1) * n1 * hs)), first);
        });
      } else {
        const d = passDEnd(model, run, pairs, receivers, q, first, S);
        pack.forEach((s, k) => { to_receivers![s.layer][s.head] = d.slice(k * B, (k + 1) * B); });
      }
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
  const x = gather(run.cache.get('resid_pre', r.layer).data, run.B, run.T, C, P);
  return headQuery(model, r.layer, r.head, model.transformer.h[r.layer].ln_1.forward(x, N, 1), N);
}
