/**
 * The IOI experiment's computations, group by group (every group is one batch of prompts of one
 * token length), each number a mean over all prompts. ioi.ts is the command line around it.
 *
 *   2. the metric F = logit(IO) − logit(S) at END, accuracy (IO > S), P(IO)
 *   3. logit lens and direct logit attribution (per layer; per head)
 *   4. activation patching: the ABC run with one head's z from the IOI run (layer × head); the
 *      residual stream per layer and position on the first group (the assignment's sweep)
 *   5. attention from END to IO, S1 and S2, every head; full patterns of the first prompt
 *   6. path patching, orig = IOI prompt, new = its ABC twin: to the logits, to the name movers' queries
 *   7. knockouts (mean ablation over each group's ABC prompts) and the three criteria
 *
 * Every library piece used here is in lens/: attribution.ts, patching.ts, path_patching.ts,
 * knockout.ts; the fast residual sweep is sweep/engines.ts's.
 *
 * Memory stays bounded however many prompts there are: every step runs a group in batches
 * whose activations fit in BATCH_BYTES (batches(); each number is a mean over prompts, so a
 * batch's share is weighed by its size), and the knockouts' mean-ablation reference is summed
 * over the group's ABC prompts batch by batch.
 */
import { pickPositions, type GPT } from '../../mingpt/model.ts';
import { directLogitAttribution, logitLens } from '../../lens/attribution.ts';
import { get_act_patch_attn_head_out_all_pos, logitDiffMetric } from '../../lens/patching.ts';
import { pathPatch } from '../../lens/path_patching.ts';
import { Knockout, evaluateCircuit, evaluationSteps, type CircuitEvaluation, type KeptHead } from '../../lens/knockout.ts';
import { patchingSweep } from '../../sweep/engines.ts';
import { headName, type HeadRef } from '../../lens/heads.ts';
import { softmax } from '../../lens/metrics.ts';
import { RNG } from '../../mingpt/utils.ts';
import type { PromptGroup } from './dataset.ts';
import { run_with_cache } from '../../lens/activation_cache.ts';

/** Layer × head values (null where a value does not exist, e.g. senders after the receivers). */
export type HeadGrid = (number | null)[][];

export interface StepsProgress {
  /** a step starts: its name and how many units of work it has */
  start(step: string, total: number): void;
  /** units done so far in the current step */
  update(done: number): void;
  end(): void;
}

/** Sums of per-prompt values, for means over all prompts across groups. */
class Mean {
  private sum: number[] = [];
  private n = 0;
  /** add a group's rows: values[i][b] for every i */
  addRows(values: readonly (readonly number[])[]): void {
    if (this.sum.length === 0) this.sum = new Array(values.length).fill(0);
    values.forEach((row, i) => { for (const v of row) this.sum[i] += v; });
    this.n += values[0]?.length ?? 0;
  }
  /** add a group's mean over B prompts */
  addMeans(means: readonly number[], B: number): void {
    if (this.sum.length === 0) this.sum = new Array(means.length).fill(0);
    means.forEach((m, i) => { this.sum[i] += m * B; });
    this.n += B;
  }
  values(): number[] {
    return this.sum.map((s) => s / this.n);
  }
}

/** The sizes that decide how much memory a run takes. */
type Sizes = { n_layer: number; n_head: number; n_embd: number; vocab_size: number };

const grid = (flat: readonly (number | null)[], L: number, nh: number): HeadGrid => Array.from({ length: L }, (_, l) => flat.slice(l * nh, (l + 1) * nh));

/** What one batch may hold of activations: the logits at every position and a full cache. */
export const BATCH_BYTES = 256 * 2 ** 20;

/**
 * Bytes one prompt of T tokens takes in a run that keeps the logits at every position (T × V)
 * and every hook point: per position and layer about 20 vectors of n_embd (residual streams,
 * layer norms, q, k, v, z, the MLP's 4 × n_embd twice) and the attention scores and pattern.
 */
export function promptBytes(c: Sizes, T: number): number {
  return 4 * T * (c.vocab_size + c.n_layer * (20 * c.n_embd + 2 * c.n_head * T));
}

/** The groups cut into batches of at most `bytes` of activations each (at least one prompt); a batch keeps its group's key. */
export function batches(groups: readonly PromptGroup[], c: Sizes, bytes = BATCH_BYTES): PromptGroup[] {
  return groups.flatMap((g) => {
    const size = Math.max(1, Math.floor(bytes / promptBytes(c, g.T)));
    return Array.from({ length: Math.ceil(g.prompts.length / size) }, (_, i) => ({ ...g, prompts: g.prompts.slice(i * size, (i + 1) * size) }));
  });
}

// -----------------------------------------------------------------------------------------------
// steps 2-5: one clean run per group, the head_z sweep, the attention read-outs

export interface BasicResults {
  F_model: number;
  accuracy: number;
  io_prob: number;
  /** per prompt (in the order of the groups): logit(IO) − logit(S) at END */
  per_prompt: number[];
  logit_lens: number[];
  dla: { heads: number[][]; embed: number; attn_bias: number[]; mlp: number[]; const: number };
  patching: { head_z: number[][]; corrupt_F: number };
  /** [l][h] mean attention from END to IO, S1, S2 */
  attention: { to_IO: number[][]; to_S1: number[][]; to_S2: number[][] };
  /** the first prompt's attention patterns: [l][h] (T × T, row = query) */
  first_patterns: Float32Array[][];
}

export function basicResults(model: GPT, groups: PromptGroup[], progress: StepsProgress, batchBytes = BATCH_BYTES): BasicResults {
  const { n_layer: L, n_head: nh, vocab_size: V } = model.config;
  const parts = batches(groups, model.config, batchBytes);
  const F = new Mean(), acc = new Mean(), prob = new Mean(), lens = new Mean();
  const dHeads = new Mean(), dRest = new Mean(), headZ = new Mean(), corrF = new Mean();
  const toIO = new Mean(), toS1 = new Mean(), toS2 = new Mean();
  const per_prompt: number[] = [];
  let first_patterns: Float32Array[][] = [];
  progress.start('activation patching of every head (ABC run, one head\'s z from the IOI run)', parts.length * L * nh);
  let offset = 0;
  for (const g of parts) {
    const B = g.prompts.length, T = g.T, end = T - 1;
    const clean = g.prompts.map((p) => p.clean_ids), corrupt = g.prompts.map((p) => p.corrupt_ids);
    const io = g.prompts.map((p) => p.io_id), s = g.prompts.map((p) => p.s_id);
    // (logits at every position: with logits_at, the cache's ln_final scale would cover END only,
    // and the direct logit attribution reads it at END's index in the full sequence)
    const { logits: all, cache } = run_with_cache(model, clean);
    const logits = { data: pickPositions(all.data, B, T, V, [end]) }; // (B, V) at END
    // 2. the metric
    const diffs = g.prompts.map((_, b) => logits.data[b * V + io[b]] - logits.data[b * V + s[b]]);
    per_prompt.push(...diffs);
    F.addRows([diffs]);
    acc.addRows([diffs.map((d) => (d > 0 ? 1 : 0))]);
    prob.addRows([g.prompts.map((_, b) => softmax(logits.data, b * V, V)[io[b]])]);
    // 3. logit lens and DLA, each prompt with its own IO − S direction
    const dir = { pos: end, token: io, other: s };
    lens.addRows(logitLens(model, cache, dir));
    const d = directLogitAttribution(model, cache, dir);
    dHeads.addRows(d.heads.flat());
    dRest.addRows([d.embed, ...d.attn_bias, ...d.mlp, d.const]);
    // 5. attention from END to IO, S1, S2, and the first prompt's patterns
    const io_ = [], s1_ = [], s2_ = [];
    for (let l = 0; l < L; l++) {
      const pat = cache.get('pattern', l).data; // (B, nh, T, T)
      for (let h = 0; h < nh; h++) {
        const at = (b: number, k: number) => pat[((b * nh + h) * T + end) * T + k];
        io_.push(g.prompts.map((p, b) => at(b, p.pos.IO)));
        s1_.push(g.prompts.map((p, b) => at(b, p.pos.S1)));
        s2_.push(g.prompts.map((p, b) => at(b, p.pos.S2)));
      }
      if (first_patterns.length < L && offset === 0) first_patterns.push(Array.from({ length: nh }, (_, h) => pat.slice(h * T * T, (h + 1) * T * T)));
    }
    toIO.addRows(io_); toS1.addRows(s1_); toS2.addRows(s2_);
    // 4. activation patching of each head's z at every position
    const r = get_act_patch_attn_head_out_all_pos(model, corrupt, cache, logitDiffMetric(io, s), {
      onProgress: (done) => progress.update(offset + done),
    });
    headZ.addMeans(r.data, B);
    corrF.addMeans([r.corrupted], B);
    offset += L * nh;
  }
  progress.end();
  const rest = dRest.values();
  return {
    F_model: F.values()[0],
    accuracy: acc.values()[0],
    io_prob: prob.values()[0],
    per_prompt,
    logit_lens: lens.values(),
    dla: { heads: grid(dHeads.values(), L, nh) as number[][], embed: rest[0], attn_bias: rest.slice(1, 1 + L), mlp: rest.slice(1 + L, 1 + 2 * L), const: rest[1 + 2 * L] },
    patching: { head_z: grid(headZ.values(), L, nh) as number[][], corrupt_F: corrF.values()[0] },
    attention: { to_IO: grid(toIO.values(), L, nh) as number[][], to_S1: grid(toS1.values(), L, nh) as number[][], to_S2: grid(toS2.values(), L, nh) as number[][] },
    first_patterns,
  };
}

// -----------------------------------------------------------------------------------------------
// step 4b: the residual stream, per layer and position (the assignment's sweep), on one group

export interface ResidSweep {
  group: string;
  prompts: number;
  /** mean over the group's prompts of logit(IO) − logit(S) with block l's output at position p from the IOI run */
  matrix: number[][];
  clean_F: number;
  corrupt_F: number;
}

export async function residSweep(model: GPT, g: PromptGroup, progress: StepsProgress): Promise<ResidSweep> {
  const L = model.config.n_layer, T = g.T, B = g.prompts.length;
  const sum = Array.from({ length: L }, () => new Array<number>(T).fill(0));
  let clean = 0, corrupt = 0;
  progress.start(`residual stream sweep, layer × position (group "${g.key}", ${B} prompts)`, B * L * T);
  for (const [b, p] of g.prompts.entries()) {
    // denoising: the ABC run with one block output from the IOI run; metric logit(IO) − logit(S)
    const r = await patchingSweep(model, { clean_ids: p.clean_ids, corrupt_ids: p.corrupt_ids, corrupt_token_id: p.io_id, clean_token_id: p.s_id }, {
      engine: 'fast', onProgress: (done) => progress.update(b * L * T + done),
    });
    r.matrix.forEach((row, l) => row.forEach((v, t) => { sum[l][t] += v / B; }));
    clean += r.clean_logit_diff / B;
    corrupt += r.corrupt_logit_diff / B;
  }
  progress.end();
  return { group: g.key, prompts: B, matrix: sum, clean_F: clean, corrupt_F: corrupt };
}

// -----------------------------------------------------------------------------------------------
// step 6: path patching

export interface PathResults {
  to_logits: number[][];
  to_name_movers: HeadGrid;
}

export function pathResults(model: GPT, groups: PromptGroup[], nameMovers: HeadRef[], progress: StepsProgress, batchBytes = BATCH_BYTES): PathResults {
  const { n_layer: L, n_head: nh } = model.config;
  const parts = batches(groups, model.config, batchBytes);
  const logits = new Mean(), movers = new Mean();
  progress.start(`path patching from every head (to the logits; to the queries of ${nameMovers.map(headName).join(', ')} at END)`, parts.length * L * nh);
  let nulls: boolean[] = [];
  parts.forEach((g, k) => {
    const r = pathPatch(model, {
      orig: g.prompts.map((p) => p.clean_ids), new: g.prompts.map((p) => p.corrupt_ids),
      token: g.prompts.map((p) => p.io_id), other: g.prompts.map((p) => p.s_id),
    }, { receivers: nameMovers, receiverPositions: 'end', onProgress: (done) => progress.update(k * L * nh + done) });
    logits.addRows(r.to_logits.flat());
    const rows = r.to_receivers!.flat();
    nulls = rows.map((x) => x === null);
    movers.addRows(rows.map((x) => x ?? new Array(g.prompts.length).fill(0)));
  });
  progress.end();
  const m = movers.values().map((v, i) => (nulls[i] ? null : v));
  return { to_logits: grid(logits.values(), L, nh) as number[][], to_name_movers: grid(m, L, nh) };
}

// -----------------------------------------------------------------------------------------------
// step 7: knockouts

export interface KnockoutResults extends Omit<CircuitEvaluation, 'completeness'> {
  completeness: (CircuitEvaluation['completeness'][number] & { kind: string })[];
  positions: 'all' | 'paper';
  /** F values actually computed (the rest were remembered) */
  runs: number;
}

/** Completeness sets: the given ones, or each class of the circuit, plus `samples` random subsets (seeded). */
export function completenessSets(circuit: HeadRef[], classes: Record<string, string>, samples: number, seed: number): { K: HeadRef[]; kind: string }[] {
  const sets: { K: HeadRef[]; kind: string }[] = [];
  const byClass = new Map<string, HeadRef[]>();
  for (const h of circuit) {
    const c = classes[headName(h)];
    if (c === undefined) continue;
    if (!byClass.has(c)) byClass.set(c, []);
    byClass.get(c)!.push(h);
  }
  for (const [c, K] of byClass) sets.push({ K, kind: `class ${c}` });
  // random subsets: each head in with probability 1/2 (never empty), as the paper samples them
  const rng = new RNG(seed);
  for (let i = 0; i < samples; i++) {
    let K: HeadRef[] = [];
    while (K.length === 0) K = circuit.filter(() => rng.random() < 0.5);
    sets.push({ K, kind: 'random' });
  }
  return sets;
}

export function knockoutResults(model: GPT, groups: PromptGroup[], kept: KeptHead[], sets: { K: HeadRef[]; kind: string }[], positions: 'all' | 'paper',
  progress: StepsProgress, batchBytes = BATCH_BYTES): KnockoutResults {
  const parts = batches(groups, model.config, batchBytes);
  const steps = evaluationSteps(kept.length, sets.length);
  progress.start(`knockouts: circuit of ${kept.length} heads, ${sets.length} completeness sets, minimality per head (mean ablation over the ABC prompts)`, groups.length + parts.length * steps);
  // the mean-ablation reference of each group: the mean over all of its ABC prompts, whatever the batches
  const meanZ = new Map(groups.map((g, i) => {
    const m = meanAblation(model, g, batchBytes);
    progress.update(i + 1);
    return [g.key, m] as const;
  }));
  // each batch on its own (its clean runs' streams are all a Knockout keeps), weighed by its size
  const evs: { ev: CircuitEvaluation; n: number }[] = [];
  let runs = 0;
  parts.forEach((g, k) => {
    const ko = new Knockout(model, [{
      clean: g.prompts.map((p) => p.clean_ids), corrupt: g.prompts.map((p) => p.corrupt_ids), meanZ: meanZ.get(g.key),
      token: g.prompts.map((p) => p.io_id), other: g.prompts.map((p) => p.s_id),
      positions: g.prompts.map((p) => ({ ...p.pos })),
    }]);
    const ev = evaluateCircuit(ko, kept, { completeness_sets: sets.map((s) => s.K), onProgress: (done) => progress.update(groups.length + k * steps + done) });
    evs.push({ ev, n: g.prompts.length });
    runs = ko.runs; // the same sets in every batch
  });
  progress.end();
  const ev = combineEvaluations(evs);
  return { ...ev, completeness: ev.completeness.map((c, i) => ({ ...c, kind: sets[i].kind })), positions, runs };
}

/**
 * Each head's z averaged over the group's ABC prompts, [l] (T, nh, hs): the knockouts' reference,
 * summed batch by batch in prompt order (as Knockout itself sums them).
 */
function meanAblation(model: GPT, g: PromptGroup, batchBytes: number): Float32Array[] {
  const L = model.config.n_layer;
  let sums: Float32Array[] = [];
  for (const part of batches([g], model.config, batchBytes)) {
    const rows = part.prompts.map((p) => p.corrupt_ids);
    const zs = run_with_cache(model, rows, { names: (n) => n.endsWith('attn.hook_z'), logits_at: [] }).cache;
    sums = Array.from({ length: L }, (_, l) => {
      const z = zs.get('z', l).data, n = z.length / rows.length, out = sums[l] ?? new Float32Array(n);
      for (let b = 0; b < rows.length; b++) for (let i = 0; i < n; i++) out[i] += z[b * n + i];
      return out;
    });
  }
  for (const s of sums) for (let i = 0; i < s.length; i++) s[i] /= g.prompts.length;
  return sums;
}

/** The evaluations of the batches as one over all prompts: each F a mean weighed by the batch sizes, the criteria recomputed from them. */
function combineEvaluations(evs: { ev: CircuitEvaluation; n: number }[]): CircuitEvaluation {
  const N = evs.reduce((a, e) => a + e.n, 0);
  const mean = (f: (ev: CircuitEvaluation) => number) => evs.reduce((a, e) => a + f(e.ev) * e.n, 0) / N;
  const first = evs[0].ev;
  const F_model = mean((e) => e.F_model), F_circuit = mean((e) => e.F_circuit);
  return {
    circuit: first.circuit,
    F_model,
    F_circuit,
    F_empty: mean((e) => e.F_empty),
    faithfulness: Math.abs(F_model - F_circuit),
    completeness: first.completeness.map((c, i) => {
      const F_C_minus_K = mean((e) => e.completeness[i].F_C_minus_K), F_M_minus_K = mean((e) => e.completeness[i].F_M_minus_K);
      return { K: c.K, value: Math.abs(F_C_minus_K - F_M_minus_K), F_C_minus_K, F_M_minus_K };
    }),
    minimality: first.minimality.map((m, i) => {
      const F_C_minus_v = mean((e) => e.minimality[i].F_C_minus_v);
      return { head: m.head, value: Math.abs(F_C_minus_v - F_circuit), F_C_minus_v };
    }),
  };
}
