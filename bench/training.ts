/**
 * npx tsx bench/training.ts: training tokens per second with minGPT's trainer (mingpt/trainer.ts:
 * forward with targets, zero_grad, backward, clip_grad_norm_, AdamW), beside PyTorch's for the same
 * model and batch on this machine:
 *
 *   - the two-layer attention-only model of assignments/induction-formation/ (its default run's
 *     shape and batch: MLPs zero and not trained);
 *   - GPT-2 small's shape (the random checkpoint of bench/bench.ts, .bench/gpt2-random/, made on
 *     first use), lm_head untied as minGPT's from_pretrained leaves it; a smaller batch.
 *
 *   npx tsx bench/training.ts [--runs 5] [--kernels simd|js]
 *
 * PyTorch runs bench/training_torch.py with /usr/bin/python3 (set TORCH_PYTHON for another), on
 * as many threads as our kernels use; where it is absent the line says "PyTorch not available".
 * Each figure is the median step of --runs steps after a warm-up step, wall-clock and processor time
 * (all threads) side by side, with the load average: on a shared machine the processor time is the
 * steadier figure. Figures, not assertions: nothing here fails on a slow machine.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { GPT } from '../mingpt/model.ts';
import { Trainer, type Dataset } from '../mingpt/trainer.ts';
import { RNG, set_seed } from '../mingpt/utils.ts';
import { kernelsName } from '../mingpt/kernels/index.ts';
import { kernelThreads, stopKernelThreads } from '../mingpt/kernels/simd/threads.ts';
import { loadGPT } from '../io/load.ts';
import { MODEL_OPTIONS, applyKernels } from '../cli/command.ts';
import { helpText, parseArgs, type CommandSpec } from '../cli/args.ts';
import { AttentionOnlyGPT, RecurringPairs } from '../assignments/induction-formation/formation.ts';
import { DEFAULTS } from '../assignments/induction-formation/train.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CKPT = path.join(root, '.bench', 'gpt2-random');
const PYTHON = process.env.TORCH_PYTHON ?? '/usr/bin/python3';

const COMMAND = {
  usage: 'npx tsx bench/training.ts',
  description: `
Training tokens per second with minGPT's trainer on the two-layer attention-only model and on
GPT-2 small's shape, beside PyTorch's for the same model and batch.`,
  options: {
    runs: { type: 'int', default: 5, min: 1, max: 1000, metavar: 'N', help: 'timed steps per model (the median is reported)' },
    kernels: MODEL_OPTIONS.kernels,
  },
} as const satisfies CommandSpec;

interface StepTime { wall_s: number; cpu_s: number }
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** The median step of `runs` Trainer steps after one warm-up, timed in an on_batch_end callback. */
async function trainerSteps(model: GPT, data: Dataset, batch: number, runs: number): Promise<StepTime> {
  const config = Trainer.get_default_config();
  config.merge_from_dict({ max_iters: runs + 1, batch_size: batch });
  const trainer = new Trainer(config, model, data);
  const wall: number[] = [], cpu: number[] = [];
  let w0 = performance.now(), c0 = process.cpuUsage();
  trainer.set_callback('on_batch_end', (t) => {
    const c = process.cpuUsage(c0);
    if (t.iter_num > 0) { // the first step warms up
      wall.push((performance.now() - w0) / 1000);
      cpu.push((c.user + c.system) / 1e6);
    }
    w0 = performance.now();
    c0 = process.cpuUsage();
  });
  await trainer.run();
  return { wall_s: median(wall), cpu_s: median(cpu) };
}

/** PyTorch's median step for the same shape and batch, or why there is none. */
function torchSteps(shape: Record<string, number | string>, runs: number): StepTime & { torch: string; threads: number } | string {
  const r = spawnSync(PYTHON, [path.join(root, 'bench', 'training_torch.py'), JSON.stringify({ ...shape, steps: runs, threads: Math.max(1, kernelThreads()) })], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`);
    return `PyTorch not available (${PYTHON}: ${why})`;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function show(what: string, tokens: number, ours: StepTime, torch: ReturnType<typeof torchSteps>): void {
  const rate = (t: StepTime) => `${Math.round(tokens / t.wall_s).toLocaleString('en')} tokens/s wall, ${Math.round(tokens / t.cpu_s).toLocaleString('en')} per processor-second`;
  console.log(`${what}`);
  console.log(`  mingpt-ts (${kernelsName()}): ${(ours.wall_s * 1000).toFixed(0)} ms / ${(ours.cpu_s * 1000).toFixed(0)} ms a step = ${rate(ours)}`);
  if (typeof torch === 'string') console.log(`  ${torch}`);
  else console.log(`  PyTorch ${torch.torch} (${torch.threads} threads): ${(torch.wall_s * 1000).toFixed(0)} ms / ${(torch.cpu_s * 1000).toFixed(0)} ms a step = ${rate(torch)}; ours takes ${(ours.cpu_s / torch.cpu_s).toFixed(1)}× its processor time`);
}

async function main(argv: readonly string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return void process.stdout.write(helpText(COMMAND));
  const note = applyKernels({ kernels: a.kernels });
  if (note) console.log(note);
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism()} cores, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log(`kernels: ${kernelsName()}, kernel threads: ${kernelThreads()}; median of ${a.runs} steps, wall / processor time\n`);
  set_seed(0);

  // the induction-formation model, its default batch
  const shape = { n_layer: 2, n_head: DEFAULTS.nHead, n_embd: DEFAULTS.nEmbd, lo: 0, hi: DEFAULTS.tokens, seq_len: DEFAULTS.seqLen };
  const small = new AttentionOnlyGPT(shape, 0);
  const spans = new RecurringPairs(shape, { max_pairs: DEFAULTS.maxPairs, pair_rate: DEFAULTS.pairRate }, 0);
  const T1 = spans.T - 1, B1 = DEFAULTS.batch;
  show(`two-layer attention-only model (n_embd ${shape.n_embd}, ${shape.n_head} heads, vocabulary ${shape.hi + 1}), batch ${B1} × ${T1} tokens:`, B1 * T1,
    await trainerSteps(small, spans, B1, a.runs),
    torchSteps({ n_layer: 2, n_head: shape.n_head, n_embd: shape.n_embd, vocab_size: shape.hi + 1, block_size: spans.T, mlp: 'frozen', batch: B1, T: T1 }, a.runs));

  // GPT-2 small's shape
  if (!fs.existsSync(path.join(CKPT, 'model.safetensors'))) {
    console.log(`\nno ${path.relative(root, CKPT)}/ yet: bench/bench.ts makes it (once)`);
    const r = spawnSync(process.execPath, [...process.execArgv, path.join(root, 'bench', 'bench.ts'), '--make-checkpoint'], { stdio: 'inherit', cwd: root });
    if (r.status !== 0) throw new Error('making the checkpoint failed');
  }
  const gpt2 = loadGPT(CKPT, { untie_lm_head: true });
  const B2 = 4, T2 = 64, V = gpt2.config.vocab_size;
  const rng = new RNG(1);
  const random: Dataset = { length: 1024, get: () => { const s = Array.from({ length: T2 + 1 }, () => rng.randint(0, V)); return [s.slice(0, -1), s.slice(1)]; } };
  console.log();
  show(`GPT-2 small's shape (12 layers, n_embd 768, lm_head untied), batch ${B2} × ${T2} tokens:`, B2 * T2,
    await trainerSteps(gpt2, random, B2, a.runs),
    torchSteps({ n_layer: 12, n_head: 12, n_embd: 768, vocab_size: V, block_size: gpt2.block_size, mlp: 'train', batch: B2, T: T2 }, a.runs));
  console.log(`\nload average now: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  await stopKernelThreads();
}

await main(process.argv.slice(2));
