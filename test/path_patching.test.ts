/**
 * Path patching (lens/path_patching.ts) against test/fixtures/gpt2-tiny/analysis.json, an
 * independent PyTorch run of ANALYSIS.md's definitions: `path_patching` on the case pair
 * (to the logits, and to the queries of every head of the last layer at every position) and
 * `group.path_patching` on the prompts of ioi-group.json (to the logits, and to the name movers'
 * queries at the last position). Tolerance 1e-5 relative to max(1, |value|): the code agrees to
 * about 3e-6 (float32 on both sides).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { pathPatch, type PairBatch } from '../lens/path_patching.ts';
import { parseHead } from '../lens/heads.ts';
import { loadGPT } from '../io/load.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(here, 'fixtures', 'gpt2-tiny');
const A = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'analysis.json'), 'utf8'));
const G = JSON.parse(fs.readFileSync(path.join(here, 'fixtures', 'ioi-group.json'), 'utf8'));
const model = loadGPT(FIXTURE);
const L = model.config.n_layer, nh = model.config.n_head;

function close(got: number | null, want: number | null, what: string, tol = 1e-5) {
  if (want === null) { assert.is(got, null, `${what}: expected null`); return; }
  assert.ok(got !== null && Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${what}: ${got} vs reference ${want}`);
}
const mean = (r: number[]) => r.reduce((a, b) => a + b, 0) / r.length;

// the case pair: orig = clean text, new = corrupt text, metric = logit(corrupt token) − logit(clean token)
const c = A.case;
const pair: PairBatch = { orig: [c.clean_ids], new: [c.corrupt_ids], token: [c.corrupt_token_id], other: [c.clean_token_id] };

test('case pair: to_logits, every sender', () => {
  const r = pathPatch(model, pair);
  for (let l = 0; l < L; l++) for (let h = 0; h < nh; h++) close(r.to_logits[l][h][0], A.path_patching.to_logits[l][h], `to_logits[${l}][${h}]`);
});

test('case pair: to the queries of the last layer, every position (null for senders in it)', () => {
  const receivers = Array.from({ length: nh }, (_, h) => ({ layer: L - 1, head: h }));
  const r = pathPatch(model, pair, { receivers, receiverPositions: 'all' });
  for (let l = 0; l < L; l++) for (let h = 0; h < nh; h++) {
    const v = r.to_receivers![l][h];
    close(v === null ? null : v[0], A.path_patching.to_q_last_layer[l][h], `to_q_last_layer[${l}][${h}]`);
  }
});

test('case pair: last-layer receivers give the same metric at END only as at every position', () => {
  const receivers = Array.from({ length: nh }, (_, h) => ({ layer: L - 1, head: h }));
  const all = pathPatch(model, pair, { receivers, receiverPositions: 'all' });
  const end = pathPatch(model, pair, { receivers, receiverPositions: 'end' });
  for (let l = 0; l < L - 1; l++) for (let h = 0; h < nh; h++) close(end.to_receivers![l][h]![0], all.to_receivers![l][h]![0], `[${l}][${h}]`);
});

// the group: orig = each clean prompt, new = its ABC twin, metric = logit(io) − logit(s)
const tok = new BPETokenizer();
const one = (s: string) => { const ids = tok.encode(s); assert.is(ids.length, 1, `${s} is one token`); return ids[0]; };
const group: PairBatch = {
  orig: G.prompts.map((p: { clean: string }) => tok.encode(p.clean)),
  new: G.prompts.map((p: { corrupt: string }) => tok.encode(p.corrupt)),
  token: G.prompts.map((p: { io: string }) => one(p.io)),
  other: G.prompts.map((p: { s: string }) => one(p.s)),
};

test('group: the tokens are the fixture\'s', () => {
  assert.equal(group.orig.map((r, i) => [r, group.new[i]]), A.knockout.group_ids);
  assert.equal(group.token, A.knockout.io_ids);
});

test('group: to_logits and to the name movers\' queries at END, means over the prompts', () => {
  const receivers = (G.name_movers as string[]).map(parseHead);
  assert.equal(G.name_movers, A.group.name_movers);
  let last = [0, 0];
  const r = pathPatch(model, group, { receivers, receiverPositions: 'end', onProgress: (d, t) => { last = [d, t]; } });
  assert.equal(last, [L * nh, L * nh]);
  for (let l = 0; l < L; l++) for (let h = 0; h < nh; h++) {
    close(mean(r.to_logits[l][h]), A.group.path_patching.to_logits[l][h], `to_logits[${l}][${h}]`);
    const v = r.to_receivers![l][h];
    close(v === null ? null : mean(v), A.group.path_patching.to_name_movers[l][h], `to_name_movers[${l}][${h}]`);
  }
  close(mean(r.orig), A.group.F_model, 'orig metric = F_model');
});

test('a few senders: the same values as in the full sweep, NaN and null for the others', () => {
  const receivers = (G.name_movers as string[]).map(parseHead);
  const r = pathPatch(model, group, { receivers, senders: [{ layer: 1, head: 2 }, { layer: 0, head: 3 }] });
  close(mean(r.to_logits[1][2]), A.group.path_patching.to_logits[1][2], 'to_logits[1][2]');
  close(mean(r.to_receivers![0][3]!), A.group.path_patching.to_name_movers[0][3], 'to_name_movers[0][3]');
  assert.ok(Number.isNaN(r.to_logits[0][0][0]));
  assert.is(r.to_receivers![0][0], null);
});

test.run();
