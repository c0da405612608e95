/**
 * The core's instruments against test/fixtures/gpt2-tiny/analysis.json (an independent PyTorch
 * run; definitions in ANALYSIS.md): logit lens, direct logit attribution (and that its parts add
 * up to the metric), and every `patching` entry through the generic activation patch. The
 * metric is logit(corrupt token) − logit(clean token) at the last position. Tolerance
 * FLOAT32_TOL (test/helpers.ts) relative to max(1, |value|).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ndarray from 'ndarray';
import { GPT, pickPositions } from '../mingpt/model.ts';
import { directLogitAttribution, logitLens } from '../lens/attribution.ts';
import {
  get_act_patch_attn_head_out_all_pos, get_act_patch_attn_head_out_by_pos, get_act_patch_attn_head_pattern_all_pos,
  get_act_patch_attn_out, get_act_patch_mlp_out, get_act_patch_resid_post, get_act_patch_resid_pre,
  layer_head_vector_patch_setter, logitDiffMetric, nested, type PatchResult,
} from '../lens/patching.ts';
import { referencePatchingSweep } from '../sweep/sweep.ts';
import { loadGPT } from '../io/load.ts';
import { run_with_cache } from '../lens/activation_cache.ts';
import { ANALYSIS, FIXTURE, FLOAT32_TOL, closeAll } from './helpers.ts';

const A = ANALYSIS;
const model = loadGPT(FIXTURE);
const c = A.case;
const T = c.clean_ids.length;
const dir = { pos: T - 1, token: [c.corrupt_token_id], other: [c.clean_token_id] };
const { cache } = run_with_cache(model, c.clean_ids);
const metric = logitDiffMetric(c.corrupt_token_id, c.clean_token_id);


test('logit lens: L + 1 values, the last one the model\'s own metric', () => {
  const lens = logitLens(model, cache, dir).map((r) => r[0]);
  closeAll(lens, A.logit_lens, FLOAT32_TOL, 'logit_lens');
  closeAll(lens[lens.length - 1], A.metric.clean, FLOAT32_TOL, 'logit_lens[L] = metric');
});

test('direct logit attribution: embed, heads, attn_bias, mlp, const; the parts add up to the metric', () => {
  const d = directLogitAttribution(model, cache, dir);
  closeAll(d.embed[0], A.dla.embed, FLOAT32_TOL, 'embed');
  closeAll(d.heads.map((l) => l.map((h) => h[0])), A.dla.heads, FLOAT32_TOL, 'heads');
  closeAll(d.attn_bias.map((l) => l[0]), A.dla.attn_bias, FLOAT32_TOL, 'attn_bias');
  closeAll(d.mlp.map((l) => l[0]), A.dla.mlp, FLOAT32_TOL, 'mlp');
  closeAll(d.const[0], A.dla.const, FLOAT32_TOL, 'const');
  closeAll(d.total[0], A.metric.clean, FLOAT32_TOL, 'sum of the parts = the metric');
});

const sweeps: Array<[string, (m: GPT, ids: number[], c: typeof cache, f: typeof metric) => PatchResult]> = [
  ['resid_pre', get_act_patch_resid_pre], ['attn_out', get_act_patch_attn_out], ['mlp_out', get_act_patch_mlp_out],
  ['resid_post', get_act_patch_resid_post], ['head_z', get_act_patch_attn_head_out_all_pos],
  ['head_z_by_pos', get_act_patch_attn_head_out_by_pos], ['head_pattern', get_act_patch_attn_head_pattern_all_pos],
];
for (const [key, sweep] of sweeps) {
  test(`generic patching: ${key} equals the fixture's patching.${key}`, () => {
    const r = sweep(model, c.corrupt_ids, cache, metric);
    closeAll(nested(r), A.patching[key], FLOAT32_TOL, key);
    closeAll(r.corrupted, A.metric.corrupt, FLOAT32_TOL, 'corrupted run');
  });
}

test('the generic resid_post sweep gives the assignment\'s reference sweep (save/patch flags)', () => {
  const generic = nested(get_act_patch_resid_post(model, c.corrupt_ids, cache, metric)) as number[][];
  const ref = referencePatchingSweep(model, c).matrix;
  closeAll(generic, ref, 1e-5, 'generic vs reference');
});

test('DLA from a run with logits_at (the final layer norm at the last position only) equals the fixture', () => {
  const { cache: small } = run_with_cache(model, c.clean_ids, { logits_at: [T - 1] });
  const d = directLogitAttribution(model, small, dir);
  closeAll(d.heads.map((l) => l.map((h) => h[0])), A.dla.heads, FLOAT32_TOL, 'heads');
  closeAll(d.total[0], A.metric.clean, FLOAT32_TOL, 'total');
  assert.throws(() => directLogitAttribution(model, small, { ...dir, pos: 2 }), /logits_at/);
});

test('cells batched along the batch axis give the numbers of one run per cell (a batch of 4 prompts)', () => {
  const g = A.knockout;
  const clean = g.group_ids.map((p: number[][]) => p[0]), corrupt = g.group_ids.map((p: number[][]) => p[1]);
  const { cache: gc } = run_with_cache(model, clean);
  const f = logitDiffMetric(g.io_ids, g.s_ids);
  const batched = get_act_patch_attn_head_out_all_pos(model, corrupt, gc, f);
  const single = get_act_patch_attn_head_out_all_pos(model, corrupt, gc, f, { batch: 1 });
  closeAll(batched.data, single.data, 1e-6, 'batched vs one by one');
  closeAll(nested(batched), A.group.patching.head_z, FLOAT32_TOL, 'group.patching.head_z');
});

test('patched runs that start at the first changed position (the corrupted run\'s keys and values before it) and read two logits give the numbers of whole runs', () => {
  // the group's texts agree at position 0 ("When"), so every head_z cell starts at position 1
  const g = A.knockout;
  const clean = g.group_ids.map((p: number[][]) => p[0]), corrupt = g.group_ids.map((p: number[][]) => p[1]);
  assert.ok(clean.every((r: number[], b: number) => r[0] === corrupt[b][0] && r[1] !== corrupt[b][1]));
  const { cache: gc } = run_with_cache(model, clean);
  const f = logitDiffMetric(g.io_ids, g.s_ids);
  assert.equal(f.tokens, [...new Set([...g.io_ids, ...g.s_ids])]);
  const r = get_act_patch_attn_head_out_all_pos(model, corrupt, gc, f);
  const Tg = clean[0].length, { n_layer: L, n_head: nh } = model.config;
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < nh; h++) {
      // the reference: one whole run (every position, every block, all logits) with the head's z patched
      const name = `blocks.${l}.attn.hook_z`;
      const whole = model.forward(corrupt, { hooks: [[name, (act) => layer_head_vector_patch_setter(act, { layer: l, head: h, pos: 0 }, gc.get(name))]] });
      const last = ndarray(pickPositions(whole.logits.data, clean.length, Tg, model.config.vocab_size, [Tg - 1]), [clean.length, 1, model.config.vocab_size]);
      closeAll(r.data[l * nh + h], f(last), 1e-6, `head ${l}.${h}`);
    }
  }
});

test('patching results carry their axes and shape', () => {
  const r = get_act_patch_attn_head_out_by_pos(model, c.corrupt_ids, cache, metric);
  assert.equal(r.axes, ['layer', 'head', 'pos']);
  assert.equal(r.shape, [3, 4, T]);
  assert.is(r.hook, 'blocks.{l}.attn.hook_z');
});

test.run();
