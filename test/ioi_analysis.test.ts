/**
 * The IOI experiment (assignments/ioi/) against test/fixtures/gpt2-tiny/analysis.json's `group`:
 * an independent PyTorch run of ANALYSIS.md's definitions on the prompts of ioi-group.json
 * (F_model, accuracy, logit lens, DLA per head, activation patching of each head's z, path
 * patching to the logits and to the name movers' queries). Tolerance FLOAT32_TOL relative to
 * max(1, |value|) (test/helpers.ts). Then the command line end to end on the fixture: the files it writes, ioi.json
 * equal to the reference, and clear refusals of bad input.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { parseHead } from '../lens/heads.ts';
import { loadPromptsFile, tokenizePrompts } from '../assignments/ioi/dataset.ts';
import { BATCH_BYTES, basicResults, batches, completenessSets, knockoutResults, pathResults, promptBytes, type StepsProgress } from '../assignments/ioi/experiment.ts';
import { DEFAULT_NAMES, DUP_HEAD, NAME_MOVER, SINH_HEAD, buildHandmade } from '../assignments/ioi/handmade.ts';
import { makeDataset } from '../assignments/ioi/dataset.ts';
import { headName } from '../lens/heads.ts';
import { runScript } from './run_script.ts';
import { loadGPT } from '../io/load.ts';
import { ANALYSIS, FIXTURE, FLOAT32_TOL, IOI_GROUP_FILE, closeAll } from './helpers.ts';

const A = ANALYSIS;
const G = A.group;
const model = loadGPT(FIXTURE);
const groups = tokenizePrompts(loadPromptsFile(IOI_GROUP_FILE), new BPETokenizer());
const quiet: StepsProgress = { start() {}, update() {}, end() {} };


test('the fixture\'s prompts make one group of the fixture\'s tokens', () => {
  assert.is(groups.length, 1);
  assert.equal(groups[0].prompts.map((p) => [p.clean_ids, p.corrupt_ids]), A.knockout.group_ids);
  assert.is(groups[0].prompts.length, G.n_prompts);
});

const basic = basicResults(model, groups, quiet);

test('F_model, accuracy, logit lens, DLA per head, activation patching of each head\'s z', () => {
  closeAll(basic.F_model, G.F_model, FLOAT32_TOL, 'F_model');
  closeAll(basic.accuracy, G.accuracy, FLOAT32_TOL, 'accuracy');
  closeAll(basic.logit_lens, G.logit_lens, FLOAT32_TOL, 'logit_lens');
  closeAll(basic.dla.heads, G.dla.heads, FLOAT32_TOL, 'dla.heads');
  closeAll(basic.patching.head_z, G.patching.head_z, FLOAT32_TOL, 'patching.head_z');
});

test('path patching to the logits and to the name movers\' queries', () => {
  const r = pathResults(model, groups, G.name_movers.map(parseHead), quiet);
  closeAll(r.to_logits, G.path_patching.to_logits, FLOAT32_TOL, 'to_logits');
  closeAll(r.to_name_movers, G.path_patching.to_name_movers, FLOAT32_TOL, 'to_name_movers');
});

test('a group split in two gives the same means (each prompt weighs the same)', () => {
  const g = groups[0];
  const split = [{ ...g, key: 'a', prompts: g.prompts.slice(0, 1) }, { ...g, key: 'b', prompts: g.prompts.slice(1) }];
  const b2 = basicResults(model, split, quiet);
  closeAll(b2.F_model, G.F_model, FLOAT32_TOL, 'F_model');
  closeAll(b2.dla.heads, G.dla.heads, FLOAT32_TOL, 'dla.heads');
  closeAll(b2.patching.head_z, G.patching.head_z, FLOAT32_TOL, 'patching.head_z');
});


// issue 18, item 10: memory bounded however many prompts (3000 prompts of one group took 11 GB)
test('3000 prompts of one group are run in batches, none holding more than BATCH_BYTES of activations', () => {
  const g = groups[0];
  const many = [{ ...g, prompts: Array.from({ length: 3000 }, (_, i) => ({ ...g.prompts[i % g.prompts.length], index: i })) }];
  const gpt2 = { n_layer: 12, n_head: 12, n_embd: 768, vocab_size: 50257 };
  for (const c of [model.config, gpt2]) {
    const parts = batches(many, c);
    assert.is(parts.reduce((a, p) => a + p.prompts.length, 0), 3000);
    assert.ok(parts.length > 1);
    for (const p of parts) assert.ok(p.prompts.length * promptBytes(c, g.T) <= BATCH_BYTES, `a batch of ${p.prompts.length}`);
  }
});

test('in batches of one prompt, every step still gives the reference numbers (knockouts: the group\'s mean ablation kept)', () => {
  const one = promptBytes(model.config, groups[0].T);
  assert.is(batches(groups, model.config, one).length, groups[0].prompts.length);
  const b = basicResults(model, groups, quiet, one);
  closeAll(b.F_model, G.F_model, FLOAT32_TOL, 'F_model');
  closeAll(b.logit_lens, G.logit_lens, FLOAT32_TOL, 'logit_lens');
  closeAll(b.dla.heads, G.dla.heads, FLOAT32_TOL, 'dla.heads');
  closeAll(b.patching.head_z, G.patching.head_z, FLOAT32_TOL, 'patching.head_z');
  const r = pathResults(model, groups, G.name_movers.map(parseHead), quiet, one);
  closeAll(r.to_logits, G.path_patching.to_logits, FLOAT32_TOL, 'to_logits');
  closeAll(r.to_name_movers, G.path_patching.to_name_movers, FLOAT32_TOL, 'to_name_movers');
  const file = JSON.parse(fs.readFileSync(IOI_GROUP_FILE, 'utf8'));
  const K = A.knockout;
  const ko = knockoutResults(model, groups, file.circuit.map(parseHead), file.completeness_sets.map((k: string[]) => ({ K: k.map(parseHead), kind: 'file' })), 'all', quiet, one);
  closeAll([ko.F_model, ko.F_circuit, ko.F_empty, ko.faithfulness], [K.F_model, K.F_circuit, K.F_empty, K.faithfulness], FLOAT32_TOL, 'knockout F');
  closeAll(ko.completeness.map((c) => [c.F_C_minus_K, c.F_M_minus_K, c.value]), K.completeness.map((c: any) => [c.F_C_minus_K, c.F_M_minus_K, c.value]), FLOAT32_TOL, 'completeness');
  closeAll(ko.minimality.map((m) => m.value), K.minimality.map((m: any) => m.value), FLOAT32_TOL, 'minimality');
});

// The hand-built model (assignments/ioi/handmade.ts), whose circuit is known by construction:
// duplicate-token head DUP_HEAD, S-inhibition head SINH_HEAD, name mover NAME_MOVER; the other
// heads write nothing. The experiment's own steps must find that circuit.
test('handmade model: DLA, path patching and knockouts of the experiment recover the designed circuit', () => {
  const tok = new BPETokenizer();
  const hand = buildHandmade({ tokenizer: tok }).model;
  const hg = tokenizePrompts(makeDataset({ n: 30, seed: 3, names: DEFAULT_NAMES }), tok);
  const b = basicResults(hand, hg, quiet);
  // DLA's top head is the name mover
  const ranked = b.dla.heads.flatMap((row, l) => row.map((v, h) => ({ name: `${l}.${h}`, v }))).sort((x, y) => y.v - x.v);
  assert.is(ranked[0].name, headName(NAME_MOVER));
  assert.ok(b.F_model > 1 && b.accuracy > 0.95, `F ${b.F_model}, accuracy ${b.accuracy}`);
  // path patching to the name mover's queries at END singles out the S-inhibition head
  const pr = pathResults(hand, hg, [NAME_MOVER], quiet);
  const drops = pr.to_name_movers.flatMap((row, l) => row.map((v, h) => ({ name: `${l}.${h}`, d: v === null ? 0 : b.F_model - v }))).sort((x, y) => y.d - x.d);
  assert.is(drops[0].name, headName(SINH_HEAD));
  assert.ok(drops[0].d > 0.5 * b.F_model && Math.abs(drops[1].d) < 0.05 * b.F_model, `drops ${JSON.stringify(drops.slice(0, 2))}`);
  // knockouts: the designed circuit alone keeps F; the name mover out drops F to about 0
  const circuit = [DUP_HEAD, SINH_HEAD, NAME_MOVER];
  const classes = { [headName(DUP_HEAD)]: 'duplicate_token', [headName(SINH_HEAD)]: 's_inhibition', [headName(NAME_MOVER)]: 'name_mover' };
  const ko = knockoutResults(hand, hg, circuit, completenessSets(circuit, classes, 0, 0), 'all', quiet);
  assert.ok(ko.faithfulness < 0.1 * Math.abs(ko.F_model), `faithfulness ${ko.faithfulness} vs F_model ${ko.F_model}`);
  const nm = ko.completeness.find((c) => c.K.length === 1 && c.K[0] === headName(NAME_MOVER))!;
  assert.ok(Math.abs(nm.F_M_minus_K) < 0.1 * Math.abs(ko.F_model), `F with the name mover out: ${nm.F_M_minus_K}`);
  // and every designed head matters (minimality far from 0)
  for (const m of ko.minimality) assert.ok(m.value > 0.5 * b.F_model, `minimality ${m.head} ${m.value}`);
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ioi-test-'));

test('ioi.ts end to end on the fixture: its files, and ioi.json equal to the reference', async () => {
  const out = path.join(tmp, 'run');
  const r = await runScript('assignments/ioi/ioi.ts', ['--weights', FIXTURE, '--prompts', IOI_GROUP_FILE, '--kernels', 'js', '--out', out]);
  assert.is(r.code, 0, r.stderr);
  for (const chart of ['logit_lens', 'dla', 'head_patching', 'resid_patching', 'attention', 'patterns', 'path_patching', 'knockout'])
    for (const ext of ['vl.json', 'svg', 'html']) assert.ok(fs.existsSync(path.join(out, `${chart}.${ext}`)), `${chart}.${ext}`);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'ioi.json'), 'utf8'));
  for (const key of ['prompts', 'n_prompts', 'F_model', 'accuracy', 'io_prob', 'logit_lens', 'dla', 'patching', 'attention', 'path_patching', 'knockout'])
    assert.ok(key in j, `ioi.json has ${key}`);
  assert.is(j.n_prompts, 4);
  assert.equal(j.prompts[0], { ...JSON.parse(fs.readFileSync(IOI_GROUP_FILE, 'utf8')).prompts[0], group: 'all' });
  closeAll(j.F_model, G.F_model, FLOAT32_TOL, 'F_model');
  closeAll(j.accuracy, G.accuracy, FLOAT32_TOL, 'accuracy');
  closeAll(j.logit_lens, G.logit_lens, FLOAT32_TOL, 'logit_lens');
  closeAll(j.dla.heads, G.dla.heads, FLOAT32_TOL, 'dla.heads');
  closeAll(j.patching.head_z, G.patching.head_z, FLOAT32_TOL, 'patching.head_z');
  assert.equal(j.path_patching.name_movers, G.name_movers); // from the prompts file
  closeAll(j.path_patching.to_logits, G.path_patching.to_logits, FLOAT32_TOL, 'to_logits');
  closeAll(j.path_patching.to_name_movers, G.path_patching.to_name_movers, FLOAT32_TOL, 'to_name_movers');
  const K = A.knockout;
  assert.equal(j.knockout.circuit, K.circuit);
  for (const f of ['F_model', 'F_circuit', 'F_empty', 'faithfulness']) closeAll(j.knockout[f], K[f], FLOAT32_TOL, `knockout.${f}`);
  closeAll(j.knockout.completeness.map((c: { value: number }) => c.value), K.completeness.map((c: { value: number }) => c.value), FLOAT32_TOL, 'completeness');
  assert.equal(j.knockout.completeness.map((c: { K: string[] }) => c.K), K.completeness.map((c: { K: string[] }) => c.K));
  closeAll(j.knockout.minimality.map((m: { value: number }) => m.value), K.minimality.map((m: { value: number }) => m.value), FLOAT32_TOL, 'minimality');
});

async function refused(args: string[], pattern: RegExp, code = 1) {
  const out = path.join(tmp, 'bad-' + Math.random().toString(36).slice(2));
  const r = await runScript('assignments/ioi/ioi.ts', ['--weights', FIXTURE, '--kernels', 'js', '--out', out, ...args]);
  assert.is(r.code, code, `exit code for ${args.join(' ')}: ${r.stderr}`);
  assert.match(r.stderr, pattern);
  assert.not.ok(fs.existsSync(out), 'nothing written');
}

test('bad --prompts input: missing file, not JSON, missing field, names of two tokens, unequal lengths', async () => {
  const write = (name: string, text: string) => { const f = path.join(tmp, name); fs.writeFileSync(f, text); return f; };
  await refused(['--prompts', path.join(tmp, 'nope.json')], /cannot read the prompts file/);
  await refused(['--prompts', write('bad.json', '{ not json')], /not valid JSON/);
  await refused(['--prompts', write('nofield.json', JSON.stringify([{ clean: 'a', corrupt: 'b', io: ' Mary' }]))], /prompt 0 has no "s"/);
  const p = JSON.parse(fs.readFileSync(IOI_GROUP_FILE, 'utf8')).prompts;
  await refused(['--prompts', write('long.json', JSON.stringify([{ ...p[0], io: ' Maryanne' }]))], /" Maryanne" is 2 tokens, it must be one/);
  await refused(['--prompts', write('len.json', JSON.stringify([p[0], { ...p[1], clean: 'Then ' + p[1].clean, corrupt: 'Then ' + p[1].corrupt }]))], /one token length/);
});

test('--circuit paper on a model that is not GPT-2 small, and heads that do not exist, are refused before any work', async () => {
  await refused(['--prompts', IOI_GROUP_FILE, '--circuit', 'paper'], /GPT-2 small's circuit \(12 layers × 12 heads\).*3 layers × 4 heads/);
  await refused(['--prompts', IOI_GROUP_FILE, '--circuit', '0.1,5.0'], /head 5\.0 does not exist/);
  await refused(['--prompts', IOI_GROUP_FILE, '--name-movers', '2.x'], /LAYER\.HEAD/);
  await refused(['--prompts', IOI_GROUP_FILE, '--n', '3'], /either --n .* or --prompts/, 2);
  await refused(['--prompts', IOI_GROUP_FILE, '--positions', 'paper'], /head 0\.1 .* has no class/);
  await refused(['--positions', 'paper'], /no known circuit with classes/);
  await refused(['--prompts', IOI_GROUP_FILE, '--circuit', '0.1,0.1'], /listed twice/);
});

test('a bad prompts file is refused before the model loads; empty name_movers or completeness sets are refused (items 9, 14)', async () => {
  const write = (name: string, text: string) => { const f = path.join(tmp, name); fs.writeFileSync(f, text); return f; };
  const file = JSON.parse(fs.readFileSync(IOI_GROUP_FILE, 'utf8'));
  // a checkpoint that does not exist: had the model been loaded first, that would be the error
  const before = async (prompts: string, pattern: RegExp) => {
    const r = await runScript('assignments/ioi/ioi.ts', ['--weights', path.join(tmp, 'no-such-checkpoint'), '--prompts', prompts, '--out', path.join(tmp, 'never')]);
    assert.is(r.code, 1, r.stderr);
    assert.match(r.stderr, pattern);
  };
  await before(write('lone.json', JSON.stringify([{ ...file.prompts[0], clean: file.prompts[0].clean + ' \ud800' }])),
    /prompt 0's "clean" text holds a lone surrogate at character 60 \(\\ud800/);
  await before(write('nm.json', JSON.stringify({ ...file, name_movers: [] })), /"name_movers" must be a non-empty list/);
  await before(write('cs.json', JSON.stringify({ ...file, completeness_sets: [[]] })), /"completeness_sets" must be a non-empty list of non-empty lists/);
  await before(write('cs0.json', JSON.stringify({ ...file, completeness_sets: [] })), /"completeness_sets" must be a non-empty list/);
  await before(path.join(tmp), /the prompts file .* is a folder, not a JSON file/);
  assert.not.ok(fs.existsSync(path.join(tmp, 'never')));
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
