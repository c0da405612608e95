/**
 * npx tsx bench/attribution.ts: what the backward pass and the attributions built on it cost on
 * GPT-2 small's shape (the random checkpoint of bench/bench.ts, .bench/gpt2-random/, made on first
 * use), measured in forward-equivalents:
 *
 *   - one forward pass with the logits at the last position (what every attribution pass runs),
 *     and one with the logits at every position (bench.ts's "one full forward");
 *   - the backward pass of a metric (activations' gradients only) and of the loss (with every
 *     parameter's gradient, what training needs);
 *   - attribution patching of the whole layer × position sweep of the block outputs on a
 *     46-token pair (two passes: both texts forward as one batch, the corrupted one backward; the exact
 *     sweep runs 12 × 46 = 552 patched runs), timed
 *     back to back like the rest, and again in turn with the unit (one run of each, alternately),
 *     so that both meet the machine in the same state;
 *   - edge attribution patching of every edge (32 280 of them) on one IOI prompt, and one more
 *     integrated-gradients step.
 *
 *   npx tsx bench/attribution.ts [--runs 5] [--kernels simd|js]
 *
 * Each figure is the median of --runs runs after a warm-up, wall-clock and processor time (all
 * threads of the process) side by side: other processes on the machine slow the wall clock
 * first, so the processor time is the steadier figure. The load average is printed with them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { loadGPT } from '../io/load.ts';
import { MODEL_OPTIONS, applyKernels } from '../cli/command.ts';
import { helpText, parseArgs, type CommandSpec } from '../cli/args.ts';
import { kernelsName } from '../mingpt/kernels/index.ts';
import { kernelThreads, stopKernelThreads } from '../mingpt/kernels/simd/threads.ts';
import { logitDiffMetric } from '../lens/patching.ts';
import { run_with_grad_cache } from '../lens/gradients.ts';
import { atp_runs, get_atp_resid_post } from '../lens/attribution_patching.ts';
import { edge_attribution_patching } from '../lens/eap.ts';
import { pair46 } from './sweep_pair.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CKPT = path.join(root, '.bench', 'gpt2-random');
const IOI_CLEAN = 'When Mary and John went to the store, John gave a drink to';
const IOI_CORRUPT = 'When Mary and John went to the store, Paul gave a drink to';

interface Timing { wall: number; cpu: number }

/** median wall and processor milliseconds of `runs` calls after one warm-up */
function time(runs: number, fn: () => void): Timing {
  return alternate(runs, [fn])[0];
}

/** median wall and processor milliseconds of each of fns, run in turn (one of each, `runs` times) after one warm-up each */
function alternate(runs: number, fns: Array<() => void>): Timing[] {
  for (const fn of fns) fn();
  const wall = fns.map(() => [] as number[]), cpu = fns.map(() => [] as number[]);
  for (let i = 0; i < runs; i++) {
    fns.forEach((fn, j) => {
      const c0 = process.cpuUsage(), t0 = performance.now();
      fn();
      wall[j].push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu[j].push((c.user + c.system) / 1000);
    });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  return fns.map((_, j) => ({ wall: median(wall[j]), cpu: median(cpu[j]) }));
}

const COMMAND = {
  usage: 'npx tsx bench/attribution.ts',
  description: `
What the backward pass, attribution patching and edge attribution patching cost on GPT-2 small's
shape, in forward-equivalents.`,
  options: {
    runs: { type: 'int', default: 5, min: 1, max: 1000, metavar: 'N', help: 'runs per timing (the median is reported)' },
    kernels: MODEL_OPTIONS.kernels,
  },
} as const satisfies CommandSpec;

async function main(argv: readonly string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return void process.stdout.write(helpText(COMMAND));
  const runs = a.runs;
  const note = applyKernels({ kernels: a.kernels });
  if (note) console.log(note);
  if (!fs.existsSync(path.join(CKPT, 'model.safetensors'))) {
    console.log(`no ${path.relative(root, CKPT)}/ yet: bench/bench.ts makes it (once)`);
    const r = spawnSync(process.execPath, [...process.execArgv, path.join(root, 'bench', 'bench.ts'), '--make-checkpoint'], { stdio: 'inherit', cwd: root });
    if (r.status !== 0) throw new Error('making the checkpoint failed');
  }
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism()} cores, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log(`kernels: ${kernelsName()}, kernel threads: ${kernelThreads()}; median of ${runs} runs, wall / processor time\n`);

  const model = loadGPT(CKPT, { untie_lm_head: true });
  const bpe = new BPETokenizer();
  const pair = pair46(bpe); // the pair of bench.ts's 46-token sweep
  const clean = pair.clean_ids, corrupt = pair.corrupt_ids, T = clean.length;
  const metric = logitDiffMetric(pair.corrupt_token_id, pair.clean_token_id);
  const show = (what: string, t: Timing, unit?: Timing) =>
    console.log(`  ${what.padEnd(58)} ${t.wall.toFixed(0).padStart(6)} ms / ${t.cpu.toFixed(0).padStart(6)} ms` +
      (unit ? `   = ${(t.wall / unit.wall).toFixed(2)} / ${(t.cpu / unit.cpu).toFixed(2)} forward-equivalents` : ''));

  console.log(`${T}-token pair (GPT-2 small's shape, random weights):`);
  const fwd = time(runs, () => model.forward(corrupt, { logits_at: [T - 1] }));
  show('forward, logits at the last position (the unit)', fwd);
  show('forward, logits at every position (bench.ts\'s full forward)', time(runs, () => model.forward(corrupt)), fwd);
  // (the gradient kept at the embeddings, the first hook point, so that the whole pass runs: it stops at the earliest one kept)
  show('forward + backward of the metric (back to the embeddings)', time(runs, () => run_with_grad_cache(model, corrupt, metric, { names: ['hook_embed'] })), fwd);
  const ids = clean.slice(0, -1), targets = clean.slice(1);
  show('forward + backward of the loss (every parameter\'s gradient)', time(runs, () => {
    model.forward(ids, { targets });
    model.zero_grad();
    model.backward();
  }), fwd);
  const runAtp = () => get_atp_resid_post(atp_runs(model, clean, corrupt, metric, ['resid_post']));
  const atp = time(runs, runAtp);
  show(`AtP of the block outputs, ${model.config.n_layer} × ${T} cells (2 passes)`, atp, fwd);
  // the same two figures taken in turn, one run of each: back to back, a forward finds the caches
  // and the heap as the forward before left them, which favours the unit
  const [fwdAlt, atpAlt] = alternate(runs, [() => model.forward(corrupt, { logits_at: [T - 1] }), runAtp]);
  show('AtP, timed in turn with the unit (one run of each, alternately)', atpAlt, fwdAlt);

  const ic = bpe.encode(IOI_CLEAN), ir = bpe.encode(IOI_CORRUPT);
  const ioiMetric = logitDiffMetric(bpe.encode(' Mary')[0], bpe.encode(' John')[0]);
  console.log(`\none IOI prompt, ${ic.length} tokens:`);
  const ifwd = time(runs, () => model.forward(ir, { logits_at: [ic.length - 1] }));
  show('forward, logits at the last position (the unit)', ifwd);
  const eap = time(runs, () => edge_attribution_patching(model, ic, ir, ioiMetric));
  show('EAP, every edge', eap, ifwd);
  const ig = time(Math.max(1, Math.floor(runs / 2)), () => edge_attribution_patching(model, ic, ir, ioiMetric, { steps: 5 }));
  show('EAP-IG, 5 steps', ig, ifwd);
  console.log(`\nload average now: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  await stopKernelThreads();
}

await main(process.argv.slice(2));
