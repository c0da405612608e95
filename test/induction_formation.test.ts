/**
 * assignments/induction-formation/: the attention-only model keeps its MLPs at zero through
 * training, the data's spans repeat where they say, the phase change is read off a log built by
 * hand, and the command line trains, logs, saves a checkpoint the induction experiment loads, and
 * keeps what it has on Ctrl-C.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Trainer } from '../mingpt/trainer.ts';
import { set_seed } from '../mingpt/utils.ts';
import { loadGPT } from '../io/load.ts';
import { AttentionOnlyGPT, RecurringPairs, phaseChange, type LogEntry, type ModelShape } from '../assignments/induction-formation/formation.ts';
import { runScript } from './run_script.ts';
import { ROOT } from './helpers.ts';

const SMALL: ModelShape = { n_layer: 2, n_head: 2, n_embd: 16, lo: 0, hi: 12, seq_len: 4 };

test('AttentionOnlyGPT: the MLPs start at zero, are left out of the optimizer, and are still zero after training', async () => {
  const model = new AttentionOnlyGPT(SMALL, 3);
  const mlp = model.named_parameters.filter(([n]) => n.includes('.mlp.'));
  assert.is(mlp.length, 8, 'c_fc and c_proj, weight and bias, in two layers');
  const opt = model.configure_optimizers({ learning_rate: 1e-2, betas: [0.9, 0.95], weight_decay: 0.1 });
  const trained = opt.parameters().map((p) => p.name);
  assert.ok(!trained.some((n) => n.includes('.mlp.')), 'no MLP parameter in any group');
  assert.is(trained.length, model.named_parameters.length - mlp.length);
  const before = Float32Array.from(model.params);
  const cfg = Trainer.get_default_config();
  cfg.merge_from_dict({ max_iters: 3, batch_size: 4, learning_rate: 1e-2 });
  set_seed(0);
  const seq = [12, 1, 2, 3, 1, 2, 3, 5, 6];
  await new Trainer(cfg, model, { length: 1, get: () => [seq.slice(0, -1), seq.slice(1)] }).run();
  for (const [name, p] of mlp) assert.ok(p.every((v) => v === 0), `${name} is still zero`);
  // the MLP's output bias does get a gradient (the loss depends on it): only the optimizer's groups keep it still
  const bias = mlp.find(([n]) => n.endsWith('mlp.c_proj.bias'))![1];
  assert.ok(model.grad_of(bias).some((g) => g !== 0), 'a gradient that the optimizer ignores');
  assert.ok(model.params.some((v, i) => v !== before[i]), 'the other parameters moved');
});

/** A log whose curves are written by hand: the second half's loss falls and head 1.0's induction score rises between steps 100 and 300. */
function handLog(): LogEntry[] {
  const steps = [0, 100, 200, 300, 400];
  const second = [4, 4, 2.2, 0.3, 0];
  const ind10 = [0, 0.05, 0.5, 0.85, 0.9]; // head 1.0; start 0, end 0.9: 10 % = 0.09 at step 200, 50 % = 0.45 at 200, 90 % = 0.81 at 300
  const prev01 = [0.1, 0.1, 0.6, 0.9, 0.9]; // head 0.1, the best previous-token head below it
  return steps.map((step, i) => ({
    step, loss: second[i] + 4, first_half_loss: 4, second_half_loss: second[i], cpu_s: i,
    induction: [[0.01, 0.02], [ind10[i], 0.03]],
    previous_token: [[0.05, prev01[i]], [0.02, 0.02]],
  }));
}

test('phaseChange: the heads, the 10/50/90 % crossings and whether the curves move together, from a hand-made log', () => {
  const p = phaseChange(handLog());
  assert.is(p.induction_head, '1.0');
  assert.is(p.previous_token_head, '0.1');
  // second half: 4 → 0; 10 % down is 3.6 (step 200), 50 % is 2 (step 300, 2.2 is not yet), 90 % is 0.4 (step 300: 0.3)
  assert.equal([p.second_half_loss.at10, p.second_half_loss.at50, p.second_half_loss.at90], [200, 300, 300]);
  // induction score 0 → 0.9: 0.09, 0.45, 0.81 reached at steps 200, 200, 300
  assert.equal([p.induction_score.at10, p.induction_score.at50, p.induction_score.at90], [200, 200, 300]);
  // previous-token score 0.1 → 0.9: 0.18, 0.5, 0.82 at 200, 200, 300
  assert.equal([p.previous_token_score.at10, p.previous_token_score.at50, p.previous_token_score.at90], [200, 200, 300]);
  assert.is(p.apart_steps, 100);
  assert.ok(p.formed, 'score 0.9 ≥ 0.4 and the halves 4 nats apart');
  const flat = handLog().map((e) => ({ ...e, second_half_loss: 4, induction: [[0.01, 0.02], [0.05, 0.03]] }));
  assert.not.ok(phaseChange(flat).formed, 'nothing formed on a flat log');
});

test('RecurringPairs: BOS, then tokens in range among which each sequence\'s own pairs recur; the same example for the same seed', () => {
  const data = new RecurringPairs(SMALL, { max_pairs: 2, pair_rate: 0.5 }, 7);
  assert.is(data.T, 9);
  assert.equal(data.sequence(5), new RecurringPairs(SMALL, { max_pairs: 2, pair_rate: 0.5 }, 7).sequence(5));
  assert.not.equal(data.sequence(5), new RecurringPairs(SMALL, { max_pairs: 2, pair_rate: 0.5 }, 8).sequence(5), 'another seed, another sequence');
  const [x, y] = data.get(5);
  assert.equal([...x, y[y.length - 1]], data.sequence(5), 'x and y are the sequence shifted by one');
  assert.equal(x.slice(1), y.slice(0, -1));
  // with pair_rate 1 the sequence is nothing but its pairs: every other token (1, 3, …) is a pair's first,
  // and a first token is always followed by the same second
  const all = new RecurringPairs({ lo: 0, hi: 12, seq_len: 10 }, { max_pairs: 2, pair_rate: 1 }, 1);
  for (let i = 0; i < 20; i++) {
    const s = all.sequence(i);
    assert.is(s[0], 12, 'BOS');
    assert.ok(s.slice(1).every((t) => t >= 0 && t < 12), 'tokens in [0, 12)');
    const follower = new Map<number, number>();
    for (let t = 1; t + 1 < s.length; t += 2) {
      if (follower.has(s[t])) assert.is(s[t + 1], follower.get(s[t]), `sequence ${i}: ${s[t]} is followed by the same token each time`);
      follower.set(s[t], s[t + 1]);
    }
    assert.ok(follower.size <= 2, 'at most max_pairs pairs');
  }
});

/** A run of train.ts small enough to take a second or two. */
const TINY = ['--seq-len', '4', '--n-embd', '16', '--tokens', '12', '--batch', '4'];

test('train.ts: a short run writes the log, a checkpoint the induction experiment loads, and the charts', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'formation-'));
  try {
    const out = path.join(tmp, 'run');
    const r = await runScript('assignments/induction-formation/train.ts', ['--steps', '6', '--log-every', '3', ...TINY, '--out', out]);
    assert.is(r.code, 0, r.stderr);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'training.json'), 'utf8'));
    assert.equal(json.log.map((e: LogEntry) => e.step), [0, 3, 6]);
    assert.ok(json.finished && !json.interrupted);
    for (const e of json.log as LogEntry[]) {
      assert.ok([e.loss, e.first_half_loss, e.second_half_loss].every(Number.isFinite), `step ${e.step}: finite losses`);
      assert.is(e.induction.length, 2);
      assert.is(e.previous_token[0].length, 2);
    }
    for (const chart of ['loss', 'scores', 'attention']) assert.ok(fs.existsSync(path.join(out, `${chart}.svg`)), chart);
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.equal(config.token_range, [0, 12]);
    assert.is(config.bos_token_id, 12);
    const model = loadGPT(out);
    assert.is(model.block_size, 9);
    assert.ok(model.named_parameters.filter(([n]) => n.includes('.mlp.')).every(([, p]) => p.every((v) => v === 0)), 'the MLPs are zero in the file');
    // the induction experiment reads it, its token range and BOS from config.json and a --seq-len that fits
    const ind = await runScript('assignments/induction-heads/induction.ts', ['--weights', out, '--batch', '2', '--out', path.join(tmp, 'induction')]);
    assert.is(ind.code, 0, ind.stderr);
    assert.match(ind.stdout, '--seq-len 4 instead of the default 50');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('train.ts: Ctrl-C stops after the step under way, and keeps the log and the checkpoint', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'formation-int-'));
  try {
    const out = path.join(tmp, 'run');
    const child = spawn(process.execPath, ['--import', 'tsx', 'assignments/induction-formation/train.ts', '--steps', '1000000', '--log-every', '2', ...TINY, '--out', out], {
      cwd: ROOT, env: { ...process.env, MINGPT_QUIET: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // the first save (step 2) means training is under way
    for (let i = 0; i < 600 && !fs.existsSync(path.join(out, 'training.json')); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(fs.existsSync(path.join(out, 'training.json')), 'training began');
    child.kill('SIGINT');
    assert.is(await exited, 130, stdout);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'training.json'), 'utf8'));
    assert.ok(json.interrupted && json.finished);
    const last = json.log[json.log.length - 1].step;
    assert.ok(last >= 2 && last < 1000000, `stopped at step ${last}`);
    assert.match(stdout, `Stopped by Ctrl-C after ${last} of 1000000 steps`);
    assert.is(loadGPT(out).block_size, 9, 'the checkpoint of that step loads');
    assert.ok(fs.existsSync(path.join(out, 'loss.svg')), 'and the charts of the log so far are drawn');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('train.ts refuses bad settings before training, naming the option', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'formation-bad-'));
  try {
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    for (const [args, code, message] of [
      [['--n-embd', '30', '--n-head', '4'], 2, /--n-embd 30 must be a multiple of --n-head 4/],
      [['--pairs', '20', '--tokens', '12'], 2, /--pairs 20: .* only --tokens 12/],
      [['--steps', '0'], 2, /--steps must be at least 1/],
      [['--out', file], 1, /exists and is not a folder/],
    ] as Array<[string[], number, RegExp]>) {
      const r = await runScript('assignments/induction-formation/train.ts', args);
      assert.is(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.not.match(r.stdout, 'training:', 'nothing trained');
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test.run();
