/**
 * Running some rows only (mingpt/model.ts: KVCache, Rows): a run that continues a key/value cache,
 * or a block that runs chosen rows of each sequence, computes the same numbers as the ordinary
 * forward pass at those rows. The arithmetic per row is the same (every kernel treats rows one by
 * one; attention reads the same keys and values), so the comparisons are exact (===), not within
 * a tolerance. Generation with and without the cache is checked against the PyTorch reference's
 * greedy tokens (test/fixtures/gpt2-tiny/reference.json).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ndarray from 'ndarray';
import { KVCache, Rows, pickPositions } from '../mingpt/model.ts';
import { RNG } from '../mingpt/utils.ts';
import { loadGPT } from '../io/load.ts';
import { run_with_cache } from '../lens/activation_cache.ts';
import { FIXTURE, REFERENCE } from './helpers.ts';

const reference = REFERENCE;
const model = loadGPT(FIXTURE);
const { n_layer: L, n_embd: C, n_head: nh, vocab_size: V } = model.config;
const c0 = reference.cases[0];

/** Two sequences of T token ids (the fixture's clean and corrupted texts, lengthened). */
const batch = (T: number): number[][] => [c0.clean_ids, c0.corrupt_ids].map((ids: number[]) => Array.from({ length: T }, (_, t) => ids[t % ids.length]));

/** Bit-for-bit equality of two float arrays, naming the first difference. */
function same(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) assert.unreachable(`${what}: [${i}] ${a[i]} vs ${b[i]}`);
}

test('greedy generation with the key/value cache gives the reference tokens, as without it', () => {
  for (const c of reference.cases) {
    const plain = model.generate([c.clean_ids], 10, 1.0, false);
    const cached = model.generate([c.clean_ids], 10, 1.0, false, null, undefined, true);
    assert.equal(cached[0].slice(c.clean_ids.length), c.clean_greedy10, 'cached');
    assert.equal(plain, cached);
  }
});

test('sampling with the cache draws the same tokens, also past block_size (the context cropped, the cache started over)', () => {
  // block_size is 64: 58 prompt tokens + 12 new ones cross it
  const prompt = batch(58);
  const a = model.generate(prompt, 12, 0.9, true, 40, new RNG(7));
  const b = model.generate(prompt, 12, 0.9, true, 40, new RNG(7), true);
  assert.equal(b, a);
  assert.is(b[0].length, 70);
});

test('a run continuing a cache equals the full run at its rows: logits, residual, hooks (TransformerLens shapes), bit for bit', () => {
  const T = 13, t0 = 9, ids = batch(T);
  const full = run_with_cache(model, ids);
  const past = new KVCache(model.config, 2);
  model.forward(ids.map((r) => r.slice(0, t0)), { past_kv_cache: past, logits_at: [] });
  assert.is(past.length, t0);
  const part = run_with_cache(model, ids.map((r) => r.slice(t0)), { past_kv_cache: past });
  assert.is(past.length, T, 'the cache grew by the rows run');
  const rows = Array.from({ length: T - t0 }, (_, i) => t0 + i);
  same(part.logits.data, pickPositions(full.logits.data, 2, T, V, rows), 'logits');
  same(part.residual.data, pickPositions(full.residual.data, 2, T, C, rows), 'residual');
  for (let l = 0; l < L; l++) {
    for (const name of ['resid_pre', 'k', 'z', 'mlp_out', 'resid_post']) {
      const a = part.cache.get(name, l), b = full.cache.get(name, l);
      const width = a.size / (2 * (T - t0));
      assert.equal(a.shape.slice(0, 2), [2, T - t0], `${name} ${l}: shape`);
      same(a.data, pickPositions(b.data, 2, T, width, rows), `${name} ${l}`);
    }
    // the pattern: the run's queries (rows) against every key (columns)
    const p = part.cache.get('pattern', l), q = full.cache.get('pattern', l);
    assert.equal(p.shape, [2, nh, T - t0, T], `pattern ${l}: shape`);
    same(p.data, pickPositions(q.data, 2 * nh, T, T, rows), `pattern ${l}`);
  }
});

test('a frozen prefix serves a batch of a multiple of its sequences, and does not grow', () => {
  const T = 11, t0 = 6, ids = batch(T);
  const past = new KVCache(model.config, 2);
  model.forward(ids, { past_kv_cache: past, logits_at: [] });
  const prefix = past.prefix(t0);
  const full = model.forward(ids, { logits_at: [T - 1] }).logits.data;
  const tail = ids.map((r) => r.slice(t0));
  const res = model.forward([...tail, ...tail, ...tail], { past_kv_cache: prefix, logits_at: [T - t0 - 1] }).logits.data;
  for (let k = 0; k < 3; k++) same(res.subarray(2 * k * V, 2 * (k + 1) * V), full, `copy ${k}`);
  assert.is(prefix.length, t0);
  assert.is(past.length, T, 'the cache the prefix views is untouched');
});

test('blocks running different rows per sequence (ragged), and only the last row out of the last block, equal the full run', () => {
  // three runs from a middle layer: rows 2…, 5…, 10… of one sequence, against its own cached keys and values
  const T = 12, ids = batch(T)[0], start = 1;
  const full = run_with_cache(model, [ids], { names: (n) => n.endsWith('hook_resid_pre') || n.endsWith('hook_resid_post') });
  const past = new KVCache(model.config, 1);
  model.forward([ids], { past_kv_cache: past, logits_at: [] });
  past.freeze();
  const from = [2, 5, 10];
  const rows = Rows.suffix(from, T);
  const resid = full.cache.get('resid_pre', start).data;
  let x: Float32Array = new Float32Array(rows.count * C);
  from.forEach((f, b) => x.set(resid.subarray(f * C, T * C), rows.start[b] * C));
  for (let l = start; l < L; l++) {
    const h = model.transformer.h[l];
    if (l < L - 1) {
      x = h.forward(x, rows, past);
      const want = full.cache.get('resid_post', l).data;
      from.forEach((f, b) => same(x.subarray(rows.start[b] * C, (rows.start[b] + T - f) * C), want.subarray(f * C, T * C), `block ${l}, run ${b}`));
    } else {
      x = h.forward(x, rows, past, rows.last(1)); // (3, C): position T − 1 of each run
      const want = full.cache.get('resid_post', l).data.subarray((T - 1) * C, T * C);
      for (let b = 0; b < 3; b++) same(x.subarray(b * C, (b + 1) * C), want, `last block, run ${b}`);
    }
  }
  assert.throws(() => model.hooks.with([[() => true, () => undefined]], () => model.transformer.h[L - 1].forward(new Float32Array(rows.count * C), rows, past)), /hooks/);
});

test('bad uses of a cache are refused', () => {
  const past = new KVCache(model.config, 1);
  assert.throws(() => model.forward(batch(4), { past_kv_cache: past }), /cannot serve a batch of 2/);
  assert.throws(() => model.forward([c0.clean_ids], { past_kv_cache: past, save: true }), /save and patch/);
  assert.throws(() => model.forward(null, { start_at_layer: 1, residual: ndarray(new Float32Array(3 * C), [1, 3, C]), past_kv_cache: past }), /every block/);
  assert.throws(() => past.prefix(1), /holds 0 positions/);
  // the backward pass reads whole runs: a run continuing a cache does not record for it
  assert.throws(() => model.forward([c0.clean_ids], { past_kv_cache: past, grad: true }), /cannot record for backward/);
  assert.throws(() => model.forward([c0.clean_ids], { past_kv_cache: past, targets: [c0.clean_ids] }), /cannot record for backward/);
  assert.is(past.length, 0, 'a refused run leaves the cache as it was');
  // rows after position 0, or fewer rows out, need the earlier positions' keys and values
  const rows = Rows.suffix([2], 5);
  assert.throws(() => model.transformer.h[0].forward(new Float32Array(3 * C), rows, null), /KVCache/);
  assert.throws(() => model.transformer.h[0].forward(new Float32Array(5 * C), Rows.suffix([0], 5), null, Rows.suffix([0], 5).last(1)), /KVCache/);
});

test.run();
