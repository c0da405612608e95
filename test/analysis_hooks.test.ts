/**
 * Every hook point of the forward pass against the independent PyTorch run in
 * test/fixtures/gpt2-tiny/analysis.json (`hooks`: the clean text of the first case, batch of one;
 * definitions in ANALYSIS.md). Tolerance 1e-5 relative to max(1, |value|), tighter than the
 * fixture's stated bounds (1e-4 on patterns, 1e-3 elsewhere): float32 on both sides, agreeing to a
 * few 1e-6. Masked attention scores are stored as null (−∞).
 * Also: forward from a middle layer, logits at chosen positions, the cache export.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NonFiniteError } from '../mingpt/model.ts';
import { openSafetensors } from '../io/safetensors.ts';
import { loadGPT } from '../io/load.ts';
import { run_with_cache } from '../lens/activation_cache.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(here, 'fixtures', 'gpt2-tiny');
const analysis = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'analysis.json'), 'utf8'));
const model = loadGPT(FIXTURE);
const ids: number[] = analysis.case.clean_ids;
const T = ids.length;

/** nested JSON arrays -> flat numbers (null -> -Infinity) and shape */
function flat(x: unknown): { data: number[]; shape: number[] } {
  const shape: number[] = [];
  let y: unknown = x;
  while (Array.isArray(y)) { shape.push(y.length); y = y[0]; }
  const data: number[] = [];
  const walk = (v: unknown) => { if (Array.isArray(v)) v.forEach(walk); else data.push(v === null ? -Infinity : (v as number)); };
  walk(x);
  return { data, shape };
}

const { cache } = run_with_cache(model, ids);

test('the model has exactly the fixture\'s hook points, in the order a run reaches them', () => {
  assert.equal(model.hook_names(), Object.keys(analysis.hooks));
});

for (const name of Object.keys(analysis.hooks)) {
  const tol = 1e-5;
  test(`${name} equals the PyTorch value (${tol})`, () => {
    const want = flat(analysis.hooks[name]);
    const got = cache.get(name);
    assert.equal(got.shape, want.shape, 'shape');
    let worst = 0, at = -1;
    for (let i = 0; i < want.data.length; i++) {
      const w = want.data[i], g = got.data[i];
      if (w === -Infinity) { assert.is(g, -Infinity, `${name}[${i}] should be masked (−∞)`); continue; }
      const err = Math.abs(g - w) / Math.max(1, Math.abs(w));
      if (!(err <= worst)) { worst = err; at = i; }
    }
    assert.ok(worst <= tol, `${name}: largest relative error ${worst} at flat index ${at}`);
  });
}

test('forward from a middle layer, with the cached residual stream, equals the full forward', () => {
  const full = model.forward(ids).logits.data;
  for (const l of [0, 1, 2, 3]) {
    const residual = l === 3 ? cache.get('resid_post', 2) : cache.get('resid_pre', l);
    const part = model.forward(null, { start_at_layer: l, residual }).logits.data;
    let worst = 0;
    for (let i = 0; i < full.length; i++) worst = Math.max(worst, Math.abs(part[i] - full[i]));
    assert.ok(worst <= 1e-5, `from layer ${l}: ${worst}`);
  }
});

test('stop_at_layer returns the residual stream entering that block, and no logits', () => {
  const r = model.forward(ids, { stop_at_layer: 2 });
  assert.equal(r.logits.shape, [1, 0, 50257]);
  assert.equal(Array.from(r.residual.data), Array.from(cache.get('resid_pre', 2).data));
});

test('logits_at computes the chosen positions only, equal to the full logits there', () => {
  const V = 50257;
  const full = model.forward(ids).logits.data;
  const some = model.forward(ids, { logits_at: [T - 1, 3] });
  assert.equal(some.logits.shape, [1, 2, V]);
  assert.equal(Array.from(some.logits.data.subarray(0, V)), Array.from(full.subarray((T - 1) * V, T * V)));
  assert.equal(Array.from(some.logits.data.subarray(V)), Array.from(full.subarray(3 * V, 4 * V)));
});

test('a non-finite value stops the run and names the first hook point where it appeared', () => {
  assert.throws(
    () => model.run_with_hooks(ids, [['blocks.1.hook_mlp_out', (a) => { a.data[5] = NaN; }]]),
    (e: Error) => e instanceof NonFiniteError && e.message.includes('blocks.1.hook_mlp_out'),
  );
  assert.throws(
    () => model.run_with_hooks(ids, [['blocks.0.ln1.hook_scale', (a) => { a.data[0] = 0; }]]),
    (e: Error) => e instanceof NonFiniteError && e.message.includes('blocks.0.ln1.hook_normalized'),
  );
});

test('the cache exported to safetensors reads back equal, tensor names = hook names', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-'));
  try {
    const file = path.join(dir, 'clean.safetensors');
    cache.save(file);
    const st = openSafetensors(file);
    try {
      assert.equal([...st.tensors.keys()], cache.keys());
      for (const name of cache.keys()) {
        const a = cache.get(name);
        assert.equal(st.tensors.get(name)!.shape, a.shape);
        const back = new Float32Array(a.size);
        st.readF32(name, back);
        assert.equal(Array.from(back), Array.from(a.data), name);
      }
    } finally { st.close(); }
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('cache shorthand names resolve like TransformerLens\'s get_act_name', () => {
  assert.is(cache.get('resid_post', 1), cache.get('blocks.1.hook_resid_post'));
  assert.is(cache.get('pattern', 0), cache.get('blocks.0.attn.hook_pattern'));
  assert.is(cache.get('scale', 2, 'ln2'), cache.get('blocks.2.ln2.hook_scale'));
  assert.is(cache.get('scale'), cache.get('ln_final.hook_scale'));
  assert.is(cache.get('post', 1), cache.get('blocks.1.mlp.hook_post'));
  assert.throws(() => cache.get('nonsense', 1), /unknown activation name/);
});

test.run();
