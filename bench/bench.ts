/**
 * npm run bench: how long the activation-patching experiment takes on GPT-2 small's shape.
 *
 *   npm run bench                         # everything (a few minutes; the reference sweep is slow)
 *   npm run bench -- --runs 3             # runs per timing (median reported; default 5)
 *   npm run bench -- --no-reference       # skip the reference sweep (about 2 minutes here)
 *   npm run bench -- --no-generate        # skip the generate.ts child run (peak memory)
 *   npm run bench -- --kernels js         # the readable kernels instead of WebAssembly SIMD
 *
 * The model is a random checkpoint with GPT-2 small's exact shape (12 layers, 12 heads, 768
 * dims, 50257 tokens, 1024 positions) in the Hugging Face layout of openai-community/gpt2:
 * keys without the `transformer.` prefix, Conv1D weights stored [in, out], the
 * `h.{i}.attn.bias` mask buffers, no lm_head. It goes through the real loader; real weights
 * would change no timing. Made once, in a child process, into .bench/gpt2-random/ (git-ignored).
 *
 * All timings are wall-clock, in this one process, one after the other; each figure is the
 * median of --runs runs after a warm-up run. Other processes on the machine slow them down:
 * the load average is printed with the figures.
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
import { applyKernels } from '../cli/command.ts';
import { simdSupport } from '../mingpt/kernels/simd/memory.ts';
import { kernelThreads, stopKernelThreads } from '../mingpt/kernels/simd/threads.ts';
import { kernelRates } from './kernel_rates.ts';
import { profile } from './profile.ts';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.ts';
import { RNG } from '../mingpt/utils.ts';
import { loadGPT } from '../io/load.ts';

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

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--make-checkpoint') return makeCheckpoint(CKPT);
  const opt = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const runs = Number(opt('--runs') ?? 5);
  const doReference = !argv.includes('--no-reference');
  const doGenerate = !argv.includes('--no-generate');
  const kernelsArg = opt('--kernels');
  if (kernelsArg !== undefined && !(KERNELS as readonly string[]).includes(kernelsArg)) throw new Error(`--kernels must be simd or js, got '${kernelsArg}'`);
  const note = applyKernels({ kernels: kernelsArg });
  if (note) console.log(note);
  const kernels = kernelsName();

  ensureCheckpoint();
  const ckptBytes = fs.statSync(path.join(CKPT, 'model.safetensors')).size;
  const simdNote = simdSupport().module ? `WebAssembly SIMD${simdSupport().relaxed ? ' (relaxed)' : ''}` : `no SIMD: ${simdSupport().reason}`;
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism()} cores, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log(`kernels: ${kernels} (${simdNote}; --kernels simd|js), kernel threads: ${kernelThreads()}`);
  console.log(`checkpoint: ${path.relative(root, CKPT)}/model.safetensors, ${(ckptBytes / 1e6).toFixed(0)} MB (random weights, GPT-2 small's shape)\n`);

  // the first load also fills the page cache; the timed loads come at the end
  let t0 = performance.now();
  const model = loadGPT(CKPT);
  const firstLoad = performance.now() - t0;
  const weightBytes = model.params.length * 4; // float32 size of the weights (the file also holds the attention masks)

  const bpe = new BPETokenizer();
  const input: PatchingInput = {
    clean_ids: bpe.encode(CLEAN), corrupt_ids: bpe.encode(CORRUPT),
    clean_token_id: bpe.encode(' Jones')[0], corrupt_token_id: bpe.encode(' Smith')[0],
  };
  const T = input.clean_ids.length, L = model.config.n_layer as number, C = model.config.n_embd as number;
  const V = model.config.vocab_size as number;
  console.log(`input: ${JSON.stringify(CLEAN)} vs ${JSON.stringify(CORRUPT)}, ${T} tokens; ${L} × ${T} = ${L * T} patched runs\n`);

  // 1. one full forward pass (the readable path, all T positions, full vocabulary)
  for (let i = 0; i < 3; i++) {
    model.forward(input.clean_ids); // warm-up; the kernel threads start meanwhile
    await new Promise((r) => setTimeout(r, 20));
  }
  const fwd = median(timeSync(Math.max(runs, 9), () => model.forward(input.clean_ids)));
  const fwdFlop = 2 * T * (L * 12 * C * C + V * C);
  console.log(`one full forward (${T} tokens, ${(fwdFlop / 1e9).toFixed(2)} GFLOP):   ${secs(fwd)}   (median of ${Math.max(runs, 9)}; ${(fwdFlop / (fwd / 1000) / 1e9).toFixed(1)} GFLOP/s)`);

  // 2. the fast engine
  t0 = performance.now();
  const fast = await fastPatchingSweep(model, input);
  const fastCold = performance.now() - t0;
  const fastMs = median(await timeAsync(runs, () => fastPatchingSweep(model, input)));
  console.log(`sweep, fast engine${kernels === 'simd' ? ' (products on every core)' : ''}:                 ${secs(fastMs)}   (median of ${runs}; first call: ${secs(fastCold)})`);

  // the same sweep with the other kernels: do they agree?
  let kernelsDiff: number | null = null;
  if (kernels === 'simd') {
    setKernels('js');
    const viaJs = await fastPatchingSweep(model, input);
    setKernels(kernels);
    kernelsDiff = maxAbsDiff(fast, viaJs);
    console.log(`  simd vs js kernels, sweep matrix: max |difference| ${kernelsDiff.toExponential(2)}`);
  }

  // where the time goes
  let firstDiff = 0;
  while (input.clean_ids[firstDiff] === input.corrupt_ids[firstDiff]) firstDiff++;
  // matmul work of the patched runs (sweep/fast.ts): run (l, p) has rows p … T−1 in blocks l+1 … L−2
  // (24·C² per row and block), and in the last block their keys and values (6·C² per row) but row T−1 alone after that (18·C²)
  let sweepFlop = 0;
  for (let l = 0; l < L - 1; l++) for (let p = firstDiff; p < T; p++) sweepFlop += ((L - 2 - l) * 24 + 6) * C * C * (T - p) + 18 * C * C;
  const baseFlop = 2 * (T * L * 24 * C * C + 2 * V * C);
  const fwdProfile = await profile(() => { for (let i = 0; i < 10; i++) model.forward(input.clean_ids); });
  const sweepProfile = await profile(() => fastPatchingSweep(model, input));
  const rates = await kernelRates(runs);
  const peakBeforeLoads = process.resourceUsage().maxRSS;

  // 3. the reference path: one full forward per cell
  let refMs: number | null = null;
  if (doReference) {
    const refRuns = fwd * (2 + L * T) > 20_000 ? 1 : Math.min(runs, 3);
    const times: number[] = [];
    let ref: PatchingResult | null = null;
    for (let i = 0; i < refRuns; i++) {
      t0 = performance.now();
      ref = referencePatchingSweep(model, input);
      times.push(performance.now() - t0);
    }
    refMs = median(times);
    const note = refRuns === 1 ? '1 run only: it is slow' : `median of ${refRuns}`;
    console.log(`sweep, reference path (${2 + L * T} full forwards):     ${secs(refMs)}   (${note})`);
    console.log(`  fast vs reference matrix: max |difference| ${maxAbsDiff(fast, ref!).toExponential(2)} (allowed 1e-4)`);
  }

  // 4. loading, from a warm page cache
  const loads = timeSync(Math.max(3, Math.min(runs, 5)), () => void loadGPT(CKPT));
  const loadMs = median(loads);
  console.log(`loading the checkpoint (warm page cache):       ${secs(loadMs)}   (median of ${loads.length}; first load ${secs(firstLoad)})`);

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
  await stopKernelThreads();

  // summary
  const peak = process.resourceUsage().maxRSS;
  const verdict = (ok: boolean, missedBy: string) => (ok ? 'met' : `MISSED (${missedBy})`);
  console.log(`\nsummary (GPT-2 small shape, random weights, ${T} tokens, ${kernels} kernels)`);
  const line = (what: string, value: string, target: string) => console.log(`  ${what.padEnd(36)} ${value.padEnd(16)} ${target}`);
  line('one full forward', secs(fwd), `target ≤ 0.080 s: ${verdict(fwd <= 80, `${(fwd / 80).toFixed(2)}× the target`)}; PyTorch 1.13 (1 thread) 0.108 s`);
  line('sweep, fast engine', secs(fastMs), `target ≤ 1.300 s: ${verdict(fastMs <= 1300, `${(fastMs / 1300).toFixed(2)}× the target`)}; PyTorch, one forward per cell: 13.6 s`);
  if (refMs !== null) line('sweep, reference path', secs(refMs), `reference / fast = ${(refMs / fastMs).toFixed(1)}×`);
  if (gen && typeof gen !== 'string') {
    const limitKiB = (weightBytes + 200 * 2 ** 20) / 1024;
    line('peak RSS of generate.ts', mib(gen.peakKiB), `target ≤ weights (${mib(weightBytes / 1024)}) + 200 MiB = ${mib(limitKiB)}: ${verdict(gen.peakKiB <= limitKiB, `${mib(gen.peakKiB - limitKiB)} over`)}`);
  }
  if (kernelsDiff !== null) line('simd vs js, sweep matrix', kernelsDiff.toExponential(2), `target ≤ 1e-4: ${verdict(kernelsDiff <= 1e-4, 'too far apart')}`);
  line('engines × kernels vs PyTorch fixture', fixtureWorst.toExponential(2), `target ≤ 1e-3: ${verdict(fixtureWorst <= 1e-3, fixtures.filter(([, d]) => d > 1e-3).map(([w]) => w).join(', '))}`);
  line('loading the checkpoint (warm)', secs(loadMs), 'target < 2 s');
  line('peak RSS of this benchmark', mib(peak), `(${mib(peakBeforeLoads)} before the repeated loads)`);

  console.log('\nmatmulForward, GFLOP/s (best of several; weights in the kernel memory)');
  console.log(`  ${'shape'.padEnd(36)} ${'BT × C × OC'.padEnd(18)} ${'simd, 1 thread'.padEnd(16)} ${`simd, ${os.availableParallelism()} threads`.padEnd(16)} js, 1 thread`);
  const g = (x: number | null) => (x === null ? '–' : x.toFixed(1));
  for (const r of rates) console.log(`  ${r.what.padEnd(36)} ${`${r.BT} × ${r.C} × ${r.OC}`.padEnd(18)} ${g(r.simd1).padEnd(16)} ${g(r.simdAll).padEnd(16)} ${g(r.js)}`);

  console.log('\nwhere the time goes');
  console.log(`  one forward: ${(fwdFlop / 1e9).toFixed(2)} GFLOP of matmul (${((2 * T * V * C) / fwdFlop * 100).toFixed(0)}% of it the vocabulary projection at all ${T} positions)`);
  for (const [k, share] of fwdProfile.slice(0, 6)) console.log(`    ${(share * 100).toFixed(1).padStart(5)}%  ${k}`);
  console.log(`  the fast sweep: ${(sweepFlop / 1e9).toFixed(1)} GFLOP of matmul in the patched runs + ${(baseFlop / 1e9).toFixed(1)} in the two base runs; profile of a 1-thread sweep:`);
  for (const [k, share] of sweepProfile.slice(0, 6)) console.log(`    ${(share * 100).toFixed(1).padStart(5)}%  ${k}`);
  const eff = (sweepFlop + baseFlop) / (fastMs / 1000) / 1e9;
  console.log(`  the sweep ran at ${eff.toFixed(1)} GFLOP/s`);
  console.log(`  load average now: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (other processes on the ${os.availableParallelism()} cores slow every figure)`);
  console.log('  (the induction experiment is not timed here: its default run takes many minutes; see its README)');
}

await main();
