/**
 * assignments/induction-formation/: the attention-only model keeps its MLPs at zero through
 * training, the data's spans repeat where they say, the phase change is read off a log built by
 * hand, and the command line trains, logs, saves a checkpoint the induction experiment loads, and
 * keeps what it has on Ctrl-C.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Trainer } from '../mingpt/trainer.ts';
import { set_seed } from '../mingpt/utils.ts';
import { AttentionOnlyGPT, phaseChange, type LogEntry, type ModelShape } from '../assignments/induction-formation/formation.ts';

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

test.run();
