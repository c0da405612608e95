/**
 * The induction-formation experiment (README.md beside this file explains it): train a two-layer
 * attention-only transformer with minGPT's trainer on random tokens with repeated spans, and watch
 * the induction head form.
 *
 *   npx tsx assignments/induction-formation/train.ts                  # the default run
 *   npx tsx assignments/induction-heads/induction.ts --weights out/induction-formation
 *   npx tsx assignments/induction-formation/train.ts --help
 *
 * In order:
 *   1. the model (formation.ts's AttentionOnlyGPT), the data (RecurringPairs) and a fixed batch of
 *      [BOS, x, x] sequences to measure on;
 *   2. mingpt/trainer.ts's Trainer runs; every --log-every steps a callback measures the fixed
 *      batch (the loss on each half, every head's induction and previous-token score) and saves
 *      training.json and the checkpoint so far; Ctrl-C stops after the step under way and keeps them;
 *   3. the phase change read off the log (formation.ts's phaseChange), printed (report.ts);
 *   4. training.json, the checkpoint and the charts, written together.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Trainer } from '../../mingpt/trainer.ts';
import { set_seed } from '../../mingpt/utils.ts';
import { kernelsName } from '../../mingpt/kernels/index.ts';
import { modelCheckpointFiles } from '../../io/checkpoint_writer.ts';
import { UsageError } from '../../io/errors.ts';
import { OutputWriter } from '../../io/output.ts';
import { ProgressBar } from '../../io/progress.ts';
import { helpText, parseArgs, type CommandSpec } from '../../cli/args.ts';
import { MODEL_OPTIONS, applyKernels, runCli } from '../../cli/command.ts';
import { parseHead } from '../../lens/heads.ts';
import { stripeOf } from '../induction-heads/scores.ts';
import { tokenLabels } from '../induction-heads/induction.ts';
import {
  AttentionOnlyGPT, RecurringPairs, evalTokens, measure, phaseChange,
  type LogEntry, type ModelShape, type PairsSettings, type PhaseChange,
} from './formation.ts';
import { printReport } from './report.ts';

const SCRIPT = 'npx tsx assignments/induction-formation/train.ts';

/** The default run: its model, its data and its training (README.md gives its measured time). */
export const DEFAULTS = {
  steps: 2000, logEvery: 50, batch: 32, learningRate: 3e-3,
  nEmbd: 64, nHead: 2, tokens: 64, seqLen: 20, maxPairs: 3, pairRate: 0.5,
};
/** Sequences in the fixed batch every measurement is made on. */
const EVAL_BATCH = 32;

export const COMMAND = {
  usage: SCRIPT,
  description: `
Trains a two-layer attention-only transformer (GPT-2's layout, MLPs held at zero) with minGPT's
trainer on random tokens among which a few two-token spans recur, and logs, every --log-every
steps, the loss on the first and second copy of a fixed batch of repeated sequences and every
head's induction and previous-token score: the second half's loss falls off a cliff when the
induction head forms.`,
  options: {
    kernels: { ...MODEL_OPTIONS.kernels, metavar: undefined },
    steps: { type: 'int', default: DEFAULTS.steps, min: 1, max: 1e7, metavar: 'N', help: 'optimizer steps to take' },
    seed: { type: 'int', default: 0, min: 0, metavar: 'S', help: 'seed of the initial weights, the training data and the fixed batch' },
    out: { type: 'string', default: 'out/induction-formation', metavar: 'DIR', help: 'folder for training.json, the checkpoint and the charts (created when missing)' },
    'log-every': { type: 'int', default: DEFAULTS.logEvery, min: 1, metavar: 'N', help: 'measure, log and save the checkpoint every N steps' },
    batch: { type: 'int', default: DEFAULTS.batch, min: 1, max: 4096, metavar: 'B', help: 'sequences per training step' },
    'learning-rate': { type: 'number', default: DEFAULTS.learningRate, min: 0, metavar: 'LR', help: 'AdamW\'s learning rate (the other settings are minGPT\'s defaults: betas 0.9, 0.95, weight decay 0.1, gradient norm clipped to 1)' },
    'n-embd': { type: 'int', default: DEFAULTS.nEmbd, min: 1, max: 4096, metavar: 'C', help: 'width of the residual stream' },
    'n-head': { type: 'int', default: DEFAULTS.nHead, min: 1, max: 256, metavar: 'H', help: 'heads per layer (must divide --n-embd)' },
    tokens: { type: 'int', default: DEFAULTS.tokens, min: 2, max: 50256, metavar: 'V', help: 'the data\'s tokens are the ids 0 … V−1 (GPT-2\'s single characters at first); BOS is V' },
    'seq-len': { type: 'int', default: DEFAULTS.seqLen, min: 2, max: 2048, metavar: 'N', help: 'the measuring batch is BOS + N random tokens + the same N again; every sequence, and the context, is 2N + 1 tokens' },
    'pairs': { type: 'int', default: DEFAULTS.maxPairs, min: 1, metavar: 'K', help: 'each training sequence has 1 … K recurring pairs of its own' },
    'pair-rate': { type: 'number', default: DEFAULTS.pairRate, min: 0, max: 1, metavar: 'P', help: 'the chance that the next place in a training sequence starts one of its pairs (else a random token)' },
  },
  epilog: `
writes into --out: training.json (the settings and the log), model.safetensors and config.json
(a GPT-2-layout checkpoint, also saved at every log step), and the charts, each as a vega-lite
spec, SVG, PNG and offline HTML page: loss (the loss curves), scores (every head's scores over
training), attention (the two heads' patterns before and after the jump).

examples:
  ${SCRIPT}
  ${SCRIPT} --steps 3000 --seed 1 --out out/formation-seed1
  npx tsx assignments/induction-heads/induction.ts --weights out/induction-formation`,
} as const satisfies CommandSpec;

export interface Options {
  kernels: 'simd' | 'js';
  steps: number;
  seed: number;
  out: string;
  logEvery: number;
  batch: number;
  learningRate: number;
  shape: ModelShape;
  pairs: PairsSettings;
}

export function readOptions(argv: readonly string[]): Options | 'help' {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return 'help';
  if (a.out === '') throw new UsageError('--out needs a folder');
  if (a['n-embd'] % a['n-head'] !== 0) throw new UsageError(`--n-embd ${a['n-embd']} must be a multiple of --n-head ${a['n-head']} (each head reads n_embd / n_head channels)`);
  if (a.pairs > a.tokens) throw new UsageError(`--pairs ${a.pairs}: the pairs' first tokens must differ, and there are only --tokens ${a.tokens}`);
  return {
    kernels: a.kernels,
    steps: a.steps,
    seed: a.seed,
    out: a.out,
    logEvery: a['log-every'],
    batch: a.batch,
    learningRate: a['learning-rate'],
    shape: { n_layer: 2, n_head: a['n-head'], n_embd: a['n-embd'], lo: 0, hi: a.tokens, seq_len: a['seq-len'] },
    pairs: { max_pairs: a.pairs, pair_rate: a['pair-rate'] },
  };
}

/** Ctrl-C, as an error a callback throws to end Trainer.run(). */
class Interrupted extends Error {}

/** training.json: the settings, the log, and what the log says. */
export interface TrainingJson {
  settings: Omit<Options, 'out'> & { eval_batch: number; trainer: Record<string, unknown> };
  /** false while training (the file is saved at every log step), true once it ended */
  finished: boolean;
  /** true when Ctrl-C ended the training before --steps */
  interrupted: boolean;
  log: LogEntry[];
  phase_change: PhaseChange | null;
  /** the steps whose attention patterns attention.html shows */
  attention_steps: { before: number; after: number } | null;
  /** processor seconds (every thread) and wall seconds of the training, and kernels used */
  timing: { cpu_s: number; wall_s: number; kernels: string };
}

/** The checkpoint's config.json fields beyond GPT-2's: what the induction experiment reads, and where it came from. */
function checkpointExtra(o: Options, phase: PhaseChange | null, steps: number): Record<string, unknown> {
  return {
    bos_token_id: o.shape.hi,
    eos_token_id: o.shape.hi,
    token_range: [o.shape.lo, o.shape.hi],
    ...(phase?.formed ? {
      known_heads: { induction: [phase.induction_head], previous_token: [phase.previous_token_head], duplicate_token: [] },
      known_heads_source: `found by ${SCRIPT} in its own measurements at step ${steps} (training.json)`,
    } : {}),
    trained: { script: SCRIPT, steps, seed: o.seed, mlp: 'held at zero: not trained' },
  };
}

/** The step just before the induction score began to rise (its 10 % crossing), and the last step. */
function attentionSteps(log: readonly LogEntry[], phase: PhaseChange): { before: number; after: number } {
  const rise = phase.induction_score.at10;
  const i = rise === null ? 0 : Math.max(0, log.findIndex((e) => e.step === rise) - 1);
  return { before: log[i].step, after: log[log.length - 1].step };
}

/** The charts, as name -> contents. */
async function chartFiles(json: TrainingJson, patterns: ReadonlyMap<number, Float32Array[]>, tokens: number[], o: Options): Promise<Map<string, string | Uint8Array>> {
  const { chartFiles: render } = await import('../../cli/plot.ts'); // vega is large: loaded once the numbers exist
  const charts = await import('./charts.ts');
  const { attentionSpec } = await import('../induction-heads/charts.ts');
  const files = new Map<string, string | Uint8Array>();
  const add = async (name: string, spec: Parameters<typeof render>[1], title: string, description: string) => {
    for (const [n, data] of (await render(name, spec, title, { description })).files) files.set(n, data);
  };
  const phase = json.phase_change!, steps = json.attention_steps!;
  await add('loss', charts.lossSpec({ log: json.log, phase, uniform: Math.log(o.shape.hi - o.shape.lo) }), 'Loss over training',
    'The fixed batch\'s first and second halves, and the training batches. Hover a point for its value.');
  await add('scores', charts.scoresSpec({ log: json.log, phase }), 'Every head\'s scores over training',
    'Induction and previous-token score of every head, measured on the fixed batch at every log step.');
  const T = 2 * o.shape.seq_len + 1;
  const before = phase.formed ? 'before the jump' : 'before the score rose';
  const panel = (name: string, kind: 'induction' | 'previous_token', step: number, when: string) => {
    const { layer, head } = parseHead(name);
    const score = json.log.find((e) => e.step === step)![kind][layer][head];
    return {
      head: `${name} at step ${step}`,
      caption: `${when}: ${kind === 'induction' ? 'induction' : 'previous-token'} score ${score.toFixed(2)}`,
      pattern: patterns.get(step)![layer].subarray(head * T * T, (head + 1) * T * T), // (T, T)
      stripe: stripeOf(kind, o.shape.seq_len),
    };
  };
  const panels = [
    panel(phase.previous_token_head, 'previous_token', steps.before, before),
    panel(phase.previous_token_head, 'previous_token', steps.after, 'at the end'),
    panel(phase.induction_head, 'induction', steps.before, before),
    panel(phase.induction_head, 'induction', steps.after, 'at the end'),
  ];
  await add('attention', attentionSpec({ model: `${before}, step ${steps.before}, and at the end, step ${steps.after}`, tokens: tokenLabels(tokens, o.shape.hi), panels }),
    'Attention patterns before and after the jump',
    'The first sequence of the fixed batch. The previous-token head comes to read the position before; the induction head the token after the current token\'s first copy (blue outlines).');
  return files;
}

export async function main(argv: readonly string[]): Promise<void> {
  const o = readOptions(argv);
  if (o === 'help') {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  new OutputWriter(o.out).check(); // a bad --out is refused before the training, not after it
  const note = applyKernels({ kernels: o.kernels });
  if (note) process.stderr.write(note + '\n');
  const print = (s = '') => process.stdout.write(s + '\n');

  // 1. the model, the data, the fixed batch
  set_seed(o.seed); // the trainer draws its batches from the generator set_seed seeds, as minGPT's from torch's
  const { shape } = o;
  const model = new AttentionOnlyGPT(shape, o.seed);
  const data = new RecurringPairs(shape, o.pairs, o.seed);
  const fixed = evalTokens(shape, EVAL_BATCH, o.seed);
  const config = Trainer.get_default_config();
  config.merge_from_dict({ max_iters: o.steps, batch_size: o.batch, learning_rate: o.learningRate });
  print(`model: ${shape.n_layer} layers × ${shape.n_head} heads, attention only (MLPs held at zero), n_embd ${shape.n_embd}, context ${data.T}, vocabulary ${shape.hi + 1} (tokens 0 … ${shape.hi - 1}, BOS ${shape.hi}); ${model.num_params()} parameters`);
  print(`data: ${data.T} tokens per sequence: random tokens among which 1 … ${o.pairs.max_pairs} two-token spans of the sequence's own recur (a pair starts at a place with chance ${o.pairs.pair_rate}; seed ${o.seed})`);
  print(`training: ${o.steps} steps of ${o.batch} sequences, AdamW lr ${o.learningRate}, betas ${config.betas.join(', ')}, weight decay ${config.weight_decay}, clip ${config.grad_norm_clip}; ${kernelsName()} kernels`);
  print(`measured every ${o.logEvery} steps on ${EVAL_BATCH} fixed sequences of BOS + ${shape.seq_len} random tokens + the same again; Ctrl-C stops early and keeps the log and the checkpoint`);

  // 2. train, measuring as we go
  const log: LogEntry[] = [];
  const patterns = new Map<number, Float32Array[]>();
  const cpu0 = process.cpuUsage(), wall0 = performance.now();
  const timing = () => {
    const c = process.cpuUsage(cpu0);
    return { cpu_s: (c.user + c.system) / 1e6, wall_s: (performance.now() - wall0) / 1000, kernels: kernelsName() };
  };
  const record = (step: number, loss: number) => {
    const m = measure(model, fixed, shape.seq_len);
    log.push({ step, loss, first_half_loss: m.first_half_loss, second_half_loss: m.second_half_loss, induction: m.induction, previous_token: m.previous_token, cpu_s: timing().cpu_s });
    patterns.set(step, m.patterns);
  };
  const { out: _out, ...chosen } = o; // the folder is where the file is, not part of the run
  const settings = { ...chosen, eval_batch: EVAL_BATCH, trainer: config.to_dict() };
  const json = (finished: boolean, interrupted: boolean, phase: PhaseChange | null): TrainingJson => ({
    settings, finished, interrupted, log, phase_change: phase,
    attention_steps: phase ? attentionSteps(log, phase) : null, timing: timing(),
  });
  /** training.json and the checkpoint as they are now, written together */
  const save = (j: TrainingJson, extra: Map<string, string | Uint8Array> = new Map()) => {
    const out = new OutputWriter(o.out);
    out.add('training.json', JSON.stringify(j, null, 1) + '\n');
    for (const [name, data] of modelCheckpointFiles(model, checkpointExtra(o, j.phase_change, log[log.length - 1].step), { metadata: { format: 'pt', source: SCRIPT } })) out.add(name, data);
    for (const [name, data] of extra) out.add(name, data);
    return out.commit();
  };

  record(0, NaN); // before any step; its training loss is the first batch's, filled in below
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    process.removeListener('SIGINT', onSigint); // a second Ctrl-C ends the process at once
    process.stderr.write('\nCtrl-C: stopping after this step, keeping the log and the checkpoint (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);

  const trainer = new Trainer(config, model, data);
  const bar = new ProgressBar({ total: o.steps, label: 'training steps' });
  let lossSum = 0, lossCount = 0;
  trainer.add_callback('on_batch_end', (t) => {
    if (t.iter_num === 0) log[0].loss = t.loss; // computed before the first update: the initial model's
    lossSum += t.loss;
    lossCount++;
    const done = t.iter_num + 1;
    bar.update(done);
    if (done % o.logEvery === 0 && done < o.steps) {
      record(done, lossSum / lossCount);
      lossSum = lossCount = 0;
      save(json(false, false, null));
    }
    if (interrupted) throw new Interrupted();
  });
  try {
    await trainer.run();
  } catch (err) {
    if (!(err instanceof Interrupted)) throw err;
  } finally {
    process.removeListener('SIGINT', onSigint);
    bar.done();
  }
  const steps = trainer.iter_num;
  if (log[log.length - 1].step !== steps) record(steps, lossSum / lossCount);

  // 3. what the log says
  const phase = phaseChange(log);
  const final = json(true, interrupted, phase);
  printReport(final, o, print);

  // 4. everything, together
  const charts = await chartFiles(final, patterns, fixed[0], o);
  const written = save({ ...final, timing: timing() }, charts);
  print(`\nfiles in ${o.out}:`);
  for (const f of written) print(`  ${path.relative(process.cwd(), f).startsWith('..') ? f : path.relative(process.cwd(), f)}`);
  print(`\nnext: npx tsx assignments/induction-heads/induction.ts --weights ${o.out}`);
  if (interrupted) process.exitCode = 130; // the usual code of a program Ctrl-C ended
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, SCRIPT);
}
