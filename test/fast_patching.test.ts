/**
 * sweep/fast.ts: the fast engine gives the reference path's matrix.
 *
 * The expected numbers come from the readable path (referencePatchingSweep: one full forward with
 * the save/patch flags per cell), itself checked against the PyTorch fixture in model.test.ts;
 * on the fixture model they are also compared with PyTorch's matrix directly. The fast engine
 * does the same arithmetic on the rows it computes (the model's own blocks, the corrupted run's
 * keys and values for the rest, and the two logits on the vocabulary projection's kernel), so it
 * must equal the reference path exactly; against PyTorch (float32 on another machine) both agree
 * to 3.2e-6, held to FLOAT32_TOL (test/helpers.ts). Cells the engine never computes are exact copies too.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT } from '../mingpt/model.ts';
import { referencePatchingSweep, type PatchingInput, type PatchingResult } from '../sweep/sweep.ts';
import { patchingSweep } from '../sweep/engines.ts';
import { fastPatchingSweep } from '../sweep/fast.ts';
import { RNG } from '../mingpt/utils.ts';
import { loadGPT } from '../io/load.ts';
import { FIXTURE, FLOAT32_TOL, REFERENCE, close, closeAll } from './helpers.ts';

const reference = REFERENCE;
const fixtureModel = loadGPT(FIXTURE);

/** A GPT with minGPT's random init from a fixed seed: any shape, no checkpoint needed. */
function randomModel(shape: { n_layer: number; n_head: number; n_embd: number; vocab_size: number; block_size: number }, seed: number, tie_lm_head = true): GPT {
  const config = GPT.get_default_config();
  config.model_type = null;
  config.merge_from_dict(shape);
  const model = new GPT(config, { rng: new RNG(seed), tie_lm_head });
  // minGPT's init gives zero biases and unit layer-norm gains; random ones exercise more of the code
  const rng = new RNG(seed + 1);
  for (const [name, w] of model.named_parameters) {
    if (name.endsWith('.bias') || /ln_\w+\.weight$/.test(name)) for (let i = 0; i < w.length; i++) w[i] += 0.1 * rng.randn();
  }
  return model;
}

/** Two texts of T tokens that agree on positions before `firstDiff` and differ at some after. */
function randomInput(V: number, T: number, firstDiff: number, seed: number): PatchingInput {
  const rng = new RNG(seed);
  const clean_ids = Array.from({ length: T }, () => rng.randint(0, V));
  const corrupt_ids = clean_ids.map((id, t) => (t === firstDiff || (t > firstDiff && rng.random() < 0.3) ? (id + 1 + rng.randint(0, V - 1)) % V : id));
  return { clean_ids, corrupt_ids, clean_token_id: rng.randint(0, V), corrupt_token_id: rng.randint(0, V) };
}

/** The fast result equals the reference path's, bit for bit. */
function assertSame(got: PatchingResult, want: PatchingResult, what: string): void {
  assert.equal(got.matrix, want.matrix, `${what}: matrix`);
  assert.ok(got.clean_logit_diff === want.clean_logit_diff, `${what}: clean_logit_diff ${got.clean_logit_diff} vs ${want.clean_logit_diff}`);
  assert.ok(got.corrupt_logit_diff === want.corrupt_logit_diff, `${what}: corrupt_logit_diff ${got.corrupt_logit_diff} vs ${want.corrupt_logit_diff}`);
  for (const key of ['clean_last_logits', 'corrupt_last_logits'] as const) assert.equal(Array.from(got[key]), Array.from(want[key]), `${what}: ${key}`);
}

/** The cells the engine fills in without computing: exact copies of the base runs' differences. */
function assertFreeCellsExact(r: PatchingResult, input: PatchingInput, what: string): void {
  const L = r.matrix.length, T = input.clean_ids.length;
  let firstDiff = 0;
  while (firstDiff < T && input.clean_ids[firstDiff] === input.corrupt_ids[firstDiff]) firstDiff++;
  for (let l = 0; l < L; l++) {
    for (let p = 0; p < firstDiff; p++) assert.ok(r.matrix[l][p] === r.corrupt_logit_diff, `${what}: matrix[${l}][${p}] (texts agree so far) is ${r.matrix[l][p]}, not exactly ${r.corrupt_logit_diff}`);
  }
  for (let p = firstDiff; p < T - 1; p++) assert.ok(r.matrix[L - 1][p] === r.corrupt_logit_diff, `${what}: last layer, position ${p} is not exactly the corrupted value`);
  if (firstDiff < T) assert.ok(r.matrix[L - 1][T - 1] === r.clean_logit_diff, `${what}: last layer, last position is not exactly the clean value`);
}

// -----------------------------------------------------------------------------------------------
// the fixture model (3 layers, 11 tokens)

reference.cases.forEach((c: any, i: number) => {
  const input: PatchingInput = { clean_ids: c.clean_ids, corrupt_ids: c.corrupt_ids, clean_token_id: c.clean_token_id, corrupt_token_id: c.corrupt_token_id };
  test(`fixture case ${i} (${c.corrupt.slice(0, 14)}…): fast matrix = reference path (exactly) = PyTorch (FLOAT32_TOL)`, async () => {
    const fast = await fastPatchingSweep(fixtureModel, input);
    assertSame(fast, referencePatchingSweep(fixtureModel, input), 'vs reference path');
    closeAll(fast.matrix, c.patch_matrix, FLOAT32_TOL, 'matrix vs PyTorch');
    close(fast.clean_logit_diff, c.clean_logit_diff, FLOAT32_TOL, 'clean_logit_diff vs PyTorch');
    close(fast.corrupt_logit_diff, c.corrupt_logit_diff, FLOAT32_TOL, 'corrupt_logit_diff vs PyTorch');
    assertFreeCellsExact(fast, input, `case ${i}`);
  });
});

test('fixture case 0: a patch at position 0, where both texts agree so far, returns exactly the corrupted value', async () => {
  const c = reference.cases[0];
  assert.is(c.clean_ids[0], c.corrupt_ids[0], 'the fixture texts share their first token');
  const r = await fastPatchingSweep(fixtureModel, c);
  for (let l = 0; l < r.matrix.length; l++) assert.ok(r.matrix[l][0] === r.corrupt_logit_diff, `layer ${l}`);
});

test("patchingSweep(..., { engine: 'fast' }) goes through the fast engine and agrees with engine: 'reference'", async () => {
  const c = reference.cases[1];
  const fast = await patchingSweep(fixtureModel, c, { engine: 'fast' });
  const ref = await patchingSweep(fixtureModel, c, { engine: 'reference' });
  assertSame(fast, ref, 'dispatch');
});

// -----------------------------------------------------------------------------------------------
// seeded random models: more layers than positions, and more positions than layers

const shapes = [
  { what: 'more layers than positions (L=7, T=4)', shape: { n_layer: 7, n_head: 2, n_embd: 16, vocab_size: 61, block_size: 16 }, T: 4, firstDiff: 1 },
  { what: 'more positions than layers (L=2, T=13)', shape: { n_layer: 2, n_head: 4, n_embd: 24, vocab_size: 97, block_size: 32 }, T: 13, firstDiff: 3 },
  { what: 'first token differs (L=4, T=9)', shape: { n_layer: 4, n_head: 3, n_embd: 12, vocab_size: 40, block_size: 9 }, T: 9, firstDiff: 0 },
  { what: 'one layer (L=1, T=5)', shape: { n_layer: 1, n_head: 1, n_embd: 8, vocab_size: 30, block_size: 8 }, T: 5, firstDiff: 2 },
  { what: 'one token (L=3, T=1)', shape: { n_layer: 3, n_head: 2, n_embd: 8, vocab_size: 30, block_size: 8 }, T: 1, firstDiff: 0 },
];
shapes.forEach(({ what, shape, T, firstDiff }, i) => {
  const model = randomModel(shape, 100 + i);
  const input = randomInput(shape.vocab_size, T, firstDiff, 200 + i);
  test(`random model, ${what}: fast matrix = reference path, free cells exact`, async () => {
    const fast = await fastPatchingSweep(model, input);
    assertSame(fast, referencePatchingSweep(model, input), what);
    assertFreeCellsExact(fast, input, what);
  });
});

test('a longer pair (T = 40, L = 3) whose batches of patched runs are split (more than 512 rows a layer): = reference path', async () => {
  const shape = { n_layer: 3, n_head: 2, n_embd: 16, vocab_size: 50, block_size: 48 };
  const model = randomModel(shape, 17);
  const input = randomInput(shape.vocab_size, 40, 1, 18); // 39 runs a layer, 780 rows
  assertSame(await fastPatchingSweep(model, input), referencePatchingSweep(model, input), 'T = 40');
});

test('random model with its own lm_head (not tied to wte): the two logits come from lm_head', async () => {
  const shape = { n_layer: 3, n_head: 2, n_embd: 16, vocab_size: 50, block_size: 12 };
  const model = randomModel(shape, 7, false);
  assert.ok(model.named_parameters.some(([n]) => n === 'lm_head.weight'));
  const input = randomInput(shape.vocab_size, 8, 2, 8);
  assertSame(await fastPatchingSweep(model, input), referencePatchingSweep(model, input), 'untied');
});

test('identical texts: every cell is exactly the corrupted value, which equals the clean one', async () => {
  const model = randomModel({ n_layer: 3, n_head: 2, n_embd: 16, vocab_size: 50, block_size: 12 }, 9);
  const ids = [3, 14, 15, 9, 26, 5];
  const r = await fastPatchingSweep(model, { clean_ids: ids, corrupt_ids: ids.slice(), clean_token_id: 1, corrupt_token_id: 2 });
  assert.ok(r.clean_logit_diff === r.corrupt_logit_diff);
  for (const row of r.matrix) for (const v of row) assert.ok(v === r.corrupt_logit_diff);
});

test('onProgress counts every cell once, in order, ending at layers × positions', async () => {
  const model = randomModel({ n_layer: 4, n_head: 2, n_embd: 16, vocab_size: 50, block_size: 16 }, 13);
  const input = randomInput(50, 7, 2, 14);
  const seen: Array<[number, number]> = [];
  await fastPatchingSweep(model, input, { onProgress: (done, total) => seen.push([done, total]) });
  assert.ok(seen.length >= 2, `called ${seen.length} times`);
  seen.forEach(([, total]) => assert.is(total, 4 * 7));
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i][0] > seen[i - 1][0], `not increasing at call ${i}`);
  assert.is(seen[seen.length - 1][0], 4 * 7);
});

test('bad input is refused before any work: different lengths, ids outside the vocabulary', async () => {
  const model = randomModel({ n_layer: 2, n_head: 1, n_embd: 8, vocab_size: 20, block_size: 8 }, 15);
  const ok: PatchingInput = { clean_ids: [1, 2, 3], corrupt_ids: [1, 4, 3], clean_token_id: 5, corrupt_token_id: 6 };
  const rejects = async (p: Promise<unknown>, text: string) => {
    try {
      await p;
    } catch (e) {
      assert.ok((e as Error).message.includes(text), (e as Error).message);
      return;
    }
    assert.unreachable(`expected an error mentioning ${text}`);
  };
  await rejects(fastPatchingSweep(model, { ...ok, corrupt_ids: [1, 4] }), 'same number of tokens');
  await rejects(fastPatchingSweep(model, { ...ok, corrupt_token_id: 20 }), 'outside the vocabulary');
});

test.run();
