// generate.ts's interpretability options end to end on test/fixtures/gpt2-tiny: every --patch kind,
// the clean run's logit lens and direct logit attribution in patching.json, --save-cache, --scale
// runs, the width of piped output, the offline hint and the context check before loading.
//
// Expected numbers come from test/fixtures/gpt2-tiny/analysis.json, an independent PyTorch run
// (definitions in ANALYSIS.md; metric = logit(corrupt token) − logit(clean token) at the last
// position); tolerance FLOAT32_TOL relative to max(1, |value|) (test/helpers.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runScript, type Run } from './run_script.ts';
import fs from 'node:fs';
import path from 'node:path';
import { compile } from 'vega-lite';
import { openSafetensors } from '../io/safetensors.ts';
import { displayWidth } from '../cli/terminal.ts';
import { ANALYSIS, FIXTURE, FIXTURE_ARG, FLOAT32_TOL, closeAll, tempDir } from './helpers.ts';

const A = ANALYSIS;
const tmp = tempDir('generate-analysis-');
const L = 3, NH = 4, T = A.case.clean_ids.length;

/** generate.ts in a child process with extra environment variables; colours off, progress quiet. */
function run(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return runScript('generate.ts', args, { COLUMNS: undefined, ...env });
}

// two at a time (two cores), all started before the first test awaits
const queue: (() => void)[] = [];
let running = 0;
function scheduled(args: string[], env?: Record<string, string | undefined>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const start = () => {
      running++;
      run(args, env).then(resolve, reject).finally(() => { running--; queue.shift()?.(); });
    };
    if (running < 2) start();
    else queue.push(start);
  });
}

const weights = ['--weights', FIXTURE_ARG];
const out = (name: string) => path.join(tmp, name);
const runs = new Map<string, Promise<Run>>();
function plan(name: string, args: string[], env?: Record<string, string | undefined>) {
  runs.set(name, scheduled([...args, '--out', out(name)], env));
}
const report = (name: string) => JSON.parse(fs.readFileSync(path.join(out(name), 'patching.json'), 'utf8'));

const cacheFile = path.join(tmp, 'cache', 'sub', 'clean.safetensors'); // folders made at the end
for (const kind of ['resid_pre', 'resid_mid', 'attn_out', 'mlp_out', 'head-pos']) plan(kind, [...weights, '--patch', kind]);
plan('head', [...weights, '--patch', 'head', '--save-cache', cacheFile]);
plan('kernels-js', [...weights, '--kernels', 'js', '--engine', 'reference']);
plan('runs-scale', [...weights, '--scale', 'runs'], { COLUMNS: '60' });
const noNet = { HF_HUB_OFFLINE: '1', HF_HUB_CACHE: path.join(tmp, 'empty-hf-cache'), HF_HOME: path.join(tmp, 'empty-hf-home') };
plan('offline', ['--model', 'gpt2'], noNet);
const longText = Array.from({ length: 1100 }, () => 'word').join(' ');
plan('too-long-for-gpt2', ['--model', 'gpt2', '--clean', longText, '--corrupt', longText], noNet);
// a checkpoint folder with a config.json and no weights at all: the length is refused before loading
const configOnly = path.join(tmp, 'config-only');
fs.mkdirSync(configOnly);
fs.copyFileSync(path.join(FIXTURE, 'config.json'), path.join(configOnly, 'config.json'));
const seventy = Array.from({ length: 70 }, () => 'word').join(' ');
plan('too-long-config-only', ['--weights', configOnly, '--clean', seventy, '--corrupt', seventy]);
plan('bad-cache-path', [...weights, '--save-cache', path.join(FIXTURE, 'config.json', 'x.safetensors')]);


async function ok(name: string): Promise<Run> {
  const r = await runs.get(name)!;
  assert.is(r.code, 0, r.stderr);
  return r;
}

// -----------------------------------------------------------------------------------------------
// --patch kinds against analysis.json's patching entries

const reference: Record<string, [string, string, string[]]> = {
  resid_pre: ['resid_pre', 'blocks.{l}.hook_resid_pre', ['layer', 'pos']],
  attn_out: ['attn_out', 'blocks.{l}.hook_attn_out', ['layer', 'pos']],
  mlp_out: ['mlp_out', 'blocks.{l}.hook_mlp_out', ['layer', 'pos']],
  head: ['head_z', 'blocks.{l}.attn.hook_z', ['layer', 'head']],
  'head-pos': ['head_z_by_pos', 'blocks.{l}.attn.hook_z', ['layer', 'head', 'pos']],
};
for (const [kind, [key, hook, axes]] of Object.entries(reference)) {
  test(`--patch ${kind}: patching.json records the hook and axes, and the matrix equals analysis.json patching.${key}`, async () => {
    await ok(kind);
    const got = report(kind);
    assert.is(got.patch, hook);
    assert.equal(got.axes, axes);
    closeAll(got.matrix, A.patching[key], FLOAT32_TOL, `matrix (${kind})`);
    closeAll(got.corrupt_logit_diff, A.metric.corrupt, FLOAT32_TOL, 'corrupt_logit_diff');
    closeAll(got.clean_logit_diff, A.metric.clean, FLOAT32_TOL, 'clean_logit_diff');
  });
}

test('--kernels js (the readable loops) with the reference engine: the block-output matrix equals analysis.json patching.resid_post', async () => {
  await ok('kernels-js');
  const got = report('kernels-js');
  assert.is(got.patch, 'blocks.{l}.hook_resid_post');
  assert.equal(got.axes, ['layer', 'pos']);
  closeAll(got.matrix, A.patching.resid_post, FLOAT32_TOL, 'matrix');
  closeAll(got.logit_lens, A.logit_lens, FLOAT32_TOL, 'logit_lens');
});

test('--patch resid_mid: layer × position, the columns before the first difference keep the corrupted run', async () => {
  await ok('resid_mid');
  const got = report('resid_mid');
  assert.is(got.patch, 'blocks.{l}.hook_resid_mid');
  assert.equal(got.shape, [L, T]);
  // the texts agree at position 0 only, so what is computed there is the same in both runs
  for (const row of got.matrix) closeAll(row[0], A.metric.corrupt, 1e-5, 'matrix[l][0]');
});

test('--patch head: the terminal shows the layer × head matrix and the reading aid names heads', async () => {
  const r = await ok('head');
  for (let l = 0; l < L; l++) {
    const want = A.patching.head_z[l].map((v: number) => v.toFixed(2)).join('\\s+');
    assert.match(r.stdout, new RegExp(`\\nlayer ${l}\\s+${want}`), `row ${l}`);
  }
  assert.match(r.stdout, /\n\s+H0\s+H1\s+H2\s+H3\n/);
  assert.match(r.stdout, /The strongest cell is head L\dH\d/);
});

test('--patch head: the heatmap chart has one cell per layer × head; head-pos one per layer × head × position', async () => {
  await ok('head');
  await ok('head-pos');
  const spec = JSON.parse(fs.readFileSync(path.join(out('head'), 'heatmap.vl.json'), 'utf8'));
  compile(spec);
  assert.is(spec.data.values.length, L * NH);
  const svg = fs.readFileSync(path.join(out('head'), 'heatmap.svg'), 'utf8');
  const group = svg.match(/<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)<\/g>/s)!;
  assert.is((group[1].match(/<path [^>]*>/g) ?? []).length, L * NH);
  const spec3 = JSON.parse(fs.readFileSync(path.join(out('head-pos'), 'heatmap.vl.json'), 'utf8'));
  compile(spec3);
  assert.is(spec3.data.values.length, L * NH * T);
  assert.is(new Set(spec3.data.values.map((v: any) => v.row)).size, L * NH, 'one row per head');
});

// -----------------------------------------------------------------------------------------------
// attribution of the clean run

test('patching.json: logit_lens (L + 1 values) and dla equal analysis.json; the dla parts add up to the metric', async () => {
  await ok('head');
  const got = report('head');
  closeAll(got.logit_lens, A.logit_lens, FLOAT32_TOL, 'logit_lens');
  assert.is(got.logit_lens.length, L + 1);
  for (const part of ['embed', 'heads', 'attn_bias', 'mlp', 'const']) closeAll(got.dla[part], A.dla[part], FLOAT32_TOL, `dla.${part}`);
  const d = got.dla;
  const sum = d.embed + d.const + d.heads.flat().reduce((a: number, b: number) => a + b, 0)
    + d.attn_bias.reduce((a: number, b: number) => a + b, 0) + d.mlp.reduce((a: number, b: number) => a + b, 0);
  closeAll(sum, A.metric.clean, FLOAT32_TOL, 'sum of the dla parts');
});

test('the logit lens and DLA charts compile and have one point per stream / one bar per part', async () => {
  await ok('head');
  const lens = JSON.parse(fs.readFileSync(path.join(out('head'), 'logit_lens.vl.json'), 'utf8'));
  compile(lens);
  assert.is(lens.data.values.length, L + 1);
  const dla = JSON.parse(fs.readFileSync(path.join(out('head'), 'dla.vl.json'), 'utf8'));
  compile(dla);
  assert.is(dla.data.values.length, 1 + L * NH + L + L + 1, 'embeddings, heads, attention biases, MLPs, the constant');
  for (const f of ['logit_lens.svg', 'logit_lens.png', 'logit_lens.html', 'dla.svg', 'dla.png', 'dla.html']) assert.ok(fs.existsSync(path.join(out('head'), f)), f);
});

test('the terminal report prints the logit lens and the largest DLA parts', async () => {
  const r = await ok('head');
  assert.match(r.stdout, `block 0 +${A.logit_lens[0].toFixed(2)}`);
  assert.match(r.stdout, `final ${A.logit_lens[L].toFixed(2)}`);
  assert.match(r.stdout, `MLP 2 ${A.dla.mlp[2].toFixed(2)}`);
});

// -----------------------------------------------------------------------------------------------
// --save-cache

test('--save-cache: every hook point under its TransformerLens name, batch axis 1, values as analysis.json', async () => {
  await ok('head');
  const f = openSafetensors(cacheFile);
  try {
    const names = Object.keys(A.hooks);
    assert.equal([...f.tensors.keys()].sort(), [...names].sort());
    assert.equal(JSON.parse(f.metadata.token_ids), A.case.clean_ids, 'the token ids of the cached text, in the metadata');
    for (const name of names) {
      const want = A.hooks[name];
      const shape: number[] = [];
      for (let x = want; Array.isArray(x); x = x[0]) shape.push(x.length);
      const info = f.tensors.get(name)!;
      assert.equal(info.shape, shape, `${name} shape`);
      assert.is(info.shape[0], 1, `${name}: batch axis of 1`);
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      f.readF32(name, data);
      closeAll(data, want.flat(Infinity), FLOAT32_TOL, name);
    }
  } finally {
    f.close();
  }
  assert.equal(fs.readdirSync(path.dirname(cacheFile)), ['clean.safetensors'], 'no staging file left beside it');
});

test('--save-cache into a path under a file: refused before the run, nothing written', async () => {
  const r = await runs.get('bad-cache-path')!;
  assert.is(r.code, 1);
  assert.match(r.stderr, /error: --save-cache .*is a file/);
  assert.not.match(r.stdout, /model:/, 'refused before the model was loaded');
  assert.not.ok(fs.existsSync(out('bad-cache-path')));
});

// -----------------------------------------------------------------------------------------------
// --scale runs, piped width

test('--scale runs: the chart scale spans the two unpatched runs and every cell, and the chart says every cell is below zero', async () => {
  await ok('runs-scale');
  const got = report('runs-scale');
  const spec = JSON.parse(fs.readFileSync(path.join(out('runs-scale'), 'heatmap.vl.json'), 'utf8'));
  compile(spec);
  const scale = spec.layer[0].encoding.color.scale;
  // from the lower run to the higher, widened to every cell (analysis.json's matrix), so that no cell is clamped
  const ends = [got.clean_logit_diff, got.corrupt_logit_diff, ...A.patching.resid_post.flat()];
  closeAll(scale.domain, [Math.min(...ends), Math.max(...ends)], FLOAT32_TOL, 'domain');
  assert.is(scale.domainMid, undefined);
  // every cell of the fixture's matrix is negative (reference.json / analysis.json): the chart says so
  assert.ok(A.patching.resid_post.flat().every((v: number) => v < 0));
  assert.match(JSON.stringify(spec.title.subtitle), 'every cell is below zero');
});

test('piped output follows $COLUMNS: every heatmap line fits in 60 columns and keeps its column numbers', async () => {
  const r = await ok('runs-scale');
  const heatmap = r.stdout.slice(r.stdout.indexOf('\n5. '), r.stdout.indexOf('\n• '));
  for (const line of heatmap.split('\n').slice(2)) assert.ok(displayWidth(line) <= 60, `${displayWidth(line)} columns: ${line}`);
  assert.match(heatmap, /^\s+10$|\s10\s*$/m, 'column 10 has its number');
  assert.match(heatmap, 'colour scale from');
  assert.match(heatmap, 'clean run');
  assert.match(r.stdout, 'This checkpoint has random weights');
});

// -----------------------------------------------------------------------------------------------
// before loading: the offline hint, the context

test('a pretrained model that cannot be had offline: the error names the command that works offline', async () => {
  const r = await runs.get('offline')!;
  assert.is(r.code, 1);
  assert.match(r.stderr, 'gpt2 is not on this machine');
  assert.match(r.stderr, 'npx tsx generate.ts --weights test/fixtures/gpt2-tiny');
});

test('the context length is checked before loading or downloading: 1024 for gpt2, config.json for --weights', async () => {
  const r = await runs.get('too-long-for-gpt2')!;
  assert.is(r.code, 1);
  assert.match(r.stderr, '1100 tokens, more than the 1024 positions');
  assert.not.match(r.stderr, 'not on this machine');
  const c = await runs.get('too-long-config-only')!;
  assert.is(c.code, 1);
  assert.match(c.stderr, '70 tokens, more than the 64 positions');
  assert.not.match(c.stderr, 'safetensors', 'the missing weights were never looked at');
});

test.run();
