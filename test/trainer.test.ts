/**
 * minGPT's trainer (mingpt/trainer.ts), its optimizer and clipping (mingpt/optim.ts),
 * GPT.configure_optimizers, and saving a trained model (io/checkpoint_writer.ts):
 *   - `training` of test/fixtures/gpt2-tiny/gradients.json, an independent PyTorch run of three
 *     AdamW steps (GRADIENTS.md), through the conformance command's report;
 *   - AdamW and clip_grad_norm_ on numbers worked out by hand (in the comments);
 *   - configure_optimizers' decay group against the fixture's `decay` list;
 *   - the data loader, the callbacks and the stopping rules of Trainer.run();
 *   - a trained model saved as a GPT-2-layout checkpoint loads back bit for bit.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GPT } from '../mingpt/model.ts';
import { AdamW, clip_grad_norm_, type Parameter } from '../mingpt/optim.ts';
import { DataLoader, RandomSampler, Trainer, type Dataset } from '../mingpt/trainer.ts';
import { RNG } from '../mingpt/utils.ts';
import { loadGPT } from '../io/load.ts';
import { modelCheckpointFiles } from '../io/checkpoint_writer.ts';
import { OutputWriter } from '../io/output.ts';
import { trainingReport } from '../conformance/gradients.ts';
import { FIXTURE, FLOAT32_TOL, GRADIENTS as G, close, closeAll } from './helpers.ts';

const TR = G.training;

/** One parameter of one value, with a gradient we set by hand. */
const scalar = (name: string, value: number): Parameter => ({ name, data: Float32Array.of(value), grad: new Float32Array(1) });

test('AdamW, worked by hand: bias correction, decoupled weight decay, two parameters, two steps', () => {
  // lr 0.1, betas (0.9, 0.999), eps 1e-8; p decays (weight_decay 0.1), q does not
  const p = scalar('p', 1), q = scalar('q', -2);
  const opt = new AdamW([{ params: [p], weight_decay: 0.1 }, { params: [q], weight_decay: 0 }], { lr: 0.1, betas: [0.9, 0.999] });
  // step 1, gradient 0.5 for both:
  //   decay      p = 1 · (1 − 0.1 · 0.1) = 0.99;  q unchanged, −2
  //   moments    m = 0.1 · 0.5 = 0.05,  v = 0.001 · 0.25 = 0.00025
  //   corrected  m̂ = 0.05 / (1 − 0.9) = 0.5,  v̂ = 0.00025 / (1 − 0.999) = 0.25,  √v̂ = 0.5
  //   update     lr · m̂ / (√v̂ + eps) = 0.1 · 0.5 / 0.5 = 0.1 (Adam's first step is lr · sign(g))
  p.grad[0] = 0.5;
  q.grad[0] = 0.5;
  opt.step();
  close(p.data[0], 0.89, 1e-7, 'p after step 1: 0.99 − 0.1');
  close(q.data[0], -2.1, 1e-7, 'q after step 1: −2 − 0.1');
  // step 2, gradient −1 for both:
  //   decay      p = 0.89 · 0.99 = 0.8811
  //   moments    m = 0.9 · 0.05 + 0.1 · (−1) = −0.055,  v = 0.999 · 0.00025 + 0.001 · 1 = 0.00124975
  //   corrected  m̂ = −0.055 / (1 − 0.81) = −0.2894737,  v̂ = 0.00124975 / (1 − 0.998001) = 0.6251876,  √v̂ = 0.7906881
  //   update     0.1 · (−0.2894737) / 0.7906881 = −0.0366104
  p.grad[0] = -1;
  q.grad[0] = -1;
  opt.step();
  close(p.data[0], 0.8811 + 0.0366104, 1e-6, 'p after step 2');
  close(q.data[0], -2.1 + 0.0366104, 1e-6, 'q after step 2');
});

test('clip_grad_norm_, by hand: gradients (3, 0) and (0, 4) have norm 5; clipped to 1 they become (0.6, 0) and (0, 0.8)', () => {
  const a: Parameter = { name: 'a', data: new Float32Array(2), grad: Float32Array.of(3, 0) };
  const b: Parameter = { name: 'b', data: new Float32Array(2), grad: Float32Array.of(0, 4) };
  close(clip_grad_norm_([a, b], 10), 5, 1e-7, 'norm (under the limit)');
  assert.equal(Array.from(a.grad), [3, 0], 'a norm under max_norm leaves the gradients alone');
  close(clip_grad_norm_([a, b], 1), 5, 1e-7, 'norm before clipping');
  // the factor is 1 / (5 + 1e-6), as PyTorch's
  closeAll([...a.grad, ...b.grad], [0.6, 0, 0, 0.8], 1e-6, 'clipped');
});

test('configure_optimizers: the Linear weights and lm_head decay (gradients.json\'s list); biases, layer norms and embeddings do not', () => {
  const model = loadGPT(FIXTURE, { untie_lm_head: true });
  const opt = model.configure_optimizers({ learning_rate: 1e-3, betas: [0.9, 0.95], weight_decay: 0.1 });
  const names = (i: number) => opt.param_groups[i].params.map((p) => p.name.replace(/^transformer\./, ''));
  assert.equal(names(0).sort(), [...TR.decay].sort());
  assert.is(opt.param_groups[0].weight_decay, 0.1);
  assert.is(opt.param_groups[1].weight_decay, 0);
  const all = model.named_parameters.map(([n]) => n.replace(/^transformer\./, ''));
  assert.equal([...names(0), ...names(1)].sort(), all.sort(), 'every parameter in exactly one group');
  // tied, as GPT-2 ties them: lm_head is wte, an embedding, and does not decay
  const tied = loadGPT(FIXTURE).configure_optimizers({ learning_rate: 1e-3, betas: [0.9, 0.95], weight_decay: 0.1 });
  const tiedDecay = tied.param_groups[0].params.map((p) => p.name.replace(/^transformer\./, ''));
  assert.equal(tiedDecay.sort(), TR.decay.filter((n: string) => n !== 'lm_head.weight').sort());
});

test('training: three steps of minGPT\'s trainer on gradients.json\'s two windows, against PyTorch', async () => {
  const model = loadGPT(FIXTURE, { untie_lm_head: true });
  const r = await trainingReport(model, G.case) as Record<string, any>;
  assert.equal(r.sequences, TR.sequences, 'the windows at offsets 0 and 3 of the clean ids followed by the corrupt ids');
  for (const k of ['learning_rate', 'betas', 'weight_decay', 'grad_norm_clip', 'eps', 'steps', 'block_size']) assert.equal(r[k], TR[k], k);
  assert.equal(r.decay, TR.decay);
  // GRADIENTS.md asks for 1e-4 (losses) and 1e-3 (norms); the code gets ~2e-7 and ~2e-6
  closeAll(r.losses, TR.losses, FLOAT32_TOL, 'losses');
  closeAll(r.grad_norms_before_clip, TR.grad_norms_before_clip, FLOAT32_TOL, 'grad_norms_before_clip');
  close(r.final_loss, TR.final_loss, FLOAT32_TOL, 'final_loss');
  for (const [name, want] of Object.entries(TR.params_first8)) closeAll(r.params_first8[name], want, FLOAT32_TOL, `params_first8 ${name}`);
  assert.equal(Object.keys(r.param_norms).sort(), Object.keys(TR.param_norms).sort());
  for (const [name, want] of Object.entries(TR.param_norms) as Array<[string, number]>) {
    // c_attn.bias holds the key bias, whose gradient is zero in exact arithmetic (adding one
    // vector to every key shifts a query's scores by one constant, which softmax ignores); in
    // float32 it is rounding noise (~1e-9), and Adam divides by the noise's own size, so each
    // implementation's key bias wanders by ~5e-4 its own way. GRADIENTS.md's 1e-3 covers that;
    // every other parameter agrees to ~1e-6.
    close(r.param_norms[name], want, name.endsWith('attn.c_attn.bias') ? 1e-3 : FLOAT32_TOL, `param_norms ${name}`);
  }
});

test('the data loader: a seeded sampler draws with replacement; batches stack the examples it names', () => {
  const draws = [...RandomSampler(10, 200, new RNG(7))];
  assert.equal(draws, [...RandomSampler(10, 200, new RNG(7))], 'the same seed, the same draws');
  assert.ok(draws.every((i) => Number.isInteger(i) && i >= 0 && i < 10));
  assert.ok(new Set(draws.slice(0, 11)).size < 11, 'with replacement: 11 draws from 10 repeat one');
  const dataset: Dataset = { length: 10, get: (i) => [[i, i + 1], [i + 1, i + 2]] };
  const batches = [...DataLoader(dataset, [3, 1, 4, 1, 5][Symbol.iterator](), 2)];
  assert.equal(batches, [
    [[[3, 4], [1, 2]], [[4, 5], [2, 3]]],
    [[[4, 5], [1, 2]], [[5, 6], [2, 3]]],
    [[[5, 6]], [[6, 7]]], // the last batch holds what is left
  ]);
});

/** A two-layer model small enough to train in milliseconds. */
function tinyModel(seed: number): GPT {
  const cfg = GPT.get_default_config();
  cfg.model_type = null;
  cfg.merge_from_dict({ n_layer: 2, n_head: 2, n_embd: 8, vocab_size: 11, block_size: 6 });
  return new GPT(cfg, { tie_lm_head: false, rng: new RNG(seed) });
}
const counting: Dataset = { length: 4, get: (i) => [[i, i + 1, i + 2, i + 3, i + 4], [i + 1, i + 2, i + 3, i + 4, i + 5]] };

test('Trainer.run: callbacks after every step (add, set, in order), max_iters, a throwing callback stops the run', async () => {
  const cfg = Trainer.get_default_config();
  cfg.merge_from_dict({ max_iters: 5, batch_size: 3, learning_rate: 1e-2 });
  const trainer = new Trainer(cfg, tinyModel(1), counting);
  const seen: string[] = [];
  trainer.add_callback('on_batch_end', () => seen.push('replaced'));
  trainer.set_callback('on_batch_end', (t) => seen.push(`a${t.iter_num}`));
  trainer.add_callback('on_batch_end', (t) => seen.push(`b${t.iter_num}`));
  const losses: number[] = [];
  trainer.add_callback('on_batch_end', (t) => losses.push(t.loss));
  await trainer.run();
  assert.equal(seen, ['a0', 'b0', 'a1', 'b1', 'a2', 'b2', 'a3', 'b3', 'a4', 'b4']);
  assert.is(trainer.iter_num, 5);
  assert.ok(losses.every(Number.isFinite) && losses[4] < losses[0], `the loss falls: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  // a callback's error ends run() there, as a KeyboardInterrupt ends minGPT's
  cfg.max_iters = null;
  const stopping = new Trainer(cfg, tinyModel(1), counting);
  stopping.set_callback('on_batch_end', (t) => {
    if (t.iter_num === 2) throw new Error('stop');
  });
  const error = await stopping.run().then(() => null, (e: Error) => e);
  assert.is(error?.message, 'stop');
  assert.is(stopping.iter_num, 2);
});

test('a trained model saved as a GPT-2 checkpoint loads back bit for bit; an untrained untied head is not written', async () => {
  const model = tinyModel(2);
  const cfg = Trainer.get_default_config();
  cfg.merge_from_dict({ max_iters: 3, batch_size: 2, learning_rate: 1e-2 });
  await new Trainer(cfg, model, counting).run();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'trained-'));
  try {
    const save = (m: GPT, dir: string) => {
      const out = new OutputWriter(path.join(tmp, dir));
      for (const [name, data] of modelCheckpointFiles(m, { note: 'test' })) out.add(name, data);
      out.commit();
      return path.join(tmp, dir);
    };
    const back = loadGPT(save(model, 'trained'));
    assert.equal(back.named_parameters.map(([n, , s]) => [n, s]), model.named_parameters.map(([n, , s]) => [n, s]), 'the same parameters, lm_head its own');
    for (const [i, [name, p]] of model.named_parameters.entries()) assert.ok(Buffer.from(back.named_parameters[i][1].buffer, back.named_parameters[i][1].byteOffset, p.byteLength).equals(Buffer.from(p.buffer, p.byteOffset, p.byteLength)), name);
    const config = JSON.parse(fs.readFileSync(path.join(tmp, 'trained', 'config.json'), 'utf8'));
    assert.is(config.tie_word_embeddings, false);
    assert.is(config.note, 'test');
    // untied but never trained: the head equals wte, and the checkpoint ties them as GPT-2's does
    const fresh = loadGPT(FIXTURE, { untie_lm_head: true });
    const dir = save(fresh, 'untrained');
    assert.is(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).tie_word_embeddings, true);
    assert.not.ok(loadGPT(dir).named_parameters.some(([n]) => n === 'lm_head.weight'), 'no lm_head.weight in the file');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test.run();
