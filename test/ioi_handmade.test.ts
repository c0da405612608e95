// Tests for assignments/ioi/handmade.ts, the three-layer model whose IOI circuit is written by
// hand. Every expected value is a fact of the construction (README: "A model whose circuit we
// know"), not an output copied from a run:
//   - the name mover adds NM_GAIN (5) times the IO's name code at END, and nothing else writes
//     along W_U[io] − W_U[s], so logit(IO) − logit(S) is NM_GAIN on every prompt, and all of it
//     is the name mover's direct logit attribution;
//   - without the inhibition (S-inhibition head or duplicate-token head mean-ablated by the ABC
//     prompts, which have no duplicate name), the name mover splits its attention evenly over
//     IO, S1 and S2: logit(IO) − logit(S) = NM_GAIN · (1/3 − 2/3) = −NM_GAIN / 3, times the
//     factor by which the final layer norm's scale shrinks (SPREAD_F below);
//   - the decoy heads write nothing, so knocking them all out changes nothing;
//   - with the name mover mean-ablated, END holds the average of the ABC prompts' names, which
//     favours neither IO nor S: about 0.
// Knockouts, DLA and path patching follow test/fixtures/ANALYSIS.md's definitions
// (the IOI analysis script is written separately; these are the same definitions, written small).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { clone, type HookSpec } from '../mingpt/hooks.ts';
import { directLogitAttribution } from '../lens/attribution.ts';
import {
  DEFAULT_NAMES, DUP_HEAD, HEAD_SIZE, LAYOUT, NAME_MOVER, NM_GAIN, N_EMBD, N_HEAD, N_LAYER, SINH_HEAD, buildHandmade,
} from '../assignments/ioi/handmade.ts';
import { loadPromptsFile, makeDataset, tokenizePrompts, type PromptGroup } from '../assignments/ioi/dataset.ts';
import { runScript } from './run_script.ts';
import { loadGPT } from '../io/load.ts';
import { run_with_cache } from '../lens/activation_cache.ts';
import { IOI_GROUP_FILE, tempDir } from './helpers.ts';
import { headName } from '../lens/heads.ts';

const tmp = tempDir('ioi-handmade-test-');

const tok = new BPETokenizer();
const built = buildHandmade({ tokenizer: tok });
const model = built.model;
const C = N_EMBD, NH = N_HEAD, hs = HEAD_SIZE;
const CIRCUIT = new Set([headName(DUP_HEAD), headName(SINH_HEAD), headName(NAME_MOVER)]);
const ALL_HEADS = Array.from({ length: N_LAYER * NH }, (_, i) => `${Math.floor(i / NH)}.${i % NH}`);

// 150 prompts made of the model's names: 15 groups (one per template) of 10
const groups = tokenizePrompts(makeDataset({ n: 150, seed: 1, names: DEFAULT_NAMES }), tok);

// -----------------------------------------------------------------------------------------------
// the measurements, per ANALYSIS.md

/** logit(io) − logit(s) at END for each prompt of the group, on `ids` (clean by default). */
function diffs(g: PromptGroup, hooks: HookSpec = [], ids = g.prompts.map((p) => p.clean_ids)): number[] {
  const { logits } = model.run_with_hooks(ids, hooks, { logits_at: [g.T - 1] }); // (B, 1, V)
  const V = logits.shape[2];
  return g.prompts.map((p, b) => logits.data[b * V + p.io_id] - logits.data[b * V + p.s_id]);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const zName = (l: number) => `blocks.${l}.attn.hook_z`;

/** Per layer, the mean over the group's corrupt (ABC) prompts of hook_z: (T, nh, hs) flattened. */
const meanZ = new Map<PromptGroup, Float32Array[]>();
for (const g of groups) {
  const { cache } = run_with_cache(model, g.prompts.map((p) => p.corrupt_ids), { names: (n) => n.endsWith('attn.hook_z'), logits_at: [g.T - 1] });
  meanZ.set(g, Array.from({ length: N_LAYER }, (_, l) => {
    const z = cache.get(zName(l)).data, B = g.prompts.length, n = g.T * NH * hs;
    const m = new Float32Array(n);
    for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) m[i] += z[b * n + i] / B;
    return m;
  }));
}

/** Knock out `heads`: their hook_z at every position becomes the group's corrupt mean. */
function knockout(g: PromptGroup, heads: Iterable<string>): HookSpec {
  const byLayer = new Map<number, number[]>();
  for (const h of heads) {
    const [l, hd] = h.split('.').map(Number);
    byLayer.set(l, [...(byLayer.get(l) ?? []), hd]);
  }
  return [...byLayer].map(([l, hds]) => [zName(l), (act) => {
    const m = meanZ.get(g)![l];
    for (let b = 0; b < act.shape[0]; b++)
      for (let t = 0; t < g.T; t++)
        for (const hd of hds) act.data.set(m.subarray((t * NH + hd) * hs, (t * NH + hd + 1) * hs), ((b * g.T + t) * NH + hd) * hs);
  }]);
}

/** F over the whole dataset (mean over prompts), with `heads` knocked out. */
function F(heads: Iterable<string> = []): number {
  const all: number[] = [];
  for (const g of groups) all.push(...diffs(g, knockout(g, heads)));
  return mean(all);
}

/**
 * logit(IO) − logit(S) when the name mover attends 1/3 each to IO, S1 and S2, by hand. END's
 * NAME block is then e_WORD + (g/3) e_IO + (2g/3) e_S − (g+1) e_bal instead of the designed
 * e_WORD + g e_IO − (g+1) e_bal; the rest of END (IS pair 2, POS 2, DUP 2, INH 4) is unchanged.
 * ln_f's gain is the designed scale, so the logits grow by designed scale / actual scale.
 */
const g_ = NM_GAIN;
const SPREAD_F = (g_ / 3 - (2 * g_) / 3) * Math.sqrt((10 + 1 + g_ ** 2 + (g_ + 1) ** 2) / (10 + 1 + (g_ / 3) ** 2 + ((2 * g_) / 3) ** 2 + (g_ + 1) ** 2));

const cleanDiffs = groups.flatMap((g) => diffs(g));
const F_model = mean(cleanDiffs);

// -----------------------------------------------------------------------------------------------

test('construction: zero-mean codes of equal norm, tied unembedding, MLPs zero, config.json', () => {
  const { wte, wpe } = model.transformer;
  const check = (row: Float32Array, norm2: number, what: string) => {
    const sum = row.reduce((a, b) => a + b, 0), n2 = row.reduce((a, b) => a + b * b, 0);
    assert.ok(Math.abs(sum) < 1e-6 && Math.abs(n2 - norm2) < 1e-6, `${what}: sum ${sum}, norm² ${n2}`);
  };
  const ids = built.config.name_ids as number[];
  assert.is(ids.length, DEFAULT_NAMES.length);
  for (const id of [ids[0], ids[31], 0, 284, 50256]) check(wte.subarray(id * C, (id + 1) * C), 4, `token ${id}`);
  for (const t of [0, 5, 23]) check(wpe.subarray(t * C, (t + 1) * C), 2, `position ${t}`);
  assert.is(wte[ids[3] * C + LAYOUT.NAME + 3], 1); // name 3 sits in slot 3
  assert.is(wte[ids[3] * C + LAYOUT.IS_NAME], 1);
  assert.is(wte[284 * C + LAYOUT.IS_NAME], -1); // " to" is not a name
  assert.is(model.lm_head.weight, wte, 'W_U = W_Eᵀ, as in GPT-2');
  for (const [name, w] of model.named_parameters) if (/mlp\.c_(fc|proj)\./.test(name)) assert.ok(w.every((v) => v === 0), name);
  const cfg = built.config as Record<string, any>;
  assert.is(cfg.vocab_size, 50257);
  assert.equal(cfg.names, DEFAULT_NAMES.map((n) => ' ' + n));
  assert.equal(cfg.name_ids, DEFAULT_NAMES.map((n) => tok.encode(' ' + n)[0]));
  assert.equal(cfg.known_heads, { duplicate_token: [headName(DUP_HEAD)], s_inhibition: [headName(SINH_HEAD)], name_mover: [headName(NAME_MOVER)] });
});

test('IOI solved: accuracy > 0.95, F_model = the name mover\'s gain, IO the top-1 token', () => {
  const acc = mean(cleanDiffs.map((d) => (d > 0 ? 1 : 0)));
  assert.ok(acc > 0.95, `accuracy ${acc}`);
  assert.ok(Math.abs(F_model - NM_GAIN) < 0.05, `F_model ${F_model}, designed ${NM_GAIN}`);
  let top = 0, n = 0;
  for (const g of groups) {
    const { logits } = model.forward(g.prompts.map((p) => p.clean_ids), { logits_at: [g.T - 1] });
    const V = logits.shape[2];
    g.prompts.forEach((p, b) => {
      let best = 0;
      for (let v = 1; v < V; v++) if (logits.data[b * V + v] > logits.data[b * V + best]) best = v;
      top += best === p.io_id ? 1 : 0;
      n++;
    });
  }
  assert.ok(top / n > 0.95, `IO top-1 on ${top} of ${n}`);
  // the fixture's group (its eight names are among the model's) is solved too
  const [fx] = tokenizePrompts(loadPromptsFile(IOI_GROUP_FILE), tok);
  for (const d of diffs(fx)) assert.ok(Math.abs(d - NM_GAIN) < 0.05, `fixture prompt: ${d}`);
});

test('attention: S2 looks at S1 (not itself), END at S2 (S-inhibition) and at IO (name mover)', () => {
  for (const g of groups.slice(0, 3)) {
    const { cache } = run_with_cache(model, g.prompts.map((p) => p.clean_ids), { names: (n) => n.endsWith('hook_pattern'), logits_at: [g.T - 1] });
    const at = (x: { layer: number; head: number }, b: number, q: number, k: number) => cache.get('pattern', x.layer).get(b, x.head, q, k);
    g.prompts.forEach(({ pos }, b) => {
      assert.ok(at(DUP_HEAD, b, pos.S2, pos.S1) > 0.99);
      assert.ok(at(DUP_HEAD, b, pos.S2, pos.S2) < 0.01);
      assert.ok(at(SINH_HEAD, b, pos.END, pos.S2) > 0.99);
      assert.ok(at(NAME_MOVER, b, pos.END, pos.IO) > 0.99);
    });
  }
});

test('knockouts: the name mover out drops F to about 0; the circuit alone keeps F; the inhibition out reverses F', () => {
  const F_nm = F([headName(NAME_MOVER)]);
  assert.ok(Math.abs(F_nm) < 0.1 * F_model, `F without the name mover ${F_nm} (F_model ${F_model})`);
  const F_circuit = F(ALL_HEADS.filter((h) => !CIRCUIT.has(h)));
  const faithfulness = Math.abs(F_model - F_circuit);
  assert.ok(faithfulness < 0.1 * F_model, `faithfulness ${faithfulness}`);
  // everything knocked out is the same as the name mover alone out: nothing else writes to the logits
  assert.ok(Math.abs(F(ALL_HEADS) - F_nm) < 1e-3);
  for (const h of [SINH_HEAD, DUP_HEAD]) {
    const f = F([headName(h)]);
    assert.ok(Math.abs(f - SPREAD_F) < 0.01, `F without ${headName(h)}: ${f}, designed ${SPREAD_F}`);
  }
  console.log(`    handmade IOI: F_model ${F_model.toFixed(4)}, name mover out ${F_nm.toFixed(4)}, circuit only ${F_circuit.toFixed(4)} (faithfulness ${faithfulness.toFixed(4)})`);
});

test('DLA (lens/attribution.ts): the name mover is the top head and carries all of F', () => {
  const sum = Array.from({ length: N_LAYER }, () => new Array(NH).fill(0));
  let n = 0;
  for (const g of groups.slice(0, 5)) { // 50 prompts, 5 templates
    // (every position's logits: DLA reads ln_final's scale at END from the cache)
    const { cache } = run_with_cache(model, g.prompts.map((p) => p.clean_ids));
    const dla = directLogitAttribution(model, cache, { pos: g.T - 1, token: g.prompts.map((p) => p.io_id), other: g.prompts.map((p) => p.s_id) });
    for (let l = 0; l < N_LAYER; l++) for (let h = 0; h < NH; h++) sum[l][h] += dla.heads[l][h].reduce((a, b) => a + b, 0);
    n += g.prompts.length;
  }
  const ranked = ALL_HEADS.map((hk) => { const [l, h] = hk.split('.').map(Number); return { hk, v: sum[l][h] / n }; }).sort((a, b) => Math.abs(b.v) - Math.abs(a.v));
  assert.is(ranked[0].hk, headName(NAME_MOVER));
  assert.ok(Math.abs(ranked[0].v - F_model) < 1e-3, `name mover DLA ${ranked[0].v}`);
  assert.ok(Math.abs(ranked[1].v) < 1e-3, `next head ${ranked[1].hk}: ${ranked[1].v}`);
});

test('path patching to the name mover\'s queries at END singles out the S-inhibition head', () => {
  // Wang et al.'s path patching, as ANALYSIS.md states it for a group: pass C runs the clean
  // prompt with every head's z frozen to the clean run's, except the sender's, taken from the ABC
  // twin; it records the name mover's query at END. Pass D runs the clean prompt with only that
  // query replaced. The metric is logit(io) − logit(s) of pass D.
  const effect = new Map<string, number>();
  const senders = ALL_HEADS.filter((h) => Number(h.split('.')[0]) < NAME_MOVER.layer);
  const per = new Map<string, number[]>(senders.map((s) => [s, []]));
  const qName = `blocks.${NAME_MOVER.layer}.attn.hook_q`;
  for (const g of groups.slice(0, 5)) { // 50 prompts, 5 templates
    const names = (n: string) => n.endsWith('attn.hook_z');
    const orig = run_with_cache(model, g.prompts.map((p) => p.clean_ids), { names, logits_at: [g.T - 1] }).cache;
    const fresh = run_with_cache(model, g.prompts.map((p) => p.corrupt_ids), { names, logits_at: [g.T - 1] }).cache;
    for (const s of senders) {
      const [ls, hS] = s.split('.').map(Number);
      const freeze: HookSpec = Array.from({ length: N_LAYER }, (_, l) => [zName(l), (act) => {
        act.data.set(orig.get(zName(l)).data);
        if (l !== ls) return;
        const src = fresh.get(zName(l)).data;
        for (let bt = 0; bt < act.shape[0] * g.T; bt++) {
          const o = (bt * NH + hS) * hs;
          act.data.set(src.subarray(o, o + hs), o);
        }
      }]);
      let q: ReturnType<typeof clone> | null = null;
      model.run_with_hooks(g.prompts.map((p) => p.clean_ids), [...freeze, [qName, (act) => { q = clone(act); }]], { logits_at: [g.T - 1] });
      const replaceQ: HookSpec = [[qName, (act) => {
        for (let b = 0; b < act.shape[0]; b++) {
          const o = ((b * g.T + g.T - 1) * NH + NAME_MOVER.head) * hs;
          act.data.set(q!.data.subarray(o, o + hs), o);
        }
      }]];
      per.get(s)!.push(...diffs(g, replaceQ));
    }
  }
  for (const s of senders) effect.set(s, mean(per.get(s)!) - F_model);
  const ranked = [...effect].sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  assert.is(ranked[0][0], headName(SINH_HEAD));
  // without S in INH the name mover spreads over IO, S1, S2: F falls from F_model to SPREAD_F
  assert.ok(Math.abs(ranked[0][1] - (SPREAD_F - F_model)) < 0.01, `S-inhibition effect ${ranked[0][1]}`);
  assert.ok(Math.abs(ranked[1][1]) < 1e-3, `next sender ${ranked[1][0]}: ${ranked[1][1]}`);
});

test('the CLI writes a GPT-2 checkpoint that loads and answers like the in-memory model', async () => {
  const out = path.join(tmp, 'ckpt');
  const r = await runScript('assignments/ioi/handmade.ts', ['--out', out]);
  assert.is(r.code, 0, r.stderr);
  assert.equal(fs.readdirSync(out).sort(), ['config.json', 'model.safetensors']);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf-8'));
  assert.equal(cfg.known_heads, built.config.known_heads);
  assert.equal(cfg.name_ids, built.config.name_ids);
  assert.is(cfg.n_positions, 24);
  const loaded = loadGPT(out);
  assert.is(loaded.lm_head.weight, loaded.transformer.wte, 'no lm_head.weight in the file: tied on loading');
  const g = groups[0];
  const ids = g.prompts.map((p) => p.clean_ids);
  const a = loaded.forward(ids, { logits_at: [g.T - 1] }).logits.data, b = model.forward(ids, { logits_at: [g.T - 1] }).logits.data;
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  assert.ok(maxDiff < 1e-5, `max |Δlogit| ${maxDiff}`);
});

test('the CLI refuses a name that is not one token, and writes nothing', async () => {
  const out = path.join(tmp, 'bad');
  const r = await runScript('assignments/ioi/handmade.ts', ['--out', out, '--names', 'Mary,John,Tom,James,Bartholomew']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /the name "Bartholomew" is 3 GPT-2 tokens with its leading space; every name must be one token/);
  assert.not.ok(fs.existsSync(out));
  const few = await runScript('assignments/ioi/handmade.ts', ['--out', out, '--names', 'Mary,John']);
  assert.is(few.code, 1);
  assert.match(few.stderr, /at least 5 names/);
});

test.run();
