/**
 * The backward pass's numbers in the format of gradients.json (test/fixtures/GRADIENTS.md defines
 * every field), for any GPT-2-layout checkpoint and the first case of a case list, so that another
 * implementation's numbers (PyTorch autograd, TransformerLens) can be compared with ours entry by entry:
 *
 *   npx tsx conformance/gradients.ts --weights test/fixtures/gpt2-tiny --case test/fixtures/gpt2-tiny/cases.json --out /tmp/gradients.json
 *
 * Writes `checkpoint`, `case`, `metric`, `grads` (every hook point's gradient on the corrupted run),
 * `atp` (attribution patching of each `patching` entry of analysis.json), `eap` (every edge of the
 * graph) and `loss_grads` (minGPT's training loss on the clean text, lm_head untied, every
 * parameter's gradient in the checkpoint's layout; the vocabulary and position tables as norms and
 * rows: the text's ids and the two answer tokens, positions 0 … T − 1) and `training` (three steps
 * of minGPT's trainer from the checkpoint, lm_head untied, on two windows of the case's ids).
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { GPT } from '../mingpt/model.ts';
import { Trainer, type Batch, type TrainerConfig } from '../mingpt/trainer.ts';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { loadGPT } from '../io/load.ts';
import { gpt2Tensors } from '../io/checkpoint_writer.ts';
import { InputError, UsageError } from '../io/errors.ts';
import { atomicWrite } from '../io/output.ts';
import { run_with_grad_cache } from '../lens/gradients.ts';
import * as atp from '../lens/attribution_patching.ts';
import { edge_attribution_patching } from '../lens/eap.ts';
import { logitDiffMetric, nested } from '../lens/patching.ts';
import { helpText, parseArgs, type CommandSpec } from '../cli/args.ts';
import { MODEL_OPTIONS, applyKernels, runCli } from '../cli/command.ts';
import { tokenizeInputs, checkAgainstModel } from '../assignments/activation-patching/experiment.ts';

const SCRIPT = 'npx tsx conformance/gradients.ts';

export const COMMAND = {
  usage: SCRIPT,
  description: `
Writes this project's gradients, attribution patching, edge attribution patching and three
steps of minGPT's trainer for a checkpoint and a case in the format of gradients.json (test/fixtures/GRADIENTS.md), to compare
with another implementation's.`,
  options: {
    weights: { ...MODEL_OPTIONS.weights, help: 'the GPT-2-layout checkpoint: a folder with model.safetensors and config.json' },
    kernels: MODEL_OPTIONS.kernels,
    case: { type: 'string', metavar: 'FILE', help: 'a JSON list of cases like test/fixtures/gpt2-tiny/cases.json, each {clean, corrupt, clean_token, corrupt_token}: the first is used' },
    out: { type: 'string', metavar: 'FILE', help: 'where to write the JSON' },
  },
  epilog: `
example:
  ${SCRIPT} --weights test/fixtures/gpt2-tiny \\
      --case test/fixtures/gpt2-tiny/cases.json --out /tmp/gradients.json`,
} as const satisfies CommandSpec;

/** One case of a case list. */
export interface Case {
  clean: string;
  corrupt: string;
  clean_token: string;
  corrupt_token: string;
}

/** The first case of a case-list file, checked field by field. */
export function readCase(file: string): Case {
  let list: unknown;
  try {
    list = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InputError(`--case ${file}: cannot read it as JSON (${(e as Error).message})`);
  }
  const first = Array.isArray(list) ? list[0] : undefined;
  if (typeof first !== 'object' || first === null) throw new InputError(`--case ${file}: expected a list of cases, [{"clean": …, "corrupt": …, "clean_token": …, "corrupt_token": …}, …]`);
  for (const k of ['clean', 'corrupt', 'clean_token', 'corrupt_token'])
    if (typeof (first as Record<string, unknown>)[k] !== 'string') throw new InputError(`--case ${file}: the first case has no text field "${k}"`);
  return first as Case;
}

const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));

/**
 * gradients.json's fields for `model` (with lm_head untied, as loadGPT's untie_lm_head makes it)
 * and one case.
 */
export function gradientsReport(model: GPT, c: Case, bpe: BPETokenizer): Record<string, unknown> {
  const t = tokenizeInputs(bpe, { clean: c.clean, corrupt: c.corrupt, cleanToken: c.clean_token, corruptToken: c.corrupt_token });
  checkAgainstModel(t, model);
  const T = t.clean_ids.length, C = model.config.n_embd;
  const metric = logitDiffMetric(t.corrupt_token_id, t.clean_token_id);

  // grads: every hook point, the final layer norm at every position
  const { value, grad_cache } = run_with_grad_cache(model, t.corrupt_ids, metric, { logits_at: [...Array(T).keys()] });
  const grads = Object.fromEntries(model.hook_names().map((n) => [n, nested(grad_cache.get(n))]));

  // atp: the `patching` entries of analysis.json
  const runs = atp.atp_runs(model, t.clean_ids, t.corrupt_ids, metric, ['resid_pre', 'attn_out', 'mlp_out', 'resid_post', 'z', 'pattern']);
  const estimates = {
    resid_pre: atp.get_atp_resid_pre, attn_out: atp.get_atp_attn_out, mlp_out: atp.get_atp_mlp_out, resid_post: atp.get_atp_resid_post,
    head_z: atp.get_atp_attn_head_out_all_pos, head_z_by_pos: atp.get_atp_attn_head_out_by_pos, head_pattern: atp.get_atp_attn_head_pattern_all_pos,
  };
  const atpJson = Object.fromEntries(Object.entries(estimates).map(([k, f]) => [k, nested(f(runs))]));

  const eap = edge_attribution_patching(model, t.clean_ids, t.corrupt_ids, metric);

  // loss_grads: the clean text as one training sequence
  const { loss } = model.forward(t.clean_ids.slice(0, -1), { targets: t.clean_ids.slice(1) });
  model.zero_grad();
  model.backward();
  const tensors = gpt2Tensors({ config: model.config, named_parameters: model.named_parameters.map(([n, p, s]) => [n, model.grad_of(p), s] as const) });
  const vocabRows = [...new Set([...t.clean_ids, t.clean_token_id, t.corrupt_token_id])].sort((a, b) => a - b);
  const rowsOf = (g: Float32Array, rows: number[]) => Object.fromEntries(rows.map((r) => [String(r), Array.from(g.subarray(r * C, (r + 1) * C))]));
  const loss_grads: Record<string, unknown> = { loss, tokens: t.clean_ids };
  for (const [name, { data, shape }] of Object.entries(tensors)) {
    if (name === 'wte.weight' || name === 'lm_head.weight') loss_grads[name] = { norm: norm(data), rows: rowsOf(data, vocabRows) };
    else if (name === 'wpe.weight') loss_grads[name] = { norm: norm(data), rows: rowsOf(data, [...Array(T).keys()]) };
    else loss_grads[name] = nested({ shape, data });
  }

  return {
    checkpoint: model.source?.file ?? null,
    case: { ...c, clean_ids: t.clean_ids, corrupt_ids: t.corrupt_ids, clean_token_id: t.clean_token_id, corrupt_token_id: t.corrupt_token_id },
    metric: { clean: runs.metric.clean, corrupt: value },
    grads,
    atp: atpJson,
    eap: { upstream: eap.upstream, downstream: eap.downstream, scores: eap.scores },
    loss_grads,
  };
}

/**
 * The settings of gradients.json's `training` (GRADIENTS.md): minGPT's trainer with these
 * hyper-parameters (AdamW's eps is its default, 1e-8), for `steps` steps on one batch of windows
 * of block_size + 1 ids, taken at `offsets` in the clean ids followed by the corrupt ids.
 */
const TRAINING = { learning_rate: 3e-3, betas: [0.9, 0.95] as [number, number], weight_decay: 0.1, grad_norm_clip: 1.0, steps: 3, block_size: 8, offsets: [0, 3] };

/** minGPT's trainer on one batch, the same at every step, instead of batches drawn at random. */
class FixedBatchTrainer extends Trainer {
  constructor(config: TrainerConfig, model: GPT, private readonly batch: Batch) {
    const [x, y] = batch;
    super(config, model, { length: x.length, get: (i) => [x[i], y[i]] });
  }
  protected override batches(): Iterator<Batch> {
    const batch = this.batch;
    return (function* () {
      for (;;) yield batch;
    })();
  }
}

/**
 * gradients.json's `training` for `model` (with lm_head untied, as loadGPT's untie_lm_head makes
 * it; the model is trained in place) and a case's ids: the losses before each step, the gradient's
 * norm before each clipping, the loss after the last step, and every parameter's norm and first 8
 * values (the checkpoint's layout) at the end.
 */
export async function trainingReport(model: GPT, ids: { clean_ids: number[]; corrupt_ids: number[] }): Promise<Record<string, unknown>> {
  const { block_size, offsets, steps, ...hyper } = TRAINING;
  const stream = [...ids.clean_ids, ...ids.corrupt_ids];
  const need = Math.max(...offsets) + block_size + 1;
  if (stream.length < need) throw new InputError(`training needs ${need} ids in the clean and corrupt texts together (windows of ${block_size + 1} at offsets ${offsets.join(', ')}); the case has ${stream.length}`);
  if (block_size > model.block_size) throw new InputError(`training uses windows of ${block_size} positions; the model's context is ${model.block_size}`);
  const sequences = offsets.map((o) => stream.slice(o, o + block_size + 1));
  const x = sequences.map((s) => s.slice(0, -1)), y = sequences.map((s) => s.slice(1));
  const config = Trainer.get_default_config();
  config.merge_from_dict({ ...hyper, max_iters: steps, batch_size: sequences.length });
  const trainer = new FixedBatchTrainer(config, model, [x, y]);
  const losses: number[] = [], grad_norms_before_clip: number[] = [];
  trainer.add_callback('on_batch_end', (t) => {
    losses.push(t.loss);
    grad_norms_before_clip.push(t.grad_norm);
  });
  await trainer.run();
  const { loss: final_loss } = model.forward(x, { targets: y });
  const hfName = (name: string) => name.replace(/^transformer\./, '');
  const tensors = gpt2Tensors(model);
  return {
    ...hyper,
    eps: trainer.optimizer!.eps,
    steps,
    block_size,
    sequences,
    decay: trainer.optimizer!.param_groups[0].params.map((p) => hfName(p.name)),
    losses,
    grad_norms_before_clip,
    final_loss,
    param_norms: Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, norm(t.data)])),
    params_first8: Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, Array.from(t.data.subarray(0, 8))])),
  };
}

export async function main(argv: readonly string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) {
    console.log(helpText(COMMAND));
    return;
  }
  const need = (name: string, v: string | undefined): string => {
    if (!v) throw new UsageError(`--${name} is required`);
    return v;
  };
  const weights = need('weights', a.weights), caseFile = need('case', a.case), outArg = need('out', a.out);
  const out = path.resolve(outArg);
  if (!fs.existsSync(path.dirname(out))) throw new InputError(`--out ${outArg}: the folder ${path.dirname(out)} does not exist`);
  const c = readCase(caseFile);
  const note = applyKernels({ kernels: a.kernels });
  if (note) process.stderr.write(note + '\n');
  const model = loadGPT(weights, { untie_lm_head: true });
  const report = gradientsReport(model, c, new BPETokenizer());
  // training changes the weights: it starts from a fresh copy of the checkpoint
  report.training = await trainingReport(loadGPT(weights, { untie_lm_head: true }), report.case as { clean_ids: number[]; corrupt_ids: number[] });
  atomicWrite(out, JSON.stringify(report) + '\n');
  console.log(`wrote ${out}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await runCli(main, SCRIPT);
