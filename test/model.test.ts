/**
 * mingpt/model.ts against the PyTorch reference (test/fixtures/gpt2-tiny/reference.json, produced
 * by an independent PyTorch implementation: see test/fixtures/README.md), plus the hook mechanism.
 * Tests that need the real GPT-2 weights skip unless weights/gpt2 or the Hugging Face cache has them.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { GPT } from '../mingpt/model.ts';
import { BPETokenizer, tokenStrings } from '../mingpt/bpe.ts';
import { softmaxRows } from '../mingpt/kernels/js.ts';
import { zeroHook, patchHook } from '../mingpt/hooks.ts';
import { findInHFCache } from '../io/pretrained.ts';
import { set_seed } from '../mingpt/utils.ts';
import { openSafetensors, writeSafetensors, type TensorToWrite, type Dtype } from '../io/safetensors.ts';
import os from 'node:os';
import { loadGPT } from '../io/load.ts';
import { run_with_cache } from '../lens/activation_cache.ts';
import { run_with_patch } from '../lens/patching.ts';
import { FIXTURE, FLOAT32_TOL, REFERENCE, ROOT, close } from './helpers.ts';

const reference = REFERENCE;
const model = loadGPT(FIXTURE);
const bpe = new BPETokenizer();


const ref = suite('gpt2-tiny vs the PyTorch reference');

ref('config comes from config.json', () => {
  const c = model.config;
  assert.equal([c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.block_size], [3, 4, 32, 50257, 64]);
});

reference.cases.forEach((c: any, i: number) => {
  const label = `case ${i} (${c.corrupt.slice(0, 14)}…)`;

  ref(`${label}: token ids of both texts and the target tokens`, () => {
    assert.equal(bpe.encode(c.clean), c.clean_ids);
    assert.equal(bpe.encode(c.corrupt), c.corrupt_ids);
    assert.equal(bpe.encode(c.clean_token), [c.clean_token_id]);
    assert.equal(bpe.encode(c.corrupt_token), [c.corrupt_token_id]);
    assert.equal(tokenStrings(c.clean_ids), c.clean_tokens);
  });

  ref(`${label}: clean run's top-20 ids and probabilities (1e-6)`, () => {
    model.forward(c.clean_ids);
    const probs = model.lastLogits.slice();
    softmaxRows(probs, 1, probs.length);
    const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]).slice(0, 20);
    assert.equal(order, c.clean_top20.map((r: any) => r.id));
    c.clean_top20.forEach((r: any) => close(probs[r.id], r.prob, 1e-6, `P(${JSON.stringify(r.token)})`));
  });

  ref(`${label}: last-position logits and last block output`, () => {
    const { logits } = model.forward(c.clean_ids, { save: true });
    const T = c.clean_ids.length, V = 50257;
    c.clean_last_logits_first8.forEach((v: number, k: number) => close(logits.get(0, T - 1, k), v, FLOAT32_TOL, `logit[${k}]`));
    close(model.lastLogits.reduce((a, b) => a + b, 0), c.clean_last_logits_sum, FLOAT32_TOL, 'sum of the last logits');
    assert.is(model.lastLogits.length, V);
    c.clean_residual_last_layer_last_pos_first8.forEach((v: number, k: number) =>
      close(model.activations[2][T - 1][k], v, FLOAT32_TOL, `block 2 output [${k}]`));
  });

  ref(`${label}: clean and corrupted logit differences`, () => {
    model.forward(c.clean_ids);
    close(model.lastLogits[c.corrupt_token_id] - model.lastLogits[c.clean_token_id], c.clean_logit_diff, FLOAT32_TOL, 'clean diff');
    model.forward(c.corrupt_ids);
    close(model.lastLogits[c.corrupt_token_id] - model.lastLogits[c.clean_token_id], c.corrupt_logit_diff, FLOAT32_TOL, 'corrupt diff');
  });

  ref(`${label}: the whole patch matrix from the save/patch flags`, () => {
    model.forward(c.clean_ids, { save: true });
    for (let layer = 0; layer < 3; layer++) {
      for (let position = 0; position < c.clean_ids.length; position++) {
        model.forward(c.corrupt_ids, { patch: { layer, position } });
        const d = model.lastLogits[c.corrupt_token_id] - model.lastLogits[c.clean_token_id];
        close(d, c.patch_matrix[layer][position], FLOAT32_TOL, `matrix[${layer}][${position}]`);
      }
    }
  });

  ref(`${label}: greedy generation of 10 tokens equals the reference exactly`, () => {
    const out = model.generate([c.clean_ids], 10, 1.0, false);
    assert.equal(out[0].slice(c.clean_ids.length), c.clean_greedy10);
  });
});
ref.run();

// -----------------------------------------------------------------------------------------------
const hooks = suite('hook points');
const c0 = reference.cases[0];

hooks('patching blocks.l.hook_resid_post through a hook equals the save/patch flags', () => {
  const { cache } = run_with_cache(model, c0.clean_ids, { names: (n) => n.endsWith('hook_resid_post') });
  model.forward(c0.clean_ids, { save: true });
  for (const [layer, position] of [[0, 1], [1, 1], [2, 10], [1, 4]]) {
    const viaFlags = model.forward(c0.corrupt_ids, { patch: { layer, position } }).logits.data;
    const viaHook = run_with_patch(model, c0.corrupt_ids, cache, `blocks.${layer}.hook_resid_post`, { position }).logits.data;
    assert.equal(viaHook, viaFlags, `layer ${layer} position ${position}`);
  }
});

hooks('an identity hook on every point leaves the logits bit-identical', () => {
  const plain = model.forward(c0.clean_ids).logits.data;
  let calls = 0;
  const hooked = model.run_with_hooks(c0.clean_ids, [[() => true, () => { calls++; }]]).logits.data;
  assert.equal(hooked, plain);
  // 2 embedding points + 17 per block × 3 blocks + the final layer norm's two
  assert.is(calls, 2 + 17 * 3 + 2);
  assert.is(model.hook_names().length, 2 + 17 * 3 + 2);
});

hooks('a zeroing hook changes the logits, and only from its position on', () => {
  const T = c0.clean_ids.length, V = 50257;
  const plain = model.forward(c0.clean_ids).logits.data;
  const ablated = model.run_with_hooks(c0.clean_ids, [['blocks.1.hook_mlp_out', zeroHook({ position: 5 })]]).logits.data;
  for (let t = 0; t < T; t++) {
    const same = plain.subarray(t * V, (t + 1) * V).every((v, i) => v === ablated[t * V + i]);
    assert.is(same, t < 5, `position ${t} should ${t < 5 ? 'be unchanged' : 'change'}`);
  }
});

hooks('run_with_cache gives every point with its documented shape; patterns are causal distributions', () => {
  const T = c0.clean_ids.length;
  const { cache } = run_with_cache(model, [c0.clean_ids, c0.corrupt_ids]);
  assert.equal(cache.get('hook_embed')!.shape, [2, T, 32]);
  assert.equal(cache.get('blocks.0.attn.hook_pattern')!.shape, [2, 4, T, T]);
  assert.equal(cache.get('blocks.0.attn.hook_z')!.shape, [2, T, 4, 8]);
  assert.equal(cache.get('blocks.2.mlp.hook_post')!.shape, [2, T, 128]);
  assert.equal(cache.get('ln_final.hook_scale')!.shape, [2, T, 1]);
  assert.equal(cache.get('blocks.1.attn.hook_q')!.shape, [2, T, 4, 8]);
  assert.equal(cache.get('blocks.1.attn.hook_attn_scores')!.shape, [2, 4, T, T]);
  assert.equal(cache.get('blocks.1.mlp.hook_pre')!.shape, [2, T, 128]);
  assert.equal(cache.keys(), model.hook_names());
  const p = cache.get('blocks.1.attn.hook_pattern')!;
  for (let h = 0; h < 4; h++) for (let t = 0; t < T; t++) {
    let sum = 0;
    for (let t2 = 0; t2 < T; t2++) {
      if (t2 > t) assert.is(p.get(1, h, t, t2), 0);
      sum += p.get(1, h, t, t2);
    }
    close(sum, 1, 1e-6, `row sum head ${h} t ${t}`);
  }
});

hooks('per-head patching of hook_z touches only that head', () => {
  const { cache } = run_with_cache(model, c0.clean_ids, { names: ['blocks.0.attn.hook_z'] });
  const seen: Float32Array[] = [];
  model.run_with_hooks(c0.corrupt_ids, [
    ['blocks.0.attn.hook_z', patchHook(cache.get('blocks.0.attn.hook_z')!, { head: 2, position: [1, 4] })],
    ['blocks.0.attn.hook_z', (act) => { seen.push(act.data.slice()); }],
  ]);
  const clean = cache.get('blocks.0.attn.hook_z')!;
  const { cache: corrupt } = run_with_cache(model, c0.corrupt_ids, { names: ['blocks.0.attn.hook_z'] });
  const cor = corrupt.get('blocks.0.attn.hook_z')!;
  const T = c0.clean_ids.length;
  for (let t = 0; t < T; t++) for (let h = 0; h < 4; h++) for (let i = 0; i < 8; i++) {
    const fromClean = h === 2 && t >= 1 && t < 4;
    const expected = (fromClean ? clean : cor).get(0, t, h, i);
    assert.is(seen[0][((t * 4) + h) * 8 + i], expected, `t=${t} h=${h}`);
  }
});

hooks('hooks are detached after a run, also after a hook throws', () => {
  assert.throws(() => model.run_with_hooks(c0.clean_ids, [['blocks.0.hook_resid_pre', () => { throw new Error('boom'); }]]), /boom/);
  const a = model.forward(c0.clean_ids).logits.data;
  const b = model.forward(c0.clean_ids).logits.data;
  assert.equal(a, b);
});
hooks.run();

// -----------------------------------------------------------------------------------------------
const gpt = suite('GPT class');

gpt('get_default_config knows every minGPT model type; gpt2 has 124,439,808 parameters', () => {
  for (const t of ['openai-gpt', 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl', 'gopher-44m', 'gpt-mini', 'gpt-micro', 'gpt-nano'])
    assert.ok(GPT.MODEL_TYPES[t], t);
  const config = GPT.get_default_config();
  config.merge_from_dict({ model_type: 'gpt2', vocab_size: 50257, block_size: 1024 });
  const m = new GPT(config, { init: false });
  assert.is(m.num_params(), 124439808); // the parameter count Hugging Face reports for GPT-2 small
});

gpt('a batch of two sequences gives the same logits as two single runs', () => {
  const both = model.forward([c0.clean_ids, c0.corrupt_ids]).logits.data;
  const a = model.forward(c0.clean_ids).logits.data, b = model.forward(c0.corrupt_ids).logits.data;
  assert.equal(both.subarray(0, a.length), a);
  assert.equal(both.subarray(a.length), b);
});

gpt('loss is the mean of −log softmax at the targets, ignoring −1', () => {
  const ids = c0.clean_ids.slice(0, 6);
  const targets = [...c0.clean_ids.slice(1, 6), -1];
  const { logits, loss } = model.forward(ids, { targets });
  let sum = 0;
  for (let t = 0; t < 5; t++) {
    const row = logits.data.slice(t * 50257, (t + 1) * 50257);
    softmaxRows(row, 1, 50257);
    sum += -Math.log(row[targets[t]]);
  }
  close(loss!, sum / 5, 1e-6, 'loss');
});

gpt('sampling is reproducible under set_seed, and top_k = 1 sampling is greedy', () => {
  set_seed(7);
  const a = model.generate(c0.clean_ids, 5, 1.0, true);
  set_seed(7);
  const b = model.generate(c0.clean_ids, 5, 1.0, true);
  assert.equal(a, b);
  assert.equal(model.generate(c0.clean_ids, 5, 1.0, true, 1), model.generate(c0.clean_ids, 5));
});

gpt('bad input is refused with a message', () => {
  assert.throws(() => model.forward([]), /empty/);
  assert.throws(() => model.forward(new Array(65).fill(1)), /block size/);
  assert.throws(() => model.forward([50257]), /vocabulary/);
  assert.throws(() => model.forward([[1, 2], [3]]), /same length/);
  assert.throws(() => model.forward([1, 2], { patch: { layer: 0, position: 5 } }), /position 5/);
});
gpt.run();


// -----------------------------------------------------------------------------------------------
const load = suite('GPT.from_safetensors on other layouts of the same weights');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mingpt-model-test-'));
load.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Rewrite the fixture: rename keys, change dtype, add or drop tensors. */
function variant(dir: string, opts: { prefix?: boolean; lmHead?: boolean; dtype?: Dtype; extra?: string; dropBuffers?: boolean }) {
  const src = openSafetensors(path.join(FIXTURE, 'model.safetensors'));
  const out: Record<string, TensorToWrite> = {};
  for (const [name, info] of src.tensors) {
    if (opts.dropBuffers && name.endsWith('.attn.bias')) continue;
    const data = new Float32Array(info.shape.reduce((a, b) => a * b, 1));
    src.readF32(name, data);
    out[(opts.prefix ? 'transformer.' : '') + name] = { dtype: opts.dtype ?? 'F32', shape: info.shape, data };
    if (opts.lmHead && name === 'wte.weight') out['lm_head.weight'] = { dtype: opts.dtype ?? 'F32', shape: info.shape, data };
  }
  if (opts.extra) out[opts.extra] = { dtype: 'F32', shape: [32], data: new Float32Array(32) };
  src.close();
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), out);
  fs.copyFileSync(path.join(FIXTURE, 'config.json'), path.join(dir, 'config.json'));
  return dir;
}
const fixtureLogits = () => model.forward(c0.clean_ids).logits.data;

load('GPT2LMHeadModel layout (transformer. prefix, own lm_head.weight, no attn.bias) gives bit-identical logits', () => {
  const m = loadGPT(variant(path.join(tmp, 'lmhead'), { prefix: true, lmHead: true, dropBuffers: true }));
  assert.ok(m.lm_head.weight !== m.transformer.wte, 'a stored lm_head gets its own memory');
  assert.equal(m.forward(c0.clean_ids).logits.data, fixtureLogits());
});

load('the .safetensors file path works as well as its directory', () => {
  const m = loadGPT(path.join(FIXTURE, 'model.safetensors'));
  assert.equal(m.forward(c0.clean_ids).logits.data, fixtureLogits());
});

for (const [dtype, tol] of [['F16', 0.05], ['BF16', 0.3]] as const) {
  load(`an ${dtype} copy gives logits within ${tol} of the F32 ones (rounding of the stored weights)`, () => {
    const m = loadGPT(variant(path.join(tmp, dtype), { dtype }));
    const a = m.forward(c0.clean_ids).logits.data, b = fixtureLogits();
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.ok(worst > 0 && worst < tol, `largest difference ${worst}`);
  });
}

load('a checkpoint with a tensor the GPT-2 layout has no place for is refused, naming it', () => {
  const dir = variant(path.join(tmp, 'extra'), { extra: 'h.3.ln_1.weight' });
  assert.throws(() => loadGPT(dir), (e: Error) => e.message.includes('h.3.ln_1.weight') && e.message.includes(dir));
});
load.run();

// -----------------------------------------------------------------------------------------------
// The real GPT-2 small: facts from the assignment's table and from TransformerLens's acceptance test.
const real = suite('real GPT-2 small (skipped unless its weights are on this machine)');
const local = [path.join(ROOT, 'weights', 'gpt2')].find((d) => fs.existsSync(path.join(d, 'model.safetensors'))) ?? findInHFCache('gpt2');
const realTest = local ? real : real.skip;

realTest('the assignment\'s table: P(" was") = 0.1634, P(" Jones") = 0.1396 after the Michelle Jones sentence', () => {
  const m = loadGPT(local!);
  m.forward(bpe.encode('Michelle Jones was a top-notch student. Michelle'));
  const probs = m.lastLogits.slice();
  softmaxRows(probs, 1, probs.length);
  // the table gives four decimals: up to 5e-5 of rounding, plus the float32 error
  close(probs[373], 0.1634, 1e-4, 'P( was)');
  close(probs[5437], 0.1396, 1e-4, 'P( Jones)');
  close(probs[338], 0.0806, 1e-4, "P('s)");
  close(probs[2492], 0.0050, 1e-4, 'P( wasn)');
});

realTest('TransformerLens acceptance: loss on "<|endoftext|>Hello world!" is 5.331855773925781', () => {
  const m = loadGPT(local!);
  const ids = [50256, ...bpe.encode('Hello world!')];
  const { loss } = m.forward(ids.slice(0, -1), { targets: ids.slice(1) });
  // kept at 1e-4: not measured here, since GPT-2 small's weights are not on this machine
  close(loss!, 5.331855773925781, 1e-4, 'loss');
});
real.run();
