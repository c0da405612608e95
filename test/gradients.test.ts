/**
 * The backward pass against test/fixtures/gpt2-tiny/gradients.json, an independent PyTorch autograd
 * run (float32; definitions in test/fixtures/GRADIENTS.md), through the conformance command's report
 * (conformance/gradients.ts), so that its format is checked too:
 *   - `grads`: every hook point's gradient of the corrupted run's metric;
 *   - `atp`: attribution patching of every `patching` entry;
 *   - `eap`: every edge of the graph, and which pairs are no edge (null);
 *   - `loss_grads`: minGPT's loss and every parameter's gradient (lm_head untied).
 * GRADIENTS.md allows 1e-4 relative to max(1, |value|) (1e-3 for sums of many terms); we hold
 * every entry to FLOAT32_TOL (1e-5), about ten times what the code achieves (≈ 1e-6: float32 rounding).
 * Then properties whose expected values also come from the fixture: backward hooks, gradients
 * accumulating over two backward passes, a tied lm_head, the sum of the edges into the logits,
 * and EAP-IG approaching the whole difference between the runs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { loadGPT } from '../io/load.ts';
import { gradientsReport, type Case } from '../conformance/gradients.ts';
import { run_with_grad_cache } from '../lens/gradients.ts';
import { edge_attribution_patching } from '../lens/eap.ts';
import { logitDiffMetric } from '../lens/patching.ts';
import { atp_runs } from '../lens/attribution_patching.ts';
import { batchRows } from '../mingpt/hooks.ts';
import { runScript } from './run_script.ts';
import { FIXTURE, FIXTURE_ARG, FLOAT32_TOL, GRADIENTS as G, closeAll } from './helpers.ts';

const CASES = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'cases.json'), 'utf8')) as Case[];

const model = loadGPT(FIXTURE, { untie_lm_head: true });
const report = gradientsReport(model, CASES[0], new BPETokenizer()) as Record<string, any>;
const c = G.case;
const metric = logitDiffMetric(c.corrupt_token_id, c.clean_token_id);

const close = (got: unknown, want: unknown, what: string, tol = FLOAT32_TOL) => closeAll(got, want, tol, what);

test('the case and the two runs\' metric', () => {
  assert.equal(report.case.clean_ids, c.clean_ids);
  assert.equal(report.case.corrupt_ids, c.corrupt_ids);
  close(report.metric.clean, G.metric.clean, 'metric.clean');
  close(report.metric.corrupt, G.metric.corrupt, 'metric.corrupt');
});

test('grads: every hook point\'s gradient (hook_scale: the divisor only; masked scores 0; the embeddings equal)', () => {
  assert.equal(Object.keys(report.grads).sort(), Object.keys(G.grads).sort());
  for (const name of Object.keys(G.grads)) close(report.grads[name], G.grads[name], name);
});

test('atp: attribution patching of resid_pre, attn_out, mlp_out, resid_post, head_z, head_z_by_pos, head_pattern', () => {
  assert.equal(Object.keys(report.atp).sort(), Object.keys(G.atp).sort());
  for (const k of Object.keys(G.atp)) close(report.atp[k], G.atp[k], `atp.${k}`);
});

test('eap: the graph\'s nodes in order, every edge\'s score, null where there is no edge', () => {
  assert.equal(report.eap.upstream, G.eap.upstream);
  assert.equal(report.eap.downstream, G.eap.downstream);
  close(report.eap.scores, G.eap.scores, 'eap.scores');
});

test('loss_grads: the loss and every parameter\'s gradient in the checkpoint\'s layout (norms and rows for the big three)', () => {
  const LG = G.loss_grads, R = report.loss_grads;
  close(R.loss, LG.loss, 'loss');
  assert.equal(R.tokens, LG.tokens);
  for (const [name, want] of Object.entries(LG) as Array<[string, any]>) {
    if (name === 'loss' || name === 'tokens') continue;
    if (want.norm === undefined) { close(R[name], want, name); continue; }
    close(R[name].norm, want.norm, `${name} norm`);
    const common = Object.keys(want.rows).filter((r) => r in R[name].rows);
    for (const id of c.clean_ids) assert.ok(common.includes(String(id)) || name === 'wpe.weight', `${name}: the text's id ${id} is compared`);
    for (const r of common) close(R[name].rows[r], want.rows[r], `${name}[${r}]`);
  }
});

test('backward hooks: one that changes nothing changes nothing; one that zeroes attn_out\'s gradient leaves resid_pre with resid_mid\'s', () => {
  const names = ['blocks.1.hook_resid_pre', 'blocks.1.hook_resid_mid'];
  const plain = run_with_grad_cache(model, c.corrupt_ids, metric, { names }).grad_cache;
  const seen: string[] = [];
  const identity = run_with_grad_cache(model, c.corrupt_ids, metric, { names, bwd_hooks: [[() => true, (_g, name) => { seen.push(name); }]] }).grad_cache;
  assert.equal(Array.from(identity.get(names[0]).data), Array.from(plain.get(names[0]).data));
  assert.ok(seen.length === model.hook_names().length, `every hook point's gradient passes a backward hook once (${seen.length})`);
  // with the attention branch's gradient gone, block 1's input gets only what the residual connection passes on
  const cut = run_with_grad_cache(model, c.corrupt_ids, metric, { names, bwd_hooks: [['blocks.1.hook_attn_out', (g) => { g.data.fill(0); }]] }).grad_cache;
  close(Array.from(cut.get('blocks.1.hook_resid_pre').data), G.grads['blocks.1.hook_resid_mid'].flat(2), 'resid_pre = resid_mid');
  assert.equal(plain.keys().sort(), names.slice().sort(), 'the names filter keeps what it names');
});

test('the backward pass goes back only as far as the hook points asked for: the block outputs\' gradients as the fixture\'s, block 0 not run; stop_at_layer with parameters\' gradients refused', () => {
  const names = Array.from({ length: model.config.n_layer }, (_, l) => `blocks.${l}.hook_resid_post`);
  const got = run_with_grad_cache(model, c.corrupt_ids, metric, { names }).grad_cache;
  for (const n of names) close(Array.from(got.get(n).data), G.grads[n].flat(2), n);
  // what model.backward sees from run_with_grad_cache's choice (stop at block 1): every point after block 0's output, none before
  const T = c.corrupt_ids.length, seen: string[] = [];
  const { logits } = model.forward(c.corrupt_ids, { grad: true, logits_at: [T - 1] });
  model.backward(metric.backward!(logits), { params: false, stop_at_layer: 1, hooks: [[() => true, (_g, n) => { seen.push(n); }]] });
  const all = model.hook_names(), from = all.indexOf('blocks.0.hook_resid_post');
  assert.equal(seen.slice().sort(), all.slice(from).sort());
  assert.is(seen.at(-1), 'blocks.0.hook_resid_post');
  model.forward(c.corrupt_ids, { grad: true, logits_at: [T - 1] });
  assert.throws(() => model.backward(metric.backward!(logits), { stop_at_layer: 1 }), /params: false/);
});

test('a batch run backward through some of its rows: the gradients of those rows alone (the fixture\'s), the other rows riding along; bad ranges refused', () => {
  // the clean text in row 0, the corrupted one in row 1, which the metric reads (the logits at
  // every position, as the fixture's run computes them)
  const T = c.corrupt_ids.length;
  const run = run_with_grad_cache(model, [c.clean_ids, c.corrupt_ids], metric, { cache: true, grad_rows: [1, 2], logits_at: [...Array(T).keys()] });
  close(run.value, G.metric.corrupt, 'the metric of row 1');
  assert.equal(run.grad_cache.keys().sort(), Object.keys(G.grads).sort());
  for (const name of Object.keys(G.grads)) {
    const g = run.grad_cache.get(name);
    assert.is(g.shape[0], 1, `${name}: one row of gradients`);
    close(Array.from(g.data), G.grads[name].flat(Infinity), name);
  }
  close(metric(batchRows(run.logits, 0, 1)), G.metric.clean, 'the metric of row 0, which rode along');
  assert.is(run.cache.get('blocks.0.hook_resid_post').shape[0], 2, 'the activations of both rows');
  // the parameters' gradients of the loss of row 1 alone are the fixture's (row 0 another text)
  const ids = c.clean_ids, other = c.corrupt_ids;
  model.zero_grad();
  model.forward([other.slice(0, -1), ids.slice(0, -1)], { targets: [other.slice(1), ids.slice(1)] });
  model.backward(undefined, { batch: [1, 2] });
  const [, ln] = model.named_parameters.find(([n]) => n === 'transformer.ln_f.weight')!;
  close(Array.from(model.grad_of(ln)), G.loss_grads['ln_f.weight'], 'ln_f.weight, row 1\'s loss');
  model.zero_grad();
  const { logits } = model.forward([c.clean_ids, c.corrupt_ids], { grad: true, logits_at: [T - 1] });
  assert.throws(() => model.backward(metric.backward!(batchRows(logits, 1, 2)), { batch: [1, 3] }), /batch \[1, 3\) is outside the run's 2 rows/);
  assert.throws(() => atp_runs(model, [c.clean_ids, c.clean_ids], [c.corrupt_ids], metric, ['resid_post']), /as many clean texts as corrupted ones: 2 clean, 1 corrupted/);
});

test('a backward hook may keep the gradients it sees without copying them: no later block writes over them (the pass reuses only the arrays no hook sees)', () => {
  const kept: Array<[string, Float32Array, Float32Array]> = [];
  run_with_grad_cache(model, c.corrupt_ids, metric, { names: [], bwd_hooks: [[(n) => n.startsWith('blocks.'), (g, n) => { kept.push([n, g.data, g.data.slice()]); }]] });
  assert.ok(kept.length > 2 * 15, `${kept.length} gradients seen`);
  for (const [n, ref, copy] of kept) assert.equal(ref, copy, n);
  // and one that is not watched is still right: the fixture's, through the reused arrays
  const some = ['blocks.0.hook_resid_pre', 'blocks.1.mlp.hook_post'];
  const g = run_with_grad_cache(model, c.corrupt_ids, metric, { names: some }).grad_cache;
  for (const n of some) close(Array.from(g.get(n).data), G.grads[n].flat(2), n);
});

test('backward() adds to the gradients until zero_grad(): two passes give twice the fixture\'s', () => {
  const ids = c.clean_ids;
  model.zero_grad();
  for (let i = 0; i < 2; i++) {
    model.forward(ids.slice(0, -1), { targets: ids.slice(1) });
    model.backward();
  }
  const [, ln, shape] = model.named_parameters.find(([n]) => n === 'transformer.ln_f.weight')!;
  close(Array.from(model.grad_of(ln)).map((x) => x / 2), G.loss_grads['ln_f.weight'], 'ln_f.weight / 2');
  assert.equal(shape, [model.config.n_embd]);
  model.zero_grad();
  assert.ok(model.grads!.every((x) => x === 0));
});

test('a tied lm_head (GPT-2\'s own tying): wte\'s gradient is the embedding\'s plus the unembedding\'s', () => {
  const tied = loadGPT(FIXTURE);
  const ids = c.clean_ids, C = tied.config.n_embd;
  tied.forward(ids.slice(0, -1), { targets: ids.slice(1) });
  tied.backward();
  const g = tied.grad_of(tied.transformer.wte);
  const LG = G.loss_grads;
  for (const r of Object.keys(LG['lm_head.weight'].rows).filter((r) => r in LG['wte.weight'].rows)) {
    const want = LG['wte.weight'].rows[r].map((x: number, i: number) => x + LG['lm_head.weight'].rows[r][i]);
    close(Array.from(g.subarray(Number(r) * C, (Number(r) + 1) * C)), want, `wte[${r}]`);
  }
});

test('eap: the edges into the logits add up to the AtP of the whole final residual stream', () => {
  const L = G.eap.upstream.filter((u: string) => u.startsWith('m')).length;
  const j = G.eap.downstream.indexOf('logits');
  const sum = report.eap.scores.reduce((s: number, row: Array<number | null>) => s + (row[j] ?? 0), 0);
  const atpFinal = G.atp.resid_post[L - 1].reduce((s: number, x: number) => s + (x - G.metric.corrupt), 0);
  close(sum, atpFinal, 'Σ edges into logits', 1e-5);
});

test('eap-ig: with more steps the embedding\'s edges add up to metric(clean) − metric(corrupted) (integrated gradients\' completeness)', () => {
  const want = G.metric.clean - G.metric.corrupt;
  const embedSum = (steps: number) => {
    const r = edge_attribution_patching(model, c.clean_ids, c.corrupt_ids, metric, { steps });
    return r.scores[0].reduce((s: number, x) => s + (x ?? 0), 0);
  };
  const one = embedSum(1), many = embedSum(32);
  close(one, report.eap.scores[0].reduce((s: number, x: number | null) => s + (x ?? 0), 0), 'steps 1 = plain EAP');
  // the left Riemann sum's error shrinks like 1/steps: at 32 steps a few % of the difference
  assert.ok(Math.abs(many - want) < 0.05 * Math.abs(want), `32 steps: ${many} vs ${want}`);
  assert.ok(Math.abs(many - want) < Math.abs(one - want) / 5, `32 steps (${many}) much closer than 1 (${one}) to ${want}`);
});

test('conformance/gradients.ts writes the report; refuses a missing --case and a case file that is not a case list', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gradients-cli-'));
  try {
    const out = path.join(tmp, 'g.json');
    const ok = await runScript('conformance/gradients.ts', ['--weights', FIXTURE_ARG, '--case', path.join(FIXTURE_ARG, 'cases.json'), '--out', out]);
    assert.is(ok.code, 0, ok.stderr);
    const written = JSON.parse(fs.readFileSync(out, 'utf8'));
    close(written.eap.scores, G.eap.scores, 'written eap.scores');
    const missing = await runScript('conformance/gradients.ts', ['--weights', FIXTURE_ARG, '--out', out]);
    assert.is(missing.code, 2);
    assert.match(missing.stderr, '--case is required');
    fs.writeFileSync(path.join(tmp, 'bad.json'), '{"clean": "x"}');
    const bad = await runScript('conformance/gradients.ts', ['--weights', FIXTURE_ARG, '--case', path.join(tmp, 'bad.json'), '--out', path.join(tmp, 'h.json')]);
    assert.is(bad.code, 1);
    assert.match(bad.stderr, 'expected a list of cases');
    assert.not.ok(fs.existsSync(path.join(tmp, 'h.json')), 'nothing written');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test.run();
