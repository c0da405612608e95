// Issue #19: "no more than a quarter of any PNG blank". Every chart of the four experiments is
// rendered to PNG exactly as the scripts write it (their outputFiles / chartFiles), from the tiny
// fixture's numbers and runs on the tiny fixture and the hand-built models, plus the charts whose
// layout grows with the model at GPT-2 small's 12 layers × 12 heads; each PNG's blank share
// (test/png_blank.ts: the pixels right of the last ink on their row or below the last ink in their
// column) must be at most 25%.
//
// CHARTS_DIR=folder keeps every PNG and HTML page there, and prints every chart's share, for a person to look at.
//
// Charts not yet down to a quarter are listed by name in KNOWN_OVER: the bound is not checked for
// them (no cap taken from our own output stands in for it); the list is the part of issue #19 still
// open. A listed chart that gets under the quarter must leave the list (the test says so), so the
// list only shrinks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { chartFiles, type TopLevelSpec } from '../cli/plot.ts';
import { decodePng, blankShare } from './png_blank.ts';
import { ANALYSIS, FIXTURE, FIXTURE_ARG } from './helpers.ts';
import { loadGPT } from '../io/load.ts';
import { BPETokenizer, tokenStrings } from '../mingpt/bpe.ts';
import { comparisonChart, experimentCharts, dlaSpec, patchHeatmapSpec, type RunDescription } from '../assignments/activation-patching/charts.ts';
import { estimatePatch, comparePatches } from '../assignments/activation-patching/atp.ts';
import { tokenizeInputs, type Patch, type PatchKind } from '../assignments/activation-patching/experiment.ts';
import * as induction from '../assignments/induction-heads/induction.ts';
import { buildHandmade as buildInduction } from '../assignments/induction-heads/handmade.ts';
import * as ioi from '../assignments/ioi/ioi.ts';
import { buildHandmade as buildIoi } from '../assignments/ioi/handmade.ts';
import { runCircuits } from '../assignments/circuits/experiment.ts';
import { outputFiles as circuitsFiles } from '../assignments/circuits/circuits.ts';
import { buildHandmadeWithErasers } from '../assignments/circuits/handmade_erasers.ts';
import { headGridSpec, pathSpec, eapGraphSpec } from '../assignments/ioi/charts.ts';
import { scoresSpec, attentionSpec } from '../assignments/induction-heads/charts.ts';
import { heatmapSpec } from '../assignments/circuits/charts.ts';
import type { GPT } from '../mingpt/model.ts';
import * as formation from '../assignments/induction-formation/charts.ts';
import { phaseChange, type LogEntry } from '../assignments/induction-formation/formation.ts';

const MAX_BLANK = 0.25;

/** prefix/name.png of the charts still more than a quarter blank (see the top of the file). */
const KNOWN_OVER = new Set<string>([]);
const keep = process.env.CHARTS_DIR;
if (keep) fs.mkdirSync(keep, { recursive: true });

/** Every PNG of a set of chart files: its blank share, kept under `prefix` when CHARTS_DIR is set. */
function check(prefix: string, files: Iterable<[string, string | Uint8Array]>): void {
  const over: string[] = [], leave: string[] = [];
  let n = 0;
  for (const [name, data] of files) {
    if (keep && name.endsWith('.html')) fs.writeFileSync(path.join(keep, `${prefix}-${name}`), data); // to open in a browser
    if (!name.endsWith('.png')) continue;
    n++;
    const share = blankShare(decodePng(data as Uint8Array));
    if (keep) {
      fs.writeFileSync(path.join(keep, `${prefix}-${name}`), data);
      console.log(`  ${(100 * share).toFixed(0).padStart(3)}%  ${prefix}/${name}`);
    }
    const known = KNOWN_OVER.has(`${prefix}/${name}`);
    if (!known && share > MAX_BLANK) over.push(`${name} ${(100 * share).toFixed(0)}%`);
    if (known && share <= MAX_BLANK) leave.push(name);
  }
  assert.ok(n > 0, `${prefix}: no PNG rendered`);
  assert.equal(over, [], `${prefix}: more than a quarter blank`);
  assert.equal(leave, [], `${prefix}: at most a quarter blank now; take these off KNOWN_OVER`);
}

async function files(name: string, spec: TopLevelSpec): Promise<Array<[string, string | Uint8Array]>> {
  return (await chartFiles(name, spec, name)).files;
}

const tiny = await loadGPT(FIXTURE);

// -----------------------------------------------------------------------------
// activation patching: the fixture's patches (analysis.json), the estimates computed here

const c = ANALYSIS.case;
const run: RunDescription = {
  model: FIXTURE_ARG, cleanText: c.clean, corruptText: c.corrupt, cleanToken: c.clean_token, corruptToken: c.corrupt_token,
  cleanLogitDiff: ANALYSIS.metric.clean, corruptLogitDiff: ANALYSIS.metric.corrupt, randomWeights: true,
};
const tokens = tokenStrings(c.clean_ids);
const t = tokenizeInputs(new BPETokenizer(), { clean: c.clean, corrupt: c.corrupt, cleanToken: c.clean_token, corruptToken: c.corrupt_token });
const exact = (kind: PatchKind, hook: string, axes: Patch['axes'], matrix: unknown[]): Patch => ({ kind, hook, axes, shape: [], matrix, sweep_s: 0.1 });

for (const [kind, p] of [
  ['resid_post', exact('resid_post', 'blocks.{l}.hook_resid_post', ['layer', 'pos'], ANALYSIS.patching.resid_post)],
  ['head', exact('head', 'blocks.{l}.attn.hook_z', ['layer', 'head'], ANALYSIS.patching.head_z)],
  ['head-pos', exact('head-pos', 'blocks.{l}.attn.hook_z', ['layer', 'head', 'pos'], ANALYSIS.patching.head_z_by_pos)],
] as const) {
  test(`activation patching, --patch ${kind} --method both (tiny fixture): every chart at most a quarter blank`, async () => {
    const patch = { ...p, shape: kind === 'head-pos' ? [3, 4, 11] : kind === 'head' ? [3, 4] : [3, 11] };
    const atp = estimatePatch(tiny, t, kind);
    const out: Array<[string, string | Uint8Array]> = [];
    for (const scale of ['zero', 'runs'] as const) {
      const charts = experimentCharts(run, patch, tokens, ANALYSIS.logit_lens, ANALYSIS.dla, scale);
      charts.push(comparisonChart(run, patch, atp, comparePatches(patch, atp, tokens), tokens));
      for (const chart of scale === 'zero' ? charts : charts.slice(0, 1)) out.push(...(await files(`${chart.name}-${scale}`, chart.spec)));
    }
    check(`patching-${kind}`, out);
  });
}

// -----------------------------------------------------------------------------
// induction heads, circuits, IOI: the experiments run in-process

async function inductionFiles(model: GPT, name: string, config: Record<string, unknown> | null, argv: string[]) {
  const info = { model, name, config };
  const opts = induction.readOptions(['--weights', name, ...argv]) as induction.Options;
  const { report, clean } = await induction.runExperiment(info, opts, induction.setup(info, opts));
  return induction.outputFiles(report, clean);
}

test('induction (tiny fixture, 4 × 20 tokens): every chart at most a quarter blank', async () => {
  check('induction-tiny', await inductionFiles(tiny, FIXTURE_ARG, tiny.source?.raw_config ?? null, ['--seq-len', '20', '--batch', '4']));
});

test('induction (the hand-built model): every chart at most a quarter blank', async () => {
  const { model, config } = buildInduction({ lo: 256, hi: 1256, seed: 0 });
  check('induction-hand', await inductionFiles(model, 'handmade', config, ['--seq-len', '20', '--batch', '4']));
});

async function ioiFiles(model: GPT, argv: string[]) {
  const o = ioi.readOptions(argv) as ioi.Options;
  const s = ioi.setup(model, o);
  const quiet = { start: () => {}, update: () => {}, end: () => {} };
  return ioi.outputFiles(await ioi.runExperiment(model, o, s, quiet));
}

test('IOI with --eap (tiny fixture, 8 prompts): every chart at most a quarter blank', async () => {
  check('ioi-tiny', await ioiFiles(tiny, ['--weights', FIXTURE_ARG, '--n', '8', '--eap', '--completeness-samples', '2']));
});

test('IOI with --eap (the hand-built model): every chart at most a quarter blank', async () => {
  const { model, config } = buildIoi({});
  model.source = { file: 'handmade', raw_config: config };
  check('ioi-hand', await ioiFiles(model, ['--weights', 'handmade', '--n', '8', '--eap', '--completeness-samples', '2']));
});

function circuitsOptions(ids: number[], bos: number, lo: number, hi: number) {
  return { processed: true, ids, labels: tokenStrings(ids), head: null, path: null, eraserBelow: -0.9, top: 10, batch: 2, seqLen: 8, seed: 0, lo, hi, bos } satisfies Parameters<typeof runCircuits>[2];
}

test('circuits (tiny fixture): every chart at most a quarter blank', async () => {
  const ids = new BPETokenizer().encode('Alice and Bob went to the market, and Alice bought pears. Alice and Bob went to the market, and Alice');
  check('circuits-tiny', await circuitsFiles(runCircuits(tiny, FIXTURE_ARG, circuitsOptions(ids, 50256, 256, 50256))));
});

test('circuits (the hand-built model with erasers): every chart at most a quarter blank', async () => {
  const { model } = buildHandmadeWithErasers({ lo: 256, hi: 1256, seed: 0 });
  const x = [300, 512, 777, 901, 1001, 288, 640, 1111];
  check('circuits-hand', await circuitsFiles(runCircuits(model, 'handmade', circuitsOptions([1256, ...x, ...x], 1256, 256, 1256))));
});

// -----------------------------------------------------------------------------
// the charts whose layout grows with the model, at GPT-2 small's 12 layers × 12 heads

const L = 12, H = 12;
let seed = 7;
const rnd = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
const grid = (f = () => rnd() - 0.5) => Array.from({ length: L }, () => Array.from({ length: H }, f));

test('GPT-2-small-sized charts (12 × 12 heads): at most a quarter blank', async () => {
  const marks = { name_movers: ['9.9', '9.6', '10.0'], circuit: ['0.1', '3.0', '7.3', '8.6'] };
  const heads = Array.from({ length: L * H }, (_, i) => `${Math.floor(i / H)}.${i % H}`);
  const writers = heads.slice(0, (L - 1) * H), readers = heads.slice(H);
  const comp = () => writers.map((a) => readers.map((b) => (Number(b.split('.')[0]) > Number(a.split('.')[0]) ? 0.1 + 0.2 * rnd() : null)));
  const firstOfLayer = (list: string[]) => list.filter((h) => h.endsWith('.0'));
  const pattern = new Float32Array(41 * 41);
  for (let q = 0; q < 41; q++) for (let k = 0; k <= q; k++) pattern[q * 41 + k] = 1 / (q + 1);
  const specs: Array<[string, TopLevelSpec]> = [
    ['dla', dlaSpec({ embed: 0.3, heads: grid(), attn_bias: Array(L).fill(0.01), mlp: Array.from({ length: L }, () => rnd() - 0.5), const: 0, total: 1 }, { ...run, model: 'gpt2' })],
    ['head', patchHeatmapSpec({ ...run, model: 'gpt2', hook: 'blocks.{l}.attn.hook_z', axes: ['layer', 'head'], matrix: grid(), tokens })],
    ['head-pos', patchHeatmapSpec({ ...run, model: 'gpt2', hook: 'blocks.{l}.attn.hook_z', axes: ['layer', 'head', 'pos'], matrix: Array.from({ length: L }, () => Array.from({ length: H }, () => tokens.map(() => rnd() - 3))), tokens })],
    ['ioi-dla', headGridSpec({ model: 'gpt2', grid: grid(), title: 'Direct logit attribution of every head', what: ['direct effect', 'on IO − S'], marks, center: 0, centerName: 'no direct effect,', higher: 'toward IO', lower: 'toward S' })],
    ['ioi-path', pathSpec({ model: 'gpt2', to_logits: grid(), to_name_movers: grid().map((r, l) => r.map((v) => (l < 9 ? v : null))), F: 0.2, name_movers: marks.name_movers, marks })],
    ['scores', scoresSpec({ model: 'gpt2', scores: { induction: grid(rnd), previous_token: grid(rnd), duplicate_token: grid(rnd) }, detected: { induction: ['5.1', '5.5'], previous_token: ['4.11'], duplicate_token: [] }, thresholds: { induction: 0.4, previous_token: 0.4, duplicate_token: 0.4 }, labelled: null })],
    ['attention', attentionSpec({ model: 'gpt2', tokens: Array.from({ length: 41 }, (_, i) => ` t${i}`), panels: ['5.1', '5.5', '6.9', '7.2', '4.11'].map((head) => ({ head, caption: `top induction head (score ${rnd().toFixed(2)})`, pattern, stripe: { from: 21, to: 41, offset: 19 } })) })],
    ['composition', heatmapSpec({
      title: 'Composition scores (gpt2)', subtitle: ['Random matrices score 0.1.'], colors: 'sequential', domain: [0.1, 0.3], valueTitle: ['composition', '(from the baseline 0.1)'],
      panels: (['Q', 'K', 'V'] as const).map((m) => ({
        title: `${m}-composition`, rows: writers, cols: readers, values: comp(), rowTitle: 'writer head A', colTitle: 'reader head B',
        labelEvery: { rows: firstOfLayer(writers), cols: firstOfLayer(readers) }, labelExpr: "'layer ' + split(datum.value, '.')[0]",
        top: Array.from({ length: 10 }, (_, i) => ({ label: `${i}.3 → ${i + 1}.5`, value: 0.3 - i / 100 })),
      })),
    })],
    ['eap', eapGraphSpec({
      model: 'gpt2', L, steps: 1, faithfulness: 0.4, F_model: 3.1,
      edges: [['embed', 'a0.1.v'], ['a0.1', 'a3.0.k'], ['a3.0', 'a7.3.q'], ['a7.3', 'a9.9.q'], ['a9.9', 'logits'], ['m0', 'a9.6.v'], ['a9.6', 'logits'], ['a10.0', 'logits'], ['m11', 'logits']]
        .map(([from, to], i) => ({ from, to, score: (i % 3 ? 1 : -1) * (1 - i / 10) })),
    })],
  ];
  const out: Array<[string, string | Uint8Array]> = [];
  for (const [name, spec] of specs) out.push(...(await files(name, spec)));
  check('gpt2-sized', out);
});

test('induction formation (a made-up log of 41 entries with a jump at step 1500): every chart at most a quarter blank', async () => {
  // the shape of a default run: 2000 steps logged every 50, two layers of two heads, a sigmoid jump
  const jump = (step: number) => 1 / (1 + Math.exp(-(step - 1500) / 100));
  const log: LogEntry[] = Array.from({ length: 41 }, (_, i) => {
    const step = 50 * i, j = jump(step);
    return {
      step, loss: 3.3 - 0.4 * j, first_half_loss: 4.5, second_half_loss: 4 - 2.6 * j, cpu_s: i * 7,
      induction: [[0.03, 0.03], [0.03 + 0.35 * j, 0.03 + 0.5 * j]],
      previous_token: [[0.1, 0.1 + 0.15 * j], [0.06, 0.06]],
    };
  });
  const phase = phaseChange(log);
  const out = [
    ...(await files('loss', formation.lossSpec({ log, phase, uniform: Math.log(64) }))),
    ...(await files('scores', formation.scoresSpec({ log, phase }))),
  ];
  check('formation', out);
});

test.run();
