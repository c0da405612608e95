/**
 * The core's instruments against test/fixtures/gpt2-tiny/analysis.json (an independent PyTorch
 * run; definitions in ANALYSIS.md): logit lens, direct logit attribution (and that its parts add
 * up to the metric), and every `patching` entry through the generic activation patch. The
 * metric is logit(corrupt token) − logit(clean token) at the last position. Tolerance 1e-5
 * relative to max(1, |value|): both sides compute in float32, and agree to a few 1e-6.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GPT } from '../mingpt/model.ts';
import { directLogitAttribution, logitLens } from '../lens/attribution.ts';
import {
  get_act_patch_attn_head_out_all_pos, get_act_patch_attn_head_out_by_pos, get_act_patch_attn_head_pattern_all_pos,
  get_act_patch_attn_out, get_act_patch_mlp_out, get_act_patch_resid_post, get_act_patch_resid_pre,
  logitDiffMetric, nested, type PatchResult,
} from '../lens/patching.ts';
import { referencePatchingSweep } from '../sweep/sweep.ts';
import { loadGPT } from '../io/load.ts';
import { run_with_cache } from '../lens/activation_cache.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(here, 'fixtures', 'gpt2-tiny');
const A = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'analysis.json'), 'utf8'));
const model = loadGPT(FIXTURE);
const c = A.case;
const T = c.clean_ids.length;
const dir = { pos: T - 1, token: [c.corrupt_token_id], other: [c.clean_token_id] };
const { cache } = run_with_cache(model, c.clean_ids);
const metric = logitDiffMetric(c.corrupt_token_id, c.clean_token_id);

function closeAll(got: unknown, want: unknown, what: string, tol = 1e-5) {
  if (Array.isArray(want)) {
    assert.ok(Array.isArray(got) && got.length === want.length, `${what}: length ${Array.isArray(got) ? got.length : '-'} vs ${want.length}`);
    want.forEach((w, i) => closeAll((got as unknown[])[i], w, `${what}[${i}]`, tol));
    return;
  }
  const g = got as number, w = want as number;
  assert.ok(Math.abs(g - w) <= tol * Math.max(1, Math.abs(w)), `${what}: ${g} vs reference ${w}`);
}

test('logit lens: L + 1 values, the last one the model\'s own metric', () => {
  const lens = logitLens(model, cache, dir).map((r) => r[0]);
  closeAll(lens, A.logit_lens, 'logit_lens');
  closeAll(lens[lens.length - 1], A.metric.clean, 'logit_lens[L] = metric');
});

test('direct logit attribution: embed, heads, attn_bias, mlp, const; the parts add up to the metric', () => {
  const d = directLogitAttribution(model, cache, dir);
  closeAll(d.embed[0], A.dla.embed, 'embed');
  closeAll(d.heads.map((l) => l.map((h) => h[0])), A.dla.heads, 'heads');
  closeAll(d.attn_bias.map((l) => l[0]), A.dla.attn_bias, 'attn_bias');
  closeAll(d.mlp.map((l) => l[0]), A.dla.mlp, 'mlp');
  closeAll(d.const[0], A.dla.const, 'const');
  closeAll(d.total[0], A.metric.clean, 'sum of the parts = the metric');
});

const sweeps: Array<[string, (m: GPT, ids: number[], c: typeof cache, f: typeof metric) => PatchResult]> = [
  ['resid_pre', get_act_patch_resid_pre], ['attn_out', get_act_patch_attn_out], ['mlp_out', get_act_patch_mlp_out],
  ['resid_post', get_act_patch_resid_post], ['head_z', get_act_patch_attn_head_out_all_pos],
  ['head_z_by_pos', get_act_patch_attn_head_out_by_pos], ['head_pattern', get_act_patch_attn_head_pattern_all_pos],
];
for (const [key, sweep] of sweeps) {
  test(`generic patching: ${key} equals the fixture's patching.${key}`, () => {
    const r = sweep(model, c.corrupt_ids, cache, metric);
    closeAll(nested(r), A.patching[key], key);
    closeAll(r.corrupted, A.metric.corrupt, 'corrupted run');
  });
}

test('the generic resid_post sweep gives the assignment\'s reference sweep (save/patch flags)', () => {
  const generic = nested(get_act_patch_resid_post(model, c.corrupt_ids, cache, metric)) as number[][];
  const ref = referencePatchingSweep(model, c).matrix;
  closeAll(generic, ref, 'generic vs reference', 1e-5);
});

test('DLA from a run with logits_at (the final layer norm at the last position only) equals the fixture', () => {
  const { cache: small } = run_with_cache(model, c.clean_ids, { logits_at: [T - 1] });
  const d = directLogitAttribution(model, small, dir);
  closeAll(d.heads.map((l) => l.map((h) => h[0])), A.dla.heads, 'heads');
  closeAll(d.total[0], A.metric.clean, 'total');
  assert.throws(() => directLogitAttribution(model, small, { ...dir, pos: 2 }), /logits_at/);
});

test('cells batched along the batch axis give the numbers of one run per cell (a batch of 4 prompts)', () => {
  const g = A.knockout;
  const clean = g.group_ids.map((p: number[][]) => p[0]), corrupt = g.group_ids.map((p: number[][]) => p[1]);
  const { cache: gc } = run_with_cache(model, clean);
  const f = logitDiffMetric(g.io_ids, g.s_ids);
  const batched = get_act_patch_attn_head_out_all_pos(model, corrupt, gc, f);
  const single = get_act_patch_attn_head_out_all_pos(model, corrupt, gc, f, { batch: 1 });
  closeAll(batched.data, single.data, 'batched vs one by one', 1e-6);
  closeAll(nested(batched), A.group.patching.head_z, 'group.patching.head_z');
});

test('patching results carry their axes and shape', () => {
  const r = get_act_patch_attn_head_out_by_pos(model, c.corrupt_ids, cache, metric);
  assert.equal(r.axes, ['layer', 'head', 'pos']);
  assert.equal(r.shape, [3, 4, T]);
  assert.is(r.hook, 'blocks.{l}.attn.hook_z');
});

test.run();
