/**
 * npm run bench: how fast the model runs, on GPT-2 small's shape.
 *
 *   npm run bench                         # everything (several minutes)
 *   npm run bench -- --runs 3             # runs per timing (median reported; default 5, fewer for long texts)
 *   npm run bench -- --lengths 11,128     # the forward-pass lengths (default 11,128,512,1024)
 *   npm run bench -- --no-pytorch         # skip PyTorch's times (also skipped, with a note, without torch)
 *   npm run bench -- --no-reference       # skip the reference sweep (about 2 minutes here)
 *   npm run bench -- --no-generate        # skip the generate.ts child run (peak memory)
 *   npm run bench -- --kernels js         # the readable kernels instead of WebAssembly SIMD
 *
 * It prints: one full forward at 11, 128, 512 and 1024 tokens with its GFLOP/s, PyTorch's time
 * for the same forward measured in the same run (when a python3 with torch is there), the ratio
 * and its target, and what bounds each figure; the peak memory of a 1024-token forward; the
 * processor time of an idle process; the activation-patching sweep of the assignment, and the
 * same sweep on a 46-token pair beside PyTorch's (./sweep_pair.ts, ./pytorch_sweep.py: about a
 * minute each); the matmul and attention kernels' rates per shape.
 *
 * The model is a random checkpoint with GPT-2 small's exact shape (12 layers, 12 heads, 768
 * dims, 50257 tokens, 1024 positions) in the Hugging Face layout of openai-community/gpt2:
 * keys without the `transformer.` prefix, Conv1D weights stored [in, out], the
 * `h.{i}.attn.bias` mask buffers, no lm_head. It goes through the real loader; real weights
 * would change no timing. Made once, in a child process, into .bench/gpt2-random/ (git-ignored).
 *
 * Timings are medians of several runs after a warm-up, wall-clock (the targets) with processor
 * time (all threads) beside it. Other processes on the machine slow the wall-clock figures: the
 * load average is printed with them, and a wall time far above the processor time means the
 * machine was busy.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GPT } from '../mingpt/model.ts';
import { BPETokenizer } from '../mingpt/bpe.ts';
import { referencePatchingSweep, type PatchingInput, type PatchingResult } from '../sweep/sweep.ts';
import { fastPatchingSweep } from '../sweep/fast.ts';
import { KERNELS, kernelsName, setKernels } from '../mingpt/kernels/index.ts';
import { MODEL_OPTIONS, applyKernels, runCli } from '../cli/command.ts';
import { helpText, parseArgs, type CommandSpec } from '../cli/args.ts';
import { simdSupport } from '../mingpt/kernels/simd/memory.ts';
import { kernelThreadItems, kernelThreads, stopKernelThreads } from '../mingpt/kernels/simd/threads.ts';
import { kernelRates } from './kernel_rates.ts';
import { profile } from './profile.ts';
import { addPyTorch, LENGTH_TARGETS, timeForwards, type ForwardFigure } from './forward_lengths.ts';
import { addPyTorchSweep, maxMatrixDiff, pair46, timeSweep, type SweepFigure } from './sweep_pair.ts';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.ts';
import { RNG } from '../mingpt/utils.ts';
import { loadGPT } from '../io/load.ts';
import { UsageError } from '../io/errors.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CKPT = path.join(root, '.bench', 'gpt2-random');
const CLEAN = 'Michelle Jones was a top-notch student. Michelle';
const CORRUPT = 'Michelle Smith was a top-notch student. Michelle';

// -----------------------------------------------------------------------------------------------
// the random checkpoint

/** Conv1D weights: stored [in, out] in GPT-2's files, [out, in] in our model. */
const CONV1D = /\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/;

function makeCheckpoint(dir: string): void {
  const config = GPT.get_default_config();
  config.merge_from_dict({ model_type: 'gpt2', vocab_size: 50257, block_size: 1024 });
  const t0 = performance.now();
  const model = new GPT(config, { rng: new RNG(1337) }); // minGPT's random init, N(0, 0.02)
  const tensors: Record<string, TensorToWrite> = {};
  const mask = new Float32Array(1024 * 1024); // the causal-mask buffer: ones on and below the diagonal
  for (let i = 0; i < 1024; i++) mask.fill(1, i * 1024, i * 1024 + i + 1);
  for (const [name, view, shape] of model.named_parameters) {
    const key = name.replace(/^transformer\./, '');
    if (CONV1D.test(key)) {
      const [O, I] = shape;
      const t = new Float32Array(O * I); // (I, O)
      for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) t[i * O + o] = view[o * I + i];
      tensors[key] = { dtype: 'F32', shape: [I, O], data: t };
    } else {
      tensors[key] = { dtype: 'F32', shape, data: view };
    }
    const m = key.match(/^h\.(\d+)\.ln_1\.bias$/);
    if (m) tensors[`h.${m[1]}.attn.bias`] = { dtype: 'F32', shape: [1, 1, 1024, 1024], data: mask };
  }
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    activation_function: 'gelu_new', architectures: ['GPT2LMHeadModel'], attn_pdrop: 0.1, bos_token_id: 50256,
    embd_pdrop: 0.1, eos_token_id: 50256, initializer_range: 0.02, layer_norm_epsilon: 1e-5, model_type: 'gpt2',
    n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12, n_positions: 1024, resid_pdrop: 0.1, vocab_size: 50257,
    _comment: 'random weights (minGPT init, seed 1337) in the shape of openai-community/gpt2, made by bench/bench.ts',
  }, null, 2) + '\n');
  const mb = fs.statSync(path.join(dir, 'model.safetensors')).size / 1e6;
  console.log(`made ${dir} (${mb.toFixed(0)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Node flags that make a child run TypeScript like this process does (tsx's loader). */
const childExecArgv = () => process.execArgv.filter((a) => a !== '--inspect');

function ensureCheckpoint(): void {
  if (fs.existsSync(path.join(CKPT, 'model.safetensors')) && fs.existsSync(path.join(CKPT, 'config.json'))) return;
  console.log(`no ${path.relative(root, CKPT)}/ yet: making the random GPT-2-small checkpoint (once; in a child process, so that its memory does not count here)`);
  const r = spawnSync(process.execPath, [...childExecArgv(), fileURLToPath(import.meta.url), '--make-checkpoint'], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) throw new Error('making the checkpoint failed');
}

// -----------------------------------------------------------------------------------------------
// timing helpers

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const secs = (ms: number) => `${(ms / 1000).toFixed(3)} s`;
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;

function timeSync(runs: number, fn: () => void): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    out.push(performance.now() - t0);
  }
  return out;
}

async function timeAsync(runs: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

function maxAbsDiff(a: PatchingResult, b: PatchingResult): number {
  let worst = 0;
  a.matrix.forEach((row, l) => row.forEach((v, p) => (worst = Math.max(worst, Math.abs(v - b.matrix[l][p])))));
  return worst;
}

// -----------------------------------------------------------------------------------------------
// generate.ts as a child: its peak memory and its own timings

function runGenerate(): { peakKiB: number; load_s?: number; sweep_s?: number; wall_s: number } | string {
  const gen = path.join(root, 'generate.ts');
  if (!fs.existsSync(gen)) return 'generate.ts is not there';
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mingpt-bench-'));
  const preload = pathToFileURL(path.join(root, 'bench', 'peak-rss.ts')).href;
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [...childExecArgv(), '--import', preload, gen, '--weights', CKPT, '--out', out], {
    cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, MINGPT_QUIET: '1', NO_COLOR: '1' },
  });
  const wall_s = (performance.now() - t0) / 1000;
  const m = (r.stderr ?? '').match(/\[peak-rss-kib\] (\d+)/);
  if (r.status !== 0 || !m) return `generate.ts failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`;
  let timing: { load_s?: number; sweep_s?: number } = {};
  try {
    timing = JSON.parse(fs.readFileSync(path.join(out, 'patching.json'), 'utf8')).timing ?? {};
  } catch { /* older generate.ts: no timing */ }
  fs.rmSync(out, { recursive: true, force: true });
  return { peakKiB: Number(m[1]), ...timing, wall_s };
}

// -----------------------------------------------------------------------------------------------

/** The fixture model's PyTorch reference: the patch matrix of case 0, and how far each engine × kernels is from it. */
async function fixtureAgreement(): Promise<Array<[string, number]>> {
  const dir = path.join(root, 'test', 'fixtures', 'gpt2-tiny');
  const c = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')).cases[0];
  const input: PatchingInput = { clean_ids: c.clean_ids, corrupt_ids: c.corrupt_ids, clean_token_id: c.clean_token_id, corrupt_token_id: c.corrupt_token_id };
  const before = kernelsName();
  const rows: Array<[string, number]> = [];
  for (const k of KERNELS) {
    if (setKernels(k) !== k) continue; // no SIMD here
    const model = loadGPT(dir);
    const worst = (r: PatchingResult) => Math.max(...r.matrix.flatMap((row, l) => row.map((v, p) => Math.abs(v - c.patch_matrix[l][p]))));
    rows.push([`${k} kernels, reference engine`, worst(referencePatchingSweep(model, input))]);
    rows.push([`${k} kernels, fast engine`, worst(await fastPatchingSweep(model, input))]);
  }
  setKernels(before);
  return rows;
}

/** In a child (--forward-peak T): load the checkpoint, run one forward of T tokens, exit; ./peak-rss.ts prints the peak. */
function forwardPeakChild(T: number): void {
  const model = loadGPT(CKPT);
  model.forward(Array.from({ length: T }, (_, i) => (i * 7919 + 13) % model.config.vocab_size));
}

/** The peak resident memory (VmHWM) of a child that loads the checkpoint and runs one forward of T tokens. */
function forwardPeakKiB(T: number): number | string {
  const preload = pathToFileURL(path.join(root, 'bench', 'peak-rss.ts')).href;
  const r = spawnSync(process.execPath, [...childExecArgv(), '--import', preload, fileURLToPath(import.meta.url), '--forward-peak', String(T)], {
    cwd: root, encoding: 'utf8', maxBuffer: 16 << 20, env: { ...process.env, MINGPT_QUIET: '1' },
  });
  const m = (r.stderr ?? '').match(/\[peak-rss-kib\] (\d+)/);
  return r.status === 0 && m ? Number(m[1]) : `failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`;
}

/** Processor time of this process over `ms` of doing nothing, with the kernel threads up (after a second for the garbage collector to finish). */
async function idleCpuMs(ms: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 1000));
  const c0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, ms));
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

/** What bounds a forward of T tokens, from where its time went. */
function bound(f: ForwardFigure, vocabShare: number): string {
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const where = `matmul ${pct(f.shares.matmul)} of this thread's time, attention ${pct(f.shares.attention)}, the rest ${pct(f.shares.other)}`;
  if (f.T <= 32) return `${where}: memory, each weight read from it for only ${f.T} rows, so the products wait on it (the kernel table's cached rates are the ceiling); the vocabulary projection is ${pct(vocabShare)} of the flops and 154 MB of the weights`;
  if (f.shares.attention < 0.15) return `${where}: the matmul, at the 128-bit SIMD multiply-add rate (WebAssembly's 128-bit vectors: half the lanes of AVX2, a quarter of AVX-512)`;
  return `${where}: the matmul at the 128-bit SIMD rate, and the attention, which grows with T²`;
}

const COMMAND = {
  usage: 'npm run bench --',
  description: `
How fast the model runs on GPT-2 small's shape (a random checkpoint made once into .bench/): one
forward at several lengths beside PyTorch's, memory, idleness, the activation-patching sweep, the
kernels alone.`,
  options: {
    runs: { type: 'int', default: 5, min: 1, max: 1000, metavar: 'N', help: 'runs per timing (the median is reported; fewer for long texts)' },
    lengths: { type: 'string', metavar: 'T,T,…', help: 'the forward-pass lengths in tokens (default 11,128,512,1024; 11,128 with --kernels js)' },
    kernels: MODEL_OPTIONS.kernels,
    'no-pytorch': { type: 'boolean', help: "skip PyTorch's times (also skipped, with a note, without a python3 with torch)" },
    'no-reference': { type: 'boolean', help: 'skip the reference sweep (about 2 minutes)' },
    'no-generate': { type: 'boolean', help: 'skip the generate.ts child run (peak memory)' },
    'make-checkpoint': { type: 'boolean', help: 'only write the random checkpoint (what the bench runs in a child process)' },
    'forward-peak': { type: 'int', min: 1, max: 1024, metavar: 'T', help: 'only load the checkpoint and run one forward of T tokens (the child whose peak memory the bench reports)' },
  },
} as const satisfies CommandSpec;

async function main(argv: readonly string[]): Promise<void> {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return void process.stdout.write(helpText(COMMAND));
  if (a['make-checkpoint']) return makeCheckpoint(CKPT);
  if (a['forward-peak'] !== undefined) return forwardPeakChild(a['forward-peak']);
  const { runs } = a;
  const doReference = !a['no-reference'];
  const doGenerate = !a['no-generate'];
  const doPyTorch = !a['no-pytorch'];
  const note = applyKernels({ kernels: a.kernels });
  if (note) console.log(note);
  const kernels = kernelsName();
  const lengths = (a.lengths ?? (kernels === 'js' ? '11,128' : LENGTH_TARGETS.map(([t]) => t).join(','))).split(',').map(Number);
  if (!lengths.every((t) => Number.isInteger(t) && t >= 1 && t <= 1024)) throw new UsageError(`--lengths must be token counts from 1 to 1024, separated by commas; got ${JSON.stringify(a.lengths)}`);

  ensureCheckpoint();
  const ckptBytes = fs.statSync(path.join(CKPT, 'model.safetensors')).size;
  const simdNote = simdSupport().module ? `WebAssembly SIMD${simdSupport().relaxed ? ' (relaxed)' : ''}` : `no SIMD: ${simdSupport().reason}`;
  const load = () => os.loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism()} cores, load average ${load()}`);
  console.log(`kernels: ${kernels} (${simdNote}; --kernels simd|js), kernel threads: ${kernelThreads()}`);
  console.log(`checkpoint: ${path.relative(root, CKPT)}/model.safetensors, ${(ckptBytes / 1e6).toFixed(0)} MB (random weights, GPT-2 small's shape)\n`);

  // the first load also fills the page cache; the timed loads come at the end
  let t0 = performance.now();
  const model = loadGPT(CKPT);
  const firstLoad = performance.now() - t0;
  const weightBytes = model.params.length * 4; // float32 size of the weights (the file also holds the attention masks)
  const L = model.config.n_layer, C = model.config.n_embd, V = model.config.vocab_size;

  // 1. one full forward pass at each length, and PyTorch's
  const figures = await timeForwards(model, lengths, runs);
  const torchNote = doPyTorch ? addPyTorch(figures, runs) : 'PyTorch: skipped (--no-pytorch)';
  const target = new Map(LENGTH_TARGETS);
  console.log(`one full forward pass (logits at every position), ${kernels} kernels; ${torchNote}`);
  console.log(`  ${'tokens'.padEnd(7)} ${'GFLOP'.padEnd(7)} ${'this project'.padEnd(24)} ${'GFLOP/s'.padEnd(8)} ${'PyTorch'.padEnd(30)} ratio (target)`);
  for (const f of figures) {
    const ours = `${secs(f.wall_s * 1000)} (cpu ${f.cpu_s.toFixed(2)} s)`;
    const theirs = f.torch ? `${secs(f.torch.wall_s * 1000)} (cpu ${f.torch.cpu_s.toFixed(2)} s, ${f.torch.threads} thr)` : '–';
    const ratio = f.torch ? f.wall_s / f.torch.wall_s : null;
    const t = target.get(f.T);
    const verdict = ratio === null || t === undefined ? (t !== undefined ? `(≤ ${t})` : '') : `${ratio.toFixed(2)} (≤ ${t}: ${ratio <= t ? 'met' : 'MISSED'})`;
    console.log(`  ${String(f.T).padEnd(7)} ${f.gflop.toFixed(1).padEnd(7)} ${ours.padEnd(24)} ${(f.gflop / f.wall_s).toFixed(1).padEnd(8)} ${theirs.padEnd(30)} ${verdict}`);
  }
  console.log('  what bounds each (a profile of this thread, one forward):');
  for (const f of figures) console.log(`    ${String(f.T).padStart(4)} tokens: ${bound(f, (2 * f.T * V * C) / (f.gflop * 1e9))}`);
  console.log(`  load average during these: ${load()}\n`);

  // 2. memory and idleness
  const peakT = Math.max(...lengths);
  const peak = forwardPeakKiB(peakT);
  const limitKiB = (weightBytes + 450e6) / 1024;
  if (typeof peak === 'string') console.log(`peak memory of a ${peakT}-token forward (child process): ${peak}`);
  else console.log(`peak memory of a ${peakT}-token forward (child process, VmHWM): ${mib(peak)} = the weights (${mib(weightBytes / 1024)}) + ${mib(peak - weightBytes / 1024)}; target ≤ weights + 450 MB: ${peak <= limitKiB ? 'met' : 'MISSED'} (the logits alone: ${mib((peakT * V * 4) / 1024)})`);
  const items = kernelThreadItems();
  const idle = await idleCpuMs(3000);
  console.log(`an idle process, kernel threads up: ${idle.toFixed(1)} ms of processor time in 3 s (helpers sleep in Atomics.wait); items of shared kernel calls done by helper threads so far: ${items.helpers} of ${items.main + items.helpers}\n`);

  // 3. the activation-patching sweep of the assignment
  const bpe = new BPETokenizer();
  const input: PatchingInput = {
    clean_ids: bpe.encode(CLEAN), corrupt_ids: bpe.encode(CORRUPT),
    clean_token_id: bpe.encode(' Jones')[0], corrupt_token_id: bpe.encode(' Smith')[0],
  };
  const T = input.clean_ids.length;
  console.log(`the sweep: ${JSON.stringify(CLEAN)} vs ${JSON.stringify(CORRUPT)}, ${T} tokens; ${L} × ${T} = ${L * T} patched runs`);
  t0 = performance.now();
  const fast = await fastPatchingSweep(model, input);
  const fastCold = performance.now() - t0;
  const fastMs = median(await timeAsync(runs, () => fastPatchingSweep(model, input)));
  console.log(`  fast engine:                     ${secs(fastMs)}   (median of ${runs}; first call: ${secs(fastCold)})`);
  let kernelsDiff: number | null = null;
  if (kernels === 'simd') { // the same sweep with the other kernels: do they agree?
    setKernels('js');
    const viaJs = await fastPatchingSweep(model, input);
    setKernels(kernels);
    kernelsDiff = maxAbsDiff(fast, viaJs);
    console.log(`  simd vs js kernels, sweep matrix: max |difference| ${kernelsDiff.toExponential(2)}`);
  }
  const sweepProfile = await profile(() => fastPatchingSweep(model, input));
  console.log('  profile of a fast sweep (this thread):');
  for (const [k, share] of sweepProfile.slice(0, 5)) console.log(`    ${(share * 100).toFixed(1).padStart(5)}%  ${k}`);
  let refMs: number | null = null;
  if (doReference) {
    const fwd11 = figures.find((f) => f.T <= 16)?.wall_s ?? 0.1;
    const refRuns = fwd11 * 1000 * (2 + L * T) > 20_000 ? 1 : Math.min(runs, 3);
    const times: number[] = [];
    let ref: PatchingResult | null = null;
    for (let i = 0; i < refRuns; i++) {
      t0 = performance.now();
      ref = referencePatchingSweep(model, input);
      times.push(performance.now() - t0);
    }
    refMs = median(times);
    console.log(`  reference path (${2 + L * T} full forwards):  ${secs(refMs)}   (${refRuns === 1 ? '1 run only: it is slow' : `median of ${refRuns}`})`);
    console.log(`  fast vs reference matrix: max |difference| ${maxAbsDiff(fast, ref!).toExponential(2)} (allowed 1e-4)`);
  }

  // 3b. the same sweep on a 46-token pair, beside PyTorch's
  const input46 = pair46(bpe);
  const sweep46: SweepFigure = await timeSweep(model, input46, Math.min(runs, 3));
  const torchSweepNote = doPyTorch ? addPyTorchSweep(sweep46, input46, CKPT) : 'PyTorch: skipped (--no-pytorch)';
  const L46 = `${L} × ${input46.clean_ids.length} = ${L * input46.clean_ids.length} cells`;
  console.log(`\nthe sweep on a ${input46.clean_ids.length}-token pair (bench/sweep_pair.ts; texts differing at position 1), ${L46}; ${torchSweepNote}`);
  console.log(`  fast engine:                     ${secs(sweep46.wall_s * 1000)} (cpu ${sweep46.cpu_s.toFixed(1)} s; median of ${sweep46.runs})`);
  if (sweep46.torch) {
    console.log(`  PyTorch:                         ${secs(sweep46.torch.wall_s * 1000)} (cpu ${sweep46.torch.cpu_s.toFixed(1)} s); ratio ${(sweep46.wall_s / sweep46.torch.wall_s).toFixed(2)} (target < 1)`);
    console.log(`  fast engine vs PyTorch, matrix: max |difference| ${maxMatrixDiff(sweep46.matrix, sweep46.torch.matrix).toExponential(2)} (float32, the same weights)`);
  }
  console.log(`  load average: ${load()}`);

  // 4. loading, from a warm page cache
  const loads = timeSync(Math.max(3, Math.min(runs, 5)), () => void loadGPT(CKPT));
  const loadMs = median(loads);
  console.log(`\nloading the checkpoint (warm page cache):       ${secs(loadMs)}   (median of ${loads.length}; first load ${secs(firstLoad)})`);

  // 5. every engine and kernel against the PyTorch fixture
  const fixtures = await fixtureAgreement();
  const fixtureWorst = Math.max(...fixtures.map(([, d]) => d));

  // 6. generate.ts end to end, as a child process
  let gen: ReturnType<typeof runGenerate> | null = null;
  if (doGenerate) {
    gen = runGenerate();
    if (typeof gen === 'string') console.log(`generate.ts: ${gen}`);
    else {
      const t = gen.sweep_s !== undefined ? `, its sweep ${gen.sweep_s.toFixed(2)} s, its load ${gen.load_s?.toFixed(2)} s` : '';
      console.log(`generate.ts --weights ${path.relative(root, CKPT)} (child process): peak RSS ${mib(gen.peakKiB)}, ${gen.wall_s.toFixed(1)} s in all${t}`);
    }
  }

  // 7. the kernels alone
  const rates = await kernelRates(runs);
  await stopKernelThreads();

  // summary
  const verdict = (ok: boolean, missedBy: string) => (ok ? 'met' : `MISSED (${missedBy})`);
  console.log(`\nsummary (GPT-2 small shape, random weights, ${kernels} kernels)`);
  const line = (what: string, value: string, goal: string) => console.log(`  ${what.padEnd(36)} ${value.padEnd(16)} ${goal}`);
  for (const f of figures) {
    const t = target.get(f.T);
    const vs = f.torch ? `PyTorch ${secs(f.torch.wall_s * 1000)}, ratio ${(f.wall_s / f.torch.wall_s).toFixed(2)}` : 'no PyTorch figure';
    line(`one forward, ${f.T} tokens`, secs(f.wall_s * 1000), `${vs}${t !== undefined ? `; target ratio ≤ ${t}` : ''}`);
  }
  line('sweep, fast engine', secs(fastMs), `target ≤ 1.300 s: ${verdict(fastMs <= 1300, `${(fastMs / 1300).toFixed(2)}× the target`)}`);
  const t46 = sweep46.torch;
  line(`sweep, ${input46.clean_ids.length} tokens, fast engine`, secs(sweep46.wall_s * 1000), t46
    ? `PyTorch ${secs(t46.wall_s * 1000)}, ratio ${(sweep46.wall_s / t46.wall_s).toFixed(2)}; target < 1: ${verdict(sweep46.wall_s < t46.wall_s, 'slower than PyTorch')}`
    : 'no PyTorch figure');
  if (refMs !== null) line('sweep, reference path', secs(refMs), `reference / fast = ${(refMs / fastMs).toFixed(1)}×`);
  if (gen && typeof gen !== 'string') {
    const genLimitKiB = (weightBytes + 200 * 2 ** 20) / 1024;
    line('peak RSS of generate.ts', mib(gen.peakKiB), `target ≤ weights (${mib(weightBytes / 1024)}) + 200 MiB = ${mib(genLimitKiB)}: ${verdict(gen.peakKiB <= genLimitKiB, `${mib(gen.peakKiB - genLimitKiB)} over`)}`);
  }
  if (kernelsDiff !== null) line('simd vs js, sweep matrix', kernelsDiff.toExponential(2), `target ≤ 1e-4: ${verdict(kernelsDiff <= 1e-4, 'too far apart')}`);
  line('engines × kernels vs PyTorch fixture', fixtureWorst.toExponential(2), `target ≤ 1e-3: ${verdict(fixtureWorst <= 1e-3, fixtures.filter(([, d]) => d > 1e-3).map(([w]) => w).join(', '))}`);
  line('loading the checkpoint (warm)', secs(loadMs), 'target < 2 s');
  line('peak RSS of this benchmark', mib(process.resourceUsage().maxRSS), '');

  console.log('\nthe kernels alone, GFLOP/s (best of several; weights in the kernel memory; attention: one layer of GPT-2 small)');
  console.log(`  ${'shape'.padEnd(36)} ${'size'.padEnd(18)} ${'simd, 1 thread'.padEnd(16)} ${`simd, ${os.availableParallelism()} threads`.padEnd(16)} js, 1 thread`);
  const g = (x: number | null) => (x === null ? '–' : x.toFixed(1));
  for (const r of rates) console.log(`  ${r.what.padEnd(36)} ${r.size.padEnd(18)} ${g(r.simd1).padEnd(16)} ${g(r.simdAll).padEnd(16)} ${g(r.js)}`);
  console.log(`  (one core's 128-bit multiply-add peak: 16 flops per cycle; load average now ${load()})`);
}

await runCli(main, COMMAND.usage);
