// Every chart renders at the model's full context (1024 tokens for GPT-2): vega's expression
// parser used to overflow its stack on a ~1000-entry sort order, after the whole sweep had run.
// Each chart of the four experiments is built from results of full-context size and GPT-2 small's
// 12 layers × 12 heads, rendered, and must stay a picture a student can open (bounded size, a
// bounded number of cells, and a note when it shows only part). One run of generate.ts, on a tiny
// checkpoint with a context of 1024 written here with io/checkpoint_writer.ts, checks the whole
// path from the command line.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GPT } from '../mingpt/model.ts';
import { RNG } from '../mingpt/utils.ts';
import { gpt2Config, writeCheckpoint } from '../io/checkpoint_writer.ts';
import { fitTitle, renderSvg, type TopLevelSpec } from '../cli/plot.ts';
import { dlaSpec, logitLensSpec, patchHeatmapSpec, MAX_COLUMNS, MAX_HEAD_ROWS } from '../assignments/activation-patching/charts.ts';
import { attentionSpec, logprobSpec, scoresSpec, MAX_PATTERN_CELLS } from '../assignments/induction-heads/charts.ts';
import { residSpec } from '../assignments/ioi/charts.ts';
import { heatmapSpec, MAX_TOKENS_SHOWN } from '../assignments/circuits/charts.ts';
import { runScript } from './run_script.ts';

const T = 1024, L = 12, H = 12;
let seed = 1;
const rnd = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
const tokens = Array.from({ length: T }, (_, i) => [' the', ' cat', ' sat', '.'][i % 4]);
const run = { model: 'gpt2', cleanText: 'a long text', corruptText: 'another long text', cleanToken: ' Jones', corruptToken: ' Smith', cleanLogitDiff: -1, corruptLogitDiff: 2 };

/** Renders the spec as chartFiles does (title fitted) and returns the picture's size. */
async function draw(spec: TopLevelSpec): Promise<{ width: number; height: number; svg: string }> {
  const svg = await renderSvg(await fitTitle(spec));
  return { width: Number(svg.match(/width="(\d+)"/)![1]), height: Number(svg.match(/height="(\d+)"/)![1]), svg };
}

/** The data rows of a spec and of its panels. */
const dataRows = (spec: any): number => (spec.data?.values?.length ?? 0) + [...(spec.concat ?? []), ...(spec.hconcat ?? []), ...(spec.vconcat ?? [])].reduce((n: number, p: any) => n + dataRows(p), 0);

test('activation patching at 1024 positions: resid_post and head-pos show their strongest positions and heads, and say so', async () => {
  const resid = patchHeatmapSpec({ ...run, hook: 'blocks.{l}.hook_resid_post', axes: ['layer', 'pos'], tokens, matrix: Array.from({ length: L }, () => Array.from({ length: T }, () => 2 - 3 * rnd() ** 8)) });
  assert.is(dataRows(resid), L * MAX_COLUMNS);
  assert.match(JSON.stringify((resid as any).title), `showing the ${MAX_COLUMNS} of ${T} positions`);
  const headPos = patchHeatmapSpec({ ...run, hook: 'blocks.{l}.attn.hook_z', axes: ['layer', 'head', 'pos'], tokens, matrix: Array.from({ length: L }, () => Array.from({ length: H }, () => Array.from({ length: T }, () => 2 - 3 * rnd() ** 8))) });
  assert.is(dataRows(headPos), MAX_HEAD_ROWS * MAX_COLUMNS);
  for (const spec of [resid, headPos]) {
    const { width, height } = await draw(spec);
    assert.ok(width < 2200 && height < 1400, `${width} × ${height} px`);
  }
  const dla = dlaSpec({ embed: 0, heads: Array.from({ length: L }, () => Array.from({ length: H }, () => rnd())), attn_bias: Array(L).fill(0), mlp: Array(L).fill(0), const: 0, total: 1 }, run);
  assert.ok((await draw(dla)).height < 900);
  await draw(logitLensSpec(Array.from({ length: L + 1 }, () => rnd()), run));
});

test('induction at BOS + 2 × 511 positions: patterns drawn in blocks, scores and log-probs whole', async () => {
  const n = 511, Tn = 2 * n + 1;
  const pattern = new Float32Array(Tn * Tn);
  for (let q = 0; q < Tn; q++) for (let k = 0; k <= q; k++) pattern[q * Tn + k] = 1 / (q + 1);
  const panels = ['5.1', '5.5', '4.11', '6.9', '7.2'].map((head) => ({ head, caption: `top head ${head}`, pattern, stripe: { from: n + 1, to: Tn, offset: n - 1 } }));
  const att = attentionSpec({ model: 'gpt2', tokens: Array.from({ length: Tn }, (_, i) => tokens[i % T]), panels });
  assert.ok(dataRows(att) <= panels.length * MAX_PATTERN_CELLS * (MAX_PATTERN_CELLS + 1) / 2, `${dataRows(att)} cells`);
  assert.match(JSON.stringify((att as any).title), 'drawn in blocks of 8');
  const { width, height } = await draw(att);
  assert.ok(width < 2000 && height < 2400, `${width} × ${height} px`);
  await draw(logprobSpec({ model: 'gpt2', n, byPosition: Array.from({ length: 2 * n }, () => -rnd() * 10), firstHalf: -10, secondHalf: -1 }));
  const grid = () => Array.from({ length: L }, () => Array.from({ length: H }, () => rnd()));
  await draw(scoresSpec({ model: 'gpt2', scores: { induction: grid(), previous_token: grid(), duplicate_token: grid() }, detected: { induction: [], previous_token: [], duplicate_token: [] }, thresholds: { induction: 0.5, previous_token: 0.5, duplicate_token: 0.5 }, labelled: null }));
});

test('IOI and circuits at 1024 tokens: the residual sweep thinned, token panels cut to their first tokens', async () => {
  const resid = residSpec({ model: 'gpt2', matrix: Array.from({ length: L }, () => Array.from({ length: T }, () => rnd())), tokens, clean: 3, corrupt: 0, group: 'g', prompts: 1 });
  assert.ok(dataRows(resid) <= L * 40);
  await draw(resid);
  const full = Array.from({ length: T }, (_, q) => Array.from({ length: T }, (_, k) => (k <= q ? rnd() - 0.5 : null)));
  const labels = tokens.map((t, i) => `${i}: ${t}`);
  const spec = heatmapSpec({
    title: 'token QK', subtitle: [], colors: 'diverging', valueTitle: 'score',
    panels: ['scores', 'token · token', 'token · position', 'position · position', 'rest'].map((title) => ({ title, rows: labels, cols: labels, values: full, rowTitle: 'query', colTitle: 'key' })),
  });
  assert.ok(dataRows(spec) <= 5 * MAX_TOKENS_SHOWN ** 2);
  assert.match(JSON.stringify(spec), `the first ${MAX_TOKENS_SHOWN} of ${T} tokens`);
  const { width, height } = await draw(spec);
  assert.ok(width < 3000 && height < 3000, `${width} × ${height} px`);
});

test('generate.ts on a 1024-token pair, at a checkpoint\'s full context: the run ends with its charts written', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'full-context-'));
  try {
    const config = GPT.get_default_config();
    config.merge_from_dict({ model_type: null, n_layer: 2, n_head: 2, n_embd: 16, vocab_size: 50257, block_size: 1024 });
    const model = new GPT(config, { rng: new RNG(3) });
    const ckpt = path.join(tmp, 'tiny-1024');
    writeCheckpoint(ckpt, model, gpt2Config(model, { random_weights: true }));
    const words = Array.from({ length: 1024 }, () => 'word'); // "word" then " word" × 1023: 1024 tokens
    const corrupt = [...words];
    corrupt[600] = 'cat';
    const r = await runScript('generate.ts', ['--weights', ckpt, '--clean', words.join(' '), '--corrupt', corrupt.join(' '), '--out', path.join(tmp, 'out')]);
    assert.is(r.code, 0, r.stderr.slice(-3000));
    assert.match(r.stdout, '2 layers × 1024 positions = 2048 runs');
    assert.match(r.stdout, `showing the ${MAX_COLUMNS} of 1024 positions`);
    for (const f of ['heatmap', 'logit_lens', 'dla']) assert.ok(fs.statSync(path.join(tmp, 'out', `${f}.svg`)).size > 1000, `${f}.svg`);
    const spec = JSON.parse(fs.readFileSync(path.join(tmp, 'out', 'heatmap.vl.json'), 'utf8'));
    assert.ok(spec.encoding.x.scale.domain.includes('600: ␣word'), 'the position where the texts differ is among those shown (labelled with the clean token)');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test.run();
