/**
 * Knockouts and the three criteria of a circuit, after Wang et al. 2022 ("Interpretability in the
 * Wild", section 4): how well does a set of heads C explain the model's behaviour?
 *
 * Knocking out a head = mean ablation: its output z at each position is replaced by the mean,
 * over a group's corrupt (ABC) prompts, of that head's z at that position in ordinary runs of
 * those prompts. The mean keeps what the head always writes and removes what it says about this
 * particular prompt. It is computed once and held fixed, however many heads are knocked out.
 *
 * F(X) = the mean over all prompts of logit(token) − logit(other) at the last position, with
 * every head NOT in X knocked out (X = M, the whole model: nothing knocked out). Then:
 *
 *   faithfulness   |F(M) − F(C)|                     small: the circuit alone does the task
 *   completeness   |F(C \ K) − F(M \ K)| for K ⊆ C   small for every K: nothing important is missing
 *   minimality     |F(C \ {v}) − F(C)| per head v    large: every head matters
 *
 * A kept head can be kept at some positions only (the paper keeps a name mover only at END, a
 * previous-token head only at S1+1, ...): give it `positions`, names looked up in each prompt's
 * `positions` record. Definitions: test/fixtures' ANALYSIS.md, section "Knockouts".
 *
 * Cost: one forward pass of every prompt per F, with two logits at the last position only, started
 * at the first block where its knockouts differ from those of a run whose stream we kept: the
 * clean run (so F(M \ K) starts at K's first layer), or the circuit's own run (so F(C \ {v})
 * starts at v's layer). F values are remembered, so a set asked for twice (C \ {v} is also
 * C \ K for K = {v}) runs once.
 */
import { pickPositions, type GPT } from '../mingpt/model.ts';
import ndarray from 'ndarray';
import type { HookSpec } from '../mingpt/hooks.ts';
import { headExists, headName, type HeadRef } from './heads.ts';
import { run_with_cache, type ActivationCache } from './activation_cache.ts';
import { logitDiffs } from './metrics.ts';

/** Prompts of one token length: the clean texts, their corrupt twins, and each row's metric pair. */
export interface KnockoutGroup {
  clean: number[][]; // (B, T)
  corrupt: number[][]; // (B', T): the mean-ablation reference (B' may differ from B)
  token: number[]; // (B): the metric is logit(token[b]) − logit(other[b]) at the last position
  other: number[]; // (B)
  /** per clean row: named positions (e.g. { END: 14, S2: 9 }), for heads kept at some positions only */
  positions?: Array<Record<string, number>>;
  /** the mean-ablation values [l] (T, nh, hs), when computed by the caller (over more rows than `corrupt`, in batches); `corrupt` is then not run */
  meanZ?: Float32Array[];
}

/** A head kept in a knockout run: everywhere, or only at the named positions. */
export interface KeptHead extends HeadRef {
  positions?: string[];
}

interface Prepared {
  g: KnockoutGroup;
  B: number;
  T: number;
  meanZ: Float32Array[]; // [l] (T, nh, hs): mean over the corrupt rows
  residPre: ActivationCache;
  F_model: number[]; // [b]
}

const keyOf = (kept: readonly KeptHead[]) => kept.map((k) => `${headName(k)}${k.positions ? '@' + k.positions.join('+') : ''}`).sort().join(',');

/** F for sets of kept heads over a list of prompt groups (their prompts weighted equally). */
export class Knockout {
  private readonly groups: Prepared[];
  private readonly memo = new Map<string, number>();
  /** runs whose stream entering every block is kept: the kept heads of each layer (signature), and [group][l] (B, T, C) */
  private readonly bases: { sig: string[]; resid: Float32Array[][] }[] = [];
  /** how many F values were actually run (not remembered) */
  runs = 0;
  readonly n_prompts: number;

  constructor(readonly model: GPT, groups: KnockoutGroup[]) {
    const { n_layer: L, n_embd: C } = model.config;
    if (groups.length === 0) throw new Error('knockouts need at least one group of prompts');
    this.groups = groups.map((g) => {
      const B = g.clean.length, T = g.clean[0]?.length ?? 0;
      if (B === 0 || g.corrupt.length === 0) throw new Error('a knockout group needs clean and corrupt prompts');
      if ([...g.clean, ...g.corrupt].some((r) => r.length !== T)) throw new Error('a knockout group\'s prompts (clean and corrupt) must have one token length');
      if (g.token.length !== B || g.other.length !== B) throw new Error(`knockout group: ${B} clean rows but ${g.token.length} token and ${g.other.length} other ids`);
      if (g.positions && g.positions.length !== B) throw new Error(`knockout group: ${B} clean rows but ${g.positions.length} position records`);
      // the mean-ablation values: hook_z of the corrupt runs, averaged over the rows
      const zs = g.meanZ ? null : run_with_cache(model, g.corrupt, { names: (n) => n.endsWith('attn.hook_z'), logits_at: [] }).cache;
      const meanZ = g.meanZ ?? Array.from({ length: L }, (_, l) => {
        const z = zs!.get('z', l).data, n = z.length / g.corrupt.length, out = new Float32Array(n);
        for (let b = 0; b < g.corrupt.length; b++) for (let i = 0; i < n; i++) out[i] += z[b * n + i];
        for (let i = 0; i < n; i++) out[i] /= g.corrupt.length;
        return out;
      });
      const clean = run_with_cache(model, g.clean, { names: (n) => n.endsWith('hook_resid_pre'), logits_at: [] });
      const F_model = logitDiffs(model, pickPositions(clean.residual.data, B, T, C, [T - 1]), g.token, g.other);
      return { g, B, T, meanZ, residPre: clean.cache, F_model };
    });
    this.n_prompts = this.groups.reduce((a, p) => a + p.B, 0);
    // the first base: the clean run, every head kept everywhere
    const nh = model.config.n_head;
    this.bases.push({
      sig: Array.from({ length: L }, (_, l) => keyOf(Array.from({ length: nh }, (_, h) => ({ layer: l, head: h })))),
      resid: this.groups.map((p) => Array.from({ length: L }, (_, l) => p.residPre.get('resid_pre', l).data)),
    });
  }

  /** The metric of every prompt with nothing knocked out: [group][b]. */
  modelRows(): number[][] {
    return this.groups.map((p) => p.F_model);
  }

  /**
   * F with only `kept` heads left (everything else knocked out); 'all': the whole model.
   * With `remember`, the run's stream entering every block is kept, so that later sets that
   * differ from this one only from some layer on start there (evaluateCircuit does this for C).
   */
  F(kept: readonly KeptHead[] | 'all', opts: { remember?: boolean } = {}): number {
    return mean(this.rows(kept, opts).flat());
  }

  /** The per-prompt metric with only `kept` heads left: [group][b]. */
  rows(kept: readonly KeptHead[] | 'all', opts: { remember?: boolean } = {}): number[][] {
    if (kept === 'all') return this.modelRows();
    const { n_layer: L, n_head: nh } = this.model.config;
    for (const k of kept) if (!headExists(k, L, nh)) throw new Error(`head ${headName(k)} does not exist (${L} layers of ${nh} heads)`);
    // the kept heads layer by layer: two sets with the same layers 0 … s−1 give the same stream into block s
    const sig = Array.from({ length: L }, (_, l) => keyOf(kept.filter((k) => k.layer === l)));
    let base = this.bases[0], start = 0;
    for (const b of this.bases) {
      let s = 0;
      while (s < L - 1 && b.sig[s] === sig[s]) s++; // (the last block always runs: the bases keep no final stream)
      if (s > start) { base = b; start = s; }
    }
    const resid = opts.remember ? this.groups.map(() => [] as Float32Array[]) : null;
    const rows = this.groups.map((p, i) => this.runGroup(p, kept, start, base.resid[i], resid?.[i] ?? null));
    if (resid) this.bases.push({ sig, resid });
    return rows;
  }

  /**
   * One group's run with only `kept` left, starting at block `start` from `from[start]` (the
   * stream of a run that agrees with this one before that block). `into`: keep every block's input.
   */
  private runGroup(p: Prepared, kept: readonly KeptHead[], start: number, from: Float32Array[], into: Float32Array[] | null): number[] {
    const { n_layer: L, n_head: nh, n_embd: C } = this.model.config;
    const hs = C / nh, { B, T, g } = p;
    // keep[l][h]: null = knocked out everywhere, 'all' = kept everywhere, else per row the kept positions
    const keep: (null | 'all' | Set<number>[])[][] = Array.from({ length: L }, () => new Array(nh).fill(null));
    for (const k of kept) {
      if (!k.positions) { keep[k.layer][k.head] = 'all'; continue; }
      if (!g.positions) throw new Error(`head ${headName(k)} is to be kept at ${k.positions.join(', ')}, but the prompts carry no positions`);
      const cur = keep[k.layer][k.head];
      if (cur === 'all') continue;
      const sets = cur ?? Array.from({ length: B }, () => new Set<number>());
      for (let b = 0; b < B; b++) for (const name of k.positions) {
        const t = g.positions[b][name];
        if (!(Number.isInteger(t) && t >= 0 && t < T)) throw new Error(`prompt ${b} has no position "${name}" within 0..${T - 1}`);
        sets[b].add(t);
      }
      keep[k.layer][k.head] = sets;
    }
    if (into) for (let l = 0; l < start; l++) into[l] = from[l];
    const ablated = (l: number) => keep[l].some((k) => k !== 'all');
    const hooks: HookSpec = [];
    for (let l = start; l < L; l++) {
      if (into) hooks.push([`blocks.${l}.hook_resid_pre`, (act) => { into[l] = act.data.slice(); }]);
      if (!ablated(l)) continue;
      const m = p.meanZ[l];
      hooks.push([`blocks.${l}.attn.hook_z`, (act) => {
        // BEGIN TASK 3.4: knock out (mean-ablate) every head not kept
        // act (B, T, nh, hs): the knocked-out (b, t, h) take the mean (t, h)
        for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < nh; h++) {
          const k = keep[l][h];
          if (k === 'all' || (k !== null && k[b].has(t))) continue;
          act.data.set(m.subarray((t * nh + h) * hs, (t * nh + h + 1) * hs), ((b * T + t) * nh + h) * hs);
        }
        // END TASK 3.4
      }]);
    }
    const { residual } = this.model.forward(null, { start_at_layer: start, residual: ndarray(from[start], [B, T, C]), logits_at: [], hooks });
    return logitDiffs(this.model, pickPositions(residual.data, B, T, C, [T - 1]), g.token, g.other);
  }

  /** F, remembered by the set of kept heads. */
  Fmemo(kept: readonly KeptHead[], opts: { remember?: boolean } = {}): number {
    const key = keyOf(kept);
    let v = this.memo.get(key);
    if (v === undefined) {
      v = this.F(kept, opts);
      this.runs++;
      this.memo.set(key, v);
    }
    return v;
  }
}

function mean(xs: number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

export interface CircuitEvaluation {
  circuit: string[];
  F_model: number;
  F_circuit: number;
  F_empty: number;
  faithfulness: number;
  completeness: { K: string[]; value: number; F_C_minus_K: number; F_M_minus_K: number }[];
  minimality: { head: string; value: number; F_C_minus_v: number }[];
}

export interface EvaluateOptions {
  /** the sets K ⊆ C for completeness */
  completeness_sets?: HeadRef[][];
  /** minimality for every head of the circuit (default true) */
  minimality?: boolean;
  /** called after each F: done of total (total counts every F asked for, remembered or not) */
  onProgress?: (done: number, total: number) => void;
}

/** How many F values evaluateCircuit asks for. */
export function evaluationSteps(circuitSize: number, sets: number, minimality = true): number {
  return 2 + 2 * sets + (minimality ? circuitSize : 0);
}

/**
 * Faithfulness, completeness for each K, minimality for each head of C. Circuit heads keep
 * their `positions` (if any) in F(C) and F(C \ K); M is every head, everywhere.
 */
export function evaluateCircuit(ko: Knockout, circuit: readonly KeptHead[], opts: EvaluateOptions = {}): CircuitEvaluation {
  const { n_layer: L, n_head: nh } = ko.model.config;
  const sets = opts.completeness_sets ?? [];
  const inC = new Set(circuit.map(headName));
  for (const K of sets) for (const h of K) if (!inC.has(headName(h))) throw new Error(`completeness set {${K.map(headName).join(', ')}}: ${headName(h)} is not in the circuit`);
  const total = evaluationSteps(circuit.length, sets.length, opts.minimality !== false);
  let done = 0;
  const F = (kept: readonly KeptHead[], remember = false) => {
    const v = ko.Fmemo(kept, { remember });
    opts.onProgress?.(++done, total);
    return v;
  };
  const M: KeptHead[] = [];
  for (let l = 0; l < L; l++) for (let h = 0; h < nh; h++) M.push({ layer: l, head: h });
  const minus = (X: readonly KeptHead[], K: readonly HeadRef[]) => {
    const drop = new Set(K.map(headName));
    return X.filter((x) => !drop.has(headName(x)));
  };
  // BEGIN TASK 3.5: faithfulness, completeness and minimality
  const F_model = ko.F('all');
  const F_circuit = F(circuit, true); // C \ K and C \ {v} start where they part from C
  const F_empty = F([]);
  const completeness = sets.map((K) => {
    const F_C_minus_K = F(minus(circuit, K)), F_M_minus_K = F(minus(M, K));
    return { K: K.map(headName), value: Math.abs(F_C_minus_K - F_M_minus_K), F_C_minus_K, F_M_minus_K };
  });
  const minimality = opts.minimality === false ? [] : circuit.map((v) => {
    const F_C_minus_v = F(minus(circuit, [v]));
    return { head: headName(v), value: Math.abs(F_C_minus_v - F_circuit), F_C_minus_v };
  });
  return { circuit: circuit.map(headName), F_model, F_circuit, F_empty, faithfulness: Math.abs(F_model - F_circuit), completeness, minimality };
  // END TASK 3.5
}
