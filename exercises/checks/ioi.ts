/**
 * The IOI tasks' checks (3.1–3.5), against analysis.json (the fixtures' PyTorch run or a key):
 * the case pair and the IOI group of ioi-group.json. Where a task's code calls another task's,
 * the check supplies its own stand-in (a metric of its own for 3.2, a table of F values for 3.5).
 */
import ndarray from 'ndarray';
import type { NdArray } from 'ndarray';
import type { GPT } from '../../mingpt/model.ts';
import { zeroHook, type HookSpec } from '../../mingpt/hooks.ts';
import { run_with_cache } from '../../lens/activation_cache.ts';
import { get_act_patch_attn_head_out_all_pos, layer_head_vector_patch_setter, logitDiffMetric, type Metric } from '../../lens/patching.ts';
import { pathPatch, type PairBatch } from '../../lens/path_patching.ts';
import { Knockout, evaluateCircuit, type KnockoutGroup } from '../../lens/knockout.ts';
import { allHeads, headName, parseHead, type HeadRef } from '../../lens/heads.ts';
import { Mismatch, expectGridNear, expectNear, fmt, near } from '../harness.ts';
import type { Context, TaskChecks } from '../context.ts';

const q = JSON.stringify;
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The IOI group of the reference: clean prompts, their ABC twins, IO and S ids. */
function group(c: Context) {
  const K = c.ref.analysis.knockout;
  return { clean: K.group_ids.map((p) => p[0]), corrupt: K.group_ids.map((p) => p[1]), io: K.io_ids, s: K.s_ids };
}

/** The grader's own metric (so that 3.2 and 3.3 do not need 3.1): mean over rows of logit(token[b]) − logit(other[b]) at the last position. */
function metricOf(token: readonly number[], other: readonly number[]): Metric {
  return (logits) => {
    const [B, P, V] = logits.shape;
    return mean(Array.from({ length: B }, (_, b) => logits.data[(b * P + P - 1) * V + token[b]] - logits.data[(b * P + P - 1) * V + other[b]]));
  };
}

// -----------------------------------------------------------------------------------------------
// 3.1 the metric

const task31: TaskChecks = async (t, c) => {
  await t.test('logits written by hand: one pair per prompt, and one pair for all', () => {
    // (B = 2, P = 3, V = 5); only the last position (p = 2) may count. Rows at p = 2:
    //   b0: 0.5 2.0 −1.0 0.25 3.0      b1: 1.5 −0.5 4.0 0.0 2.5
    // token [1, 2], other [3, 0]: b0 2.0 − 0.25 = 1.75, b1 4.0 − 1.5 = 2.5, mean 2.125
    // token 4, other 0:           b0 3.0 − 0.5 = 2.5,  b1 2.5 − 1.5 = 1.0, mean 1.75
    const data = new Float32Array(2 * 3 * 5).fill(10);
    data.set([0.5, 2.0, -1.0, 0.25, 3.0], (0 * 3 + 2) * 5);
    data.set([1.5, -0.5, 4.0, 0.0, 2.5], (1 * 3 + 2) * 5);
    const logits = ndarray(data, [2, 3, 5]) as NdArray<Float32Array>;
    const cases: [number | number[], number | number[], number, Record<string, number>][] = [
      [[1, 2], [3, 0], 2.125, { 'the sign is reversed: the metric is logit(token) − logit(other)': -2.125, 'that is the first prompt only: the metric is the mean over the group': 1.75, 'that is the sum over the prompts, not their mean': 4.25 }],
      [4, 0, 1.75, { 'the sign is reversed: the metric is logit(token) − logit(other)': -1.75, 'that is the first prompt only: the metric is the mean over the group': 2.5, 'that is the sum over the prompts, not their mean': 3.5 }],
    ];
    for (const [token, other, want, wrong] of cases) {
      const got = logitDiffMetric(token, other)(logits);
      const hint = Object.entries(wrong).find(([, v]) => near(got, v, 1e-6))?.[0]
        ?? (near(got, 0, 1e-6) ? 'read the last position (P − 1) of each row: the other positions hold 10 here' : 'mean over b of logits[b, P − 1, token_b] − logits[b, P − 1, other_b]; a single id stands for every row');
      expectNear(`metric(token ${q(token)}, other ${q(other)})`, got, want, 1e-6, hint);
    }
  });
  await t.test("the reference case's metric, and the mean over the IOI group (analysis.json)", () => {
    const model = c.model(), V = model.config.vocab_size, k = c.ref.analysis.case;
    const one = logitDiffMetric(k.corrupt_token_id, k.clean_token_id)(model.forward(k.clean_ids).logits);
    expectNear('logit(corrupt) − logit(clean), clean text', one, c.ref.analysis.metric.clean, 1e-3, near(one, -c.ref.analysis.metric.clean, 1e-3) ? 'the sign is reversed: the metric is logit(token) − logit(other)' : 'the metric of one text at its last position');
    const g = group(c), Tg = g.clean[0].length;
    const logits = model.forward(g.clean, { logits_at: [Tg - 1] }).logits;
    const got = logitDiffMetric(g.io, g.s)(logits);
    const rows = g.clean.map((_, b) => logits.data[b * V + g.io[b]] - logits.data[b * V + g.s[b]]);
    const hint = near(got, -c.ref.analysis.group.F_model, 1e-3) ? 'the sign is reversed: the metric is logit(IO) − logit(S)'
      : near(got, rows[0], 1e-4) ? 'that is the first prompt only: the metric is the mean over the group'
        : near(got, rows.reduce((a, b) => a + b, 0), 1e-4) ? 'that is the sum over the prompts, not their mean' : 'the mean over the prompts of logit(IO) − logit(S), each prompt with its own pair';
    expectNear('F = mean logit(IO) − logit(S) over the group', got, c.ref.analysis.group.F_model, 1e-3, hint);
  });
};

// -----------------------------------------------------------------------------------------------
// 3.2 patching one head

const task32: TaskChecks = async (t, c) => {
  await t.test('a hand-made (1, 3, 2, 2) hook_z: head 1 patched at every position, head 0 untouched', () => {
    // clean[0, t, h, j] = 10t + 2h + j + 1 (all nonzero); the corrupted activation is all zeros
    const clean = ndarray(Float32Array.from({ length: 12 }, (_, i) => { const t = Math.floor(i / 4), h = Math.floor(i / 2) % 2, j = i % 2; return 10 * t + 2 * h + j + 1; }), [1, 3, 2, 2]);
    const act = ndarray(new Float32Array(12), [1, 3, 2, 2]);
    layer_head_vector_patch_setter(act as NdArray<Float32Array>, { layer: 0, pos: 0, head: 1 }, clean as NdArray<Float32Array>);
    const want = Float32Array.from({ length: 12 }, (_, i) => (Math.floor(i / 2) % 2 === 1 ? clean.data[i] : 0));
    const wrongAxis = Float32Array.from({ length: 12 }, (_, i) => (Math.floor(i / 4) === 1 ? clean.data[i] : 0));
    if (q(Array.from(act.data)) !== q(Array.from(want))) {
      throw new Mismatch(`[t][h][j] ${q(Array.from(want))}`, q(Array.from(act.data)), q(Array.from(act.data)) === q(Array.from(wrongAxis))
        ? 'the head index went to the position axis: hook_z is (B, T, nh, hs), so the head is the third axis (pick(null, null, head))'
        : 'copy clean[:, :, head, :] into the activation, and nothing else');
    }
  });
  await t.test('every head patched into the corrupted run, case and group (analysis.json)', () => {
    const model = c.model(), k = c.ref.analysis.case;
    const cache = run_with_cache(model, k.clean_ids, { names: (n) => n.endsWith('attn.hook_z') }).cache;
    const r = get_act_patch_attn_head_out_all_pos(model, k.corrupt_ids, cache, metricOf([k.corrupt_token_id], [k.clean_token_id]));
    const L = model.config.n_layer, nh = model.config.n_head;
    const grid = (d: number[]) => Array.from({ length: L }, (_, l) => d.slice(l * nh, (l + 1) * nh));
    expectGridNear('case: patched head_z[layer][head]', grid(r.data), c.ref.analysis.patching.head_z, 1e-3, 'the setter writes the clean head\'s z at every position into the corrupted run');
    const g = group(c);
    const gc = run_with_cache(model, g.clean, { names: (n) => n.endsWith('attn.hook_z') }).cache;
    const gr = get_act_patch_attn_head_out_all_pos(model, g.corrupt, gc, metricOf(g.io, g.s));
    expectGridNear('group: patched head_z[layer][head]', grid(gr.data), c.ref.analysis.group.patching.head_z, 1e-3, 'with a batch of prompts, each row takes its own clean prompt\'s z');
  });
};

// -----------------------------------------------------------------------------------------------
// 3.3 path patching

/** What path patching gives when the other heads are not frozen: the sender's z from `new`, everything else recomputed. */
function unfrozen(model: GPT, pair: PairBatch): number[] {
  const { n_layer: L, n_head: nh, n_embd: C, vocab_size: V } = model.config, hs = C / nh, T = pair.orig[0].length, B = pair.orig.length;
  const z = run_with_cache(model, pair.new, { names: (n) => n.endsWith('attn.hook_z') }).cache;
  return allHeads(L, nh).map(({ layer, head }) => {
    const src = z.get('z', layer).data;
    const hooks: HookSpec = [[`blocks.${layer}.attn.hook_z`, (act) => {
      for (let n = 0; n < B * T; n++) act.data.set(src.subarray((n * nh + head) * hs, (n * nh + head + 1) * hs), (n * nh + head) * hs);
    }]];
    const lg = model.run_with_hooks(pair.orig, hooks, { logits_at: [T - 1] }).logits.data;
    return mean(Array.from({ length: B }, (_, b) => lg[b * V + pair.token[b]] - lg[b * V + pair.other[b]]));
  });
}

const task33: TaskChecks = async (t, c) => {
  const model = c.model(), { n_layer: L, n_head: nh } = model.config, k = c.ref.analysis.case;
  const pair: PairBatch = { orig: [k.clean_ids], new: [k.corrupt_ids], token: [k.corrupt_token_id], other: [k.clean_token_id] };
  const noFreeze = () => [{ values: unfrozen(model, pair), hint: 'the other heads were not frozen: in pass C every head but the sender keeps its z from the orig run, so the sender\'s change reaches the end only through the residual stream and the MLPs' }];
  await t.test('case pair: to the logits, every sender (analysis.json path_patching.to_logits)', () => {
    const r = pathPatch(model, pair);
    expectGridNear('to_logits[layer][head]', r.to_logits.map((row) => row.map((v) => v[0])), c.ref.analysis.path_patching.to_logits, 1e-3,
      'pass C: orig with every head\'s z frozen to its orig value except the sender\'s, taken from new; MLPs and layer norms recomputed', noFreeze);
  });
  await t.test("case pair: to the last layer's queries, every position (to_q_last_layer)", () => {
    const receivers = Array.from({ length: nh }, (_, h) => ({ layer: L - 1, head: h }));
    const r = pathPatch(model, pair, { receivers, receiverPositions: 'all' });
    expectGridNear('to_q_last_layer[layer][head]', r.to_receivers!.map((row) => row.map((v) => (v === null ? null : v[0]))), c.ref.analysis.path_patching.to_q_last_layer, 1e-3,
      'pass C records the receivers\' queries in the frozen run (their rows at positions P, for each sender)');
  });
  await t.test("group: to the logits and to the name movers' queries at END, means over the prompts", () => {
    const g = group(c);
    const receivers = c.ref.analysis.group.name_movers.map(parseHead);
    const r = pathPatch(model, { orig: g.clean, new: g.corrupt, token: g.io, other: g.s }, { receivers, receiverPositions: 'end' });
    expectGridNear('group to_logits[layer][head]', r.to_logits.map((row) => row.map(mean)), c.ref.analysis.group.path_patching.to_logits, 1e-3, 'the same pass C, each prompt with its own ABC twin');
    expectGridNear('group to_name_movers[layer][head]', r.to_receivers!.map((row) => row.map((v) => (v === null ? null : mean(v)))), c.ref.analysis.group.path_patching.to_name_movers, 1e-3,
      'the name movers\' queries at END recorded in pass C (rows ordered sender, prompt, position)');
  });
};

// -----------------------------------------------------------------------------------------------
// 3.4 knockouts

const heads = (names: readonly string[]): HeadRef[] => names.map(parseHead);

function knockoutGroup(c: Context): KnockoutGroup {
  const g = group(c);
  return { clean: g.clean, corrupt: g.corrupt, token: g.io, other: g.s };
}

/** F with every head but `kept` zeroed (not mean-ablated), to recognise zero ablation. */
function zeroF(model: GPT, g: KnockoutGroup, kept: readonly HeadRef[]): number {
  const { n_layer: L, n_head: nh, vocab_size: V } = model.config, T = g.clean[0].length;
  const keep = new Set(kept.map(headName));
  const hooks: HookSpec = allHeads(L, nh).filter((h) => !keep.has(headName(h))).map((h) => [`blocks.${h.layer}.attn.hook_z`, zeroHook({ head: h.head })]);
  const lg = model.run_with_hooks(g.clean, hooks, { logits_at: [T - 1] }).logits.data;
  return mean(g.clean.map((_, b) => lg[b * V + g.token[b]] - lg[b * V + g.other[b]]));
}

const task34: TaskChecks = async (t, c) => {
  const model = c.model(), K = c.ref.analysis.knockout, g = knockoutGroup(c);
  const C = heads(K.circuit), M = allHeads(model.config.n_layer, model.config.n_head);
  const minus = (X: readonly HeadRef[], drop: readonly string[]) => X.filter((h) => !drop.includes(headName(h)));
  await t.test('F of the circuit and of no head at all (mean ablation over the ABC prompts)', () => {
    const ko = new Knockout(model, [g]);
    for (const [what, kept, want] of [['F(C)', C, K.F_circuit], ['F(∅)', [], K.F_empty]] as const) {
      const got = ko.F(kept);
      const hint = near(got, zeroF(model, g, kept), 1e-4) ? 'that is zero ablation: a knocked-out head takes the mean of its z over the corrupt (ABC) prompts, position by position'
        : near(got, K.F_model, 1e-4) ? 'nothing was knocked out: every head not kept must take its mean z'
          : 'replace the z of every head not kept, at every position, by its mean over the corrupt prompts at that position';
      expectNear(what, got, want, 1e-3, hint);
    }
  });
  await t.test('F of each completeness and minimality set', () => {
    const ko = new Knockout(model, [g]);
    for (const s of K.completeness) {
      expectNear(`F(C \\ {${s.K.join(', ')}})`, ko.F(minus(C, s.K)), s.F_C_minus_K, 1e-3, 'knock out every head not kept; the kept ones run as usual');
      expectNear(`F(M \\ {${s.K.join(', ')}})`, ko.F(minus(M, s.K)), s.F_M_minus_K, 1e-3, 'knock out exactly the heads of K');
    }
    for (const m of K.minimality) expectNear(`F(C \\ {${m.head}})`, ko.F(minus(C, [m.head])), m.F_C_minus_v, 1e-3, 'the circuit without one head');
  });
};

// -----------------------------------------------------------------------------------------------
// 3.5 the three criteria, on a table of F values

/** A stand-in Knockout: F of a set of kept heads looked up in a table (the reference's, or one written by hand). */
function tableKnockout(L: number, nh: number, table: Map<string, number>, F_model: number): Knockout {
  const key = (kept: readonly HeadRef[]) => kept.map(headName).sort().join(',');
  const F = (kept: readonly HeadRef[] | 'all') => {
    if (kept === 'all') return F_model;
    const v = table.get(key(kept));
    if (v === undefined) throw new Mismatch('only the sets the three criteria need', `F of {${key(kept)}}`, 'faithfulness needs F(M) and F(C); completeness F(C \\ K) and F(M \\ K); minimality F(C \\ {v}): is this set one of them?');
    return v;
  };
  return { model: { config: { n_layer: L, n_head: nh } }, F, Fmemo: F, rows: () => [], modelRows: () => [] } as unknown as Knockout;
}

const task35: TaskChecks = async (t, c) => {
  await t.test('F values written by hand: 2 layers × 2 heads, C = {0.0, 1.1}, K = {0.0}', () => {
    // F(M) 1.0, F(C) 1.5, F(∅) 0.1, F(C \ {0.0}) = F({1.1}) 0.4, F(M \ {0.0}) 0.9, F(C \ {1.1}) = F({0.0}) 1.2
    // faithfulness |1.0 − 1.5| = 0.5; completeness |0.4 − 0.9| = 0.5; minimality 0.0: |0.4 − 1.5| = 1.1, 1.1: |1.2 − 1.5| = 0.3
    const table = new Map([['0.0,1.1', 1.5], ['', 0.1], ['1.1', 0.4], ['0.1,1.0,1.1', 0.9], ['0.0', 1.2]]);
    const ev = evaluateCircuit(tableKnockout(2, 2, table, 1.0), heads(['0.0', '1.1']), { completeness_sets: [heads(['0.0'])] });
    const noAbs = 'without the absolute value: faithfulness and completeness are distances, |F(M) − F(C)| and |F(C \\ K) − F(M \\ K)|';
    expectNear('faithfulness', ev.faithfulness, 0.5, 1e-9, near(ev.faithfulness, -0.5, 1e-9) ? noAbs : 'faithfulness = |F(M) − F(C)|');
    expectNear('completeness {0.0}', ev.completeness[0]?.value ?? NaN, 0.5, 1e-9, near(ev.completeness[0]?.value ?? NaN, -0.5, 1e-9) ? noAbs : 'completeness(K) = |F(C \\ K) − F(M \\ K)|');
    const want = [1.1, 0.3], vsModel = [0.6, 0.2];
    ev.minimality.forEach((m, i) => expectNear(`minimality ${m.head}`, m.value, want[i], 1e-9, near(m.value, vsModel[i], 1e-9)
      ? 'minimality compares F(C \\ {v}) with F(C), the circuit, not with the whole model' : 'minimality(v) = |F(C \\ {v}) − F(C)|'));
    if (ev.minimality.length !== 2) throw new Mismatch('minimality for each of the 2 heads of C', String(ev.minimality.length), 'one minimality value per head of the circuit');
  });
  await t.test("the reference's F values: every criterion of analysis.json's knockout", () => {
    const K = c.ref.analysis.knockout, { n_layer: L, n_head: nh } = c.ref.reference.config;
    const C = heads(K.circuit), M = allHeads(L, nh);
    const key = (X: readonly HeadRef[]) => X.map(headName).sort().join(',');
    const minus = (X: readonly HeadRef[], drop: readonly string[]) => X.filter((h) => !drop.includes(headName(h)));
    const table = new Map<string, number>([[key(C), K.F_circuit], ['', K.F_empty]]);
    for (const s of K.completeness) { table.set(key(minus(C, s.K)), s.F_C_minus_K); table.set(key(minus(M, s.K)), s.F_M_minus_K); }
    for (const m of K.minimality) table.set(key(minus(C, [m.head])), m.F_C_minus_v);
    const ev = evaluateCircuit(tableKnockout(L, nh, table, K.F_model), C, { completeness_sets: K.completeness.map((s) => heads(s.K)) });
    expectNear('F_model', ev.F_model, K.F_model, 1e-9, 'F_model is F of the whole model (nothing knocked out)');
    expectNear('F_circuit', ev.F_circuit, K.F_circuit, 1e-9, 'F_circuit is F of the circuit alone');
    expectNear('F_empty', ev.F_empty, K.F_empty, 1e-9, 'F_empty is F with every head knocked out');
    expectNear('faithfulness', ev.faithfulness, K.faithfulness, 1e-6, 'faithfulness = |F(M) − F(C)|');
    K.completeness.forEach((s, i) => expectNear(`completeness {${s.K.join(', ')}}`, ev.completeness[i]?.value ?? NaN, s.value, 1e-6, 'completeness(K) = |F(C \\ K) − F(M \\ K)|'));
    K.minimality.forEach((m, i) => {
      const got = ev.minimality[i]?.value ?? NaN;
      expectNear(`minimality ${m.head}`, got, m.value, 1e-6, near(got, Math.abs(m.F_C_minus_v - K.F_model), 1e-6)
        ? 'minimality compares F(C \\ {v}) with F(C), the circuit, not with the whole model' : `minimality(v) = |F(C \\ {v}) − F(C)| = |${fmt(m.F_C_minus_v)} − ${fmt(K.F_circuit)}|`);
    });
  });
};

export const CHECKS: Record<string, TaskChecks> = { '3.1': task31, '3.2': task32, '3.3': task33, '3.4': task34, '3.5': task35 };
