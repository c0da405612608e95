/**
 * The activation-patching assignment, end to end (assignments/activation-patching/README.md).
 *
 *   npx tsx generate.ts                      # the assignment's example on GPT-2 small
 *   npx tsx generate.ts --help               # every option
 *   npx tsx generate.ts --clean "..." --corrupt "..." --clean-token " A" --corrupt-token " B"
 *   npx tsx generate.ts --patch head         # which attention heads carry the difference
 *
 * This file is the command line only: parse, run, print, write. The experiment itself is in
 * assignments/activation-patching/ (experiment.ts runs it, report.ts prints it, charts.ts draws it).
 * In order:
 *   1. tokenize both texts, print them as index:token, and refuse inputs the experiment cannot
 *      use (different lengths, a target word that is not one token, too long, empty), all
 *      before the model is loaded or downloaded;
 *   2. run the clean text; print the top-N next tokens, then its logit lens and direct logit
 *      attribution;
 *   3. run the corrupted text; print logit(corrupt token) − logit(clean token);
 *   4. patch: for every layer and position (or head), run the corrupted text again with that one
 *      activation taken from the clean run, and record the same difference;
 *   5. print the result as a coloured heatmap with a few sentences on how to read it;
 *   6. write patching.json and the charts (heatmap, logit lens, DLA) to --out, and the clean
 *      run's cache to --save-cache, all at the end, so a run that fails writes nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BPETokenizer, tokenStrings } from './mingpt/bpe.ts';
import type { GPT } from './mingpt/model.ts';
import type { Engine } from './sweep/sweep.ts';
import { firstDifference } from './lens/metrics.ts';
import { stopKernelThreads } from './mingpt/kernels/simd/threads.ts';
import { ProgressBar } from './io/progress.ts';
import { collectGarbage } from './cli/memory.ts';
import { helpText, parseArgs, type CommandSpec } from './cli/args.ts';
import { InputError } from './io/errors.ts';
import { OutputWriter, installTemporary, temporaryFor } from './io/output.ts';
import { notRegularFile, samePath } from './io/files.ts';
import { pretrainedFiles } from './io/pretrained.ts';
import { shown } from './io/show.ts';
import { MODEL_OPTIONS, checkModelChoice, hasRandomWeights, knownContext, loadModel, runCli, type ModelChoice } from './cli/command.ts';
import { colorDepth, terminalWidth } from './cli/terminal.ts';
import {
  PATCH_KINDS, checkAgainstModel, checkContext, checkTextLength, resultsJson, runPatch, runTexts, tokenizeInputs, topTokens,
  type PatchKind, type TextsAndTargets,
} from './assignments/activation-patching/experiment.ts';
import {
  answerTokenWarnings, printAttribution, printPatchPlan, printPatchResult, printTargets, printTokens, printTop, section, sweepCost, type Printer,
} from './assignments/activation-patching/report.ts';
import { METHODS, comparePatches, estimatePatch, printComparison, type Method } from './assignments/activation-patching/atp.ts';

// These were generate.ts's own; they live in the assignment's folder now.
export { readingAid } from './assignments/activation-patching/report.ts';
export { targetTokenId, tokenizeInputs, topTokens } from './assignments/activation-patching/experiment.ts';

// -----------------------------------------------------------------------------
// the command line

const DEFAULTS = {
  clean: 'Michelle Jones was a top-notch student. Michelle',
  corrupt: 'Michelle Smith was a top-notch student. Michelle',
  cleanToken: ' Jones',
  corruptToken: ' Smith',
};

export const COMMAND = {
  usage: 'npx tsx generate.ts',
  description: `
Activation patching on GPT-2: run a clean and a corrupted text that differ in a token or two,
then, for every layer and every position (or every attention head), copy that one activation
from the clean run into the corrupted run and measure logit(corrupt token) − logit(clean token)
at the last position. The result shows which activations carry the information that tells the
two texts apart. The clean run's logit lens and direct logit attribution come with it.`,
  options: {
    ...MODEL_OPTIONS,
    clean: { type: 'string', default: DEFAULTS.clean, metavar: 'TEXT', help: 'the clean text' },
    corrupt: { type: 'string', default: DEFAULTS.corrupt, metavar: 'TEXT', help: 'the corrupted text; must have as many tokens as the clean one' },
    'clean-token': { type: 'string', default: DEFAULTS.cleanToken, metavar: 'TOKEN', help: 'the answer the clean text points to; exactly one token, mind the leading space' },
    'corrupt-token': { type: 'string', default: DEFAULTS.corruptToken, metavar: 'TOKEN', help: 'the answer the corrupted text points to; exactly one token' },
    patch: {
      type: 'string', default: 'resid_post', choices: PATCH_KINDS,
      help: "what to patch: a block's output (resid_post, the assignment), its input (resid_pre), the stream between attention and MLP (resid_mid) or the attention or MLP output (attn_out, mlp_out), per layer × position; or each attention head's output z at every position (head: layer × head) or at one position (head-pos: layer × head × position)",
    },
    scale: { type: 'string', default: 'zero', choices: ['zero', 'runs'], help: "the heatmap's colour scale: 'zero' centres it on zero; 'runs' spans the clean run's value to the corrupted run's" },
    top: { type: 'int', default: 20, min: 1, max: 1000, metavar: 'N', help: 'how many most probable next tokens to list' },
    out: { type: 'string', default: 'out/', metavar: 'DIR', help: 'folder for the results (created when missing)' },
    'save-cache': { type: 'string', metavar: 'FILE', help: "also write the clean run's activations, every hook point under its TransformerLens name, to FILE (.safetensors)" },
    engine: { type: 'string', default: 'fast', choices: ['fast', 'reference'], help: "engine of the resid_post sweep: 'reference' does one full forward pass per cell, 'fast' only recomputes what a patch changes (same numbers)" },
    method: {
      type: 'string', default: 'exact', choices: [...METHODS],
      help: "'exact': one patched run per cell; 'atp': attribution patching, every cell estimated to first order from two passes (the clean and corrupted runs forward as one batch, the corrupted one backward); 'both': the two side by side, their correlation and the cells where they disagree most",
    },
  },
  epilog: `
writes into --out: patching.json (all numbers), and three charts, each as a vega-lite spec
(.vl.json), .svg, .png and an interactive .html that works offline: heatmap.* (the patching
result), logit_lens.*, dla.* (direct logit attribution); with --method both also comparison.*
(the exact and the estimated heatmaps side by side).

examples:
  npx tsx generate.ts
  npx tsx generate.ts --weights test/fixtures/gpt2-tiny --out /tmp/tiny   # offline, a tiny model
  npx tsx generate.ts --patch head --save-cache out/clean.safetensors
  npx tsx generate.ts --patch head --method both   # attribution patching beside the exact patch
  npx tsx generate.ts --corrupt "Jessica Jones was a top-notch student. Michelle"
  npx tsx generate.ts --clean "The capital of France is" --corrupt "The capital of Italy is" \\
      --clean-token " Paris" --corrupt-token " Rome"
more pairs to try, and how to read the charts: assignments/activation-patching/README.md`,
} as const satisfies CommandSpec;

interface Options extends TextsAndTargets, ModelChoice {
  patch: PatchKind;
  scale: 'zero' | 'runs';
  top: number;
  out: string;
  saveCache?: string;
  engine: Engine;
  engineGiven: boolean;
  method: Method;
}

function readOptions(argv: readonly string[]): Options | 'help' {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return 'help';
  const choice = checkModelChoice(argv, a);
  const saveCache = a['save-cache'];
  if (saveCache === '') throw new InputError('--save-cache needs a file name, e.g. --save-cache out/clean.safetensors');
  return {
    ...choice,
    model: choice.weights === undefined ? choice.model : undefined,
    clean: a.clean,
    corrupt: a.corrupt,
    cleanToken: a['clean-token'],
    corruptToken: a['corrupt-token'],
    patch: a.patch,
    scale: a.scale,
    top: a.top,
    out: a.out,
    saveCache,
    engine: a.engine,
    engineGiven: argv.some((x) => x === '--engine' || x.startsWith('--engine=')),
    method: a.method,
  };
}

/**
 * Where --save-cache's file is staged until the end: its folder, or the nearest folder above it
 * that exists (the rest is created at the end, with the other outputs). Checked before the long
 * work, so a bad path costs nothing: never a folder, never a file the model is read from, never
 * a file of the output set (those are replaced by the run; the cache must not destroy them).
 */
function cacheStagingDir(o: Options): string {
  const file = o.saveCache!;
  const name = `--save-cache ${shown(file)}`;
  const target = path.resolve(file);
  const isDir = fs.existsSync(target) && fs.statSync(target).isDirectory();
  if (isDir || /[\\/]$/.test(file) || path.basename(target) === '') {
    throw new InputError(`${name} is a folder; the cache is one file: name it, e.g. --save-cache ${path.join(file, 'clean.safetensors')}`);
  }
  if (fs.existsSync(target) && notRegularFile(fs.statSync(target))) throw new InputError(`${name}: something that is not a file is in the way`);
  const read = o.weights !== undefined ? weightsFiles(o.weights) : pretrainedFiles(o.model ?? 'gpt2');
  const hit = read.find((f) => samePath(f, target));
  if (hit) throw new InputError(`${name} is ${hit}, a file the model is read from: writing the cache there would destroy it; choose another file, e.g. --save-cache out/clean.safetensors`);
  if (samePath(path.dirname(target), o.out) && !target.endsWith('.safetensors')) {
    throw new InputError(`${name} would be in the output folder ${shown(o.out)} under a name its results may use; give the cache a name ending in .safetensors, e.g. --save-cache ${path.join(o.out, 'clean.safetensors')}`);
  }
  let dir = path.dirname(target);
  while (!fs.existsSync(dir)) dir = path.dirname(dir);
  if (!fs.statSync(dir).isDirectory()) throw new InputError(`${name}: ${dir} is a file, so no folder can be made there`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new InputError(`${name}: the folder ${dir} is not writable`);
  }
  return dir;
}

/** The two files of a --weights checkpoint (a folder, or a .safetensors file with config.json beside it). */
function weightsFiles(weights: string): string[] {
  const dir = fs.existsSync(weights) && fs.statSync(weights).isDirectory();
  const folder = dir ? weights : path.dirname(weights);
  return [dir ? path.join(weights, 'model.safetensors') : weights, path.join(folder, 'config.json')];
}

// -----------------------------------------------------------------------------
// the run

export async function main(argv: readonly string[]): Promise<void> {
  const o = readOptions(argv);
  if (o === 'help') {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  const p: Printer = { color: colorDepth(process.stdout), width: terminalWidth(process.stdout), print: (s = '') => process.stdout.write(s + '\n') };

  // 1. tokens: every check that needs no model, before loading (or downloading) one
  const bpe = new BPETokenizer();
  const context = knownContext(o);
  checkTextLength(o, context); // a text far too long is refused before it is tokenized
  const t = tokenizeInputs(bpe, o);
  checkContext(t, context);
  const cleanTokens = tokenStrings(t.clean_ids);
  printTokens(p, o, t);
  for (const note of t.notes) process.stderr.write(note + '\n');
  const given = (name: string) => argv.some((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  const answerGiven = { texts: given('clean') || given('corrupt'), cleanToken: given('clean-token'), corruptToken: given('corrupt-token') };
  for (const warning of answerTokenWarnings(o, t, DEFAULTS, answerGiven)) process.stderr.write(warning + '\n');
  if (o.engineGiven && o.patch !== 'resid_post') process.stderr.write(`note: --engine applies to --patch resid_post only; --patch ${o.patch} uses the generic patch\n`);
  if (o.engineGiven && o.method === 'atp') process.stderr.write('note: --engine applies to the exact patch; --method atp runs none\n');
  const exact = o.method !== 'atp';
  // a bad --save-cache is refused before --out's lock is taken: a refused run never holds the
  // lock another run into the same folder would then meet
  const cacheDir = o.saveCache === undefined ? undefined : cacheStagingDir(o);
  new OutputWriter(o.out).check(); // a bad --out fails now, not after the sweep

  collectGarbage(); // the tokenizer's leftovers go before the weights come in
  const loadStart = performance.now();
  let model: GPT | null = await loadModel(o);
  const load_s = (performance.now() - loadStart) / 1000;
  checkAgainstModel(t, model);
  const cfg = model.config;
  const modelName = o.weights ?? o.model!;
  const randomWeights = hasRandomWeights(model);
  p.print(`\nmodel: ${modelName} (${cfg.n_layer} layers, ${cfg.n_head} heads, ${cfg.n_embd} dims, context ${model.block_size}), loaded in ${load_s.toFixed(1)} s` +
    (randomWeights ? ' — random weights (config.json says so)' : ''));

  // 2–3. the two runs, and the clean run's attribution
  const x = { patch: o.patch, engine: o.engine, keepCache: o.saveCache !== undefined };
  const runsStart = performance.now();
  const runs = runTexts(model, t, x);
  let forward_s = (performance.now() - runsStart) / 1000 / 2; // two runs: the clean one (with its cache and every logit) and the corrupted one
  const top = topTokens(runs.clean_last_logits, o.top);
  printTop(p, t, top, cleanTokens[cleanTokens.length - 1]);
  printTargets(p, o, t, runs.clean_last_logits);
  printAttribution(p, o, runs.logit_lens, runs.dla);
  section(p, '3. corrupted run');
  printTargets(p, o, t, runs.corrupt_last_logits);

  // 4. the patch, and or its estimate ------------------------------------------------------
  const cost = sweepCost(o.patch, o.engine, cfg.n_layer, cfg.n_head, t.clean_ids.length, firstDifference(t.clean_ids, t.corrupt_ids));
  if (exact && cost.passes * forward_s > 10) {
    // a long sweep: time one pass as the patched runs make it (the last position's logits only)
    const passStart = performance.now();
    model.forward(t.corrupt_ids, { logits_at: [t.corrupt_ids.length - 1] });
    forward_s = (performance.now() - passStart) / 1000;
  }
  printPatchPlan(p, o.patch, exact ? o.engine : 'atp', cfg.n_layer, cfg.n_head, t.clean_ids.length, { passes: cost.passes, forward_s });
  let bar: ProgressBar | undefined;
  const estimate = o.method === 'exact' ? undefined : estimatePatch(model, t, o.patch);
  const patch = !exact ? estimate! : await runPatch(model, t, runs, {
    ...x, onStart: (total) => (bar = new ProgressBar({ total, label: 'patching', workDone: cost.share })), onProgress: (done) => bar?.update(done),
  });
  bar?.done();
  p.print(`done in ${patch.sweep_s.toFixed(1)} s${o.method === 'both' ? ` (attribution patching: ${estimate!.sweep_s.toFixed(2)} s)` : ''}`);

  // The clean cache goes to disk now, under a temporary name (renamed into place with the other
  // files at the end, removed if the run fails or is interrupted before); then the weights, the
  // cache and the kernel threads (each holds the weights' memory) give their memory back before
  // the charts are drawn.
  let stagedCache: string | undefined;
  if (o.saveCache !== undefined && cacheDir !== undefined && runs.cache) {
    stagedCache = temporaryFor(o.saveCache, cacheDir);
    try {
      // the token ids too, so the cache can be matched with its text without our tokenizer
      runs.cache.save(stagedCache, { model: modelName, text: o.clean, token_ids: JSON.stringify(t.clean_ids) });
    } catch (err) {
      const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
      if (!code) throw err;
      throw new InputError(`--save-cache ${shown(o.saveCache)}: the cache could not be written (${code}${code === 'ENOSPC' ? ': the disk is full' : ''}); `
        + `nothing was written, into ${shown(o.out)} neither`);
    }
  }
  runs.cache = undefined;
  await stopKernelThreads();
  model = null;
  collectGarbage();

  // 5. the heatmap in the terminal, and the reading aid --------------------------------
  printPatchResult(p, o, t, runs, patch, { scale: o.scale, n_head: cfg.n_head, randomWeights, estimate: !exact });
  const comparison = o.method === 'both' ? comparePatches(patch, estimate!, cleanTokens) : undefined;
  if (comparison) printComparison(p, comparison, estimate!);

  // 6. the files --------------------------------------------------------------------------
  const out = new OutputWriter(o.out);
  const results = resultsJson({
    model: modelName, random_weights: randomWeights, texts: o, tokens: t, top, runs, patch,
    engine: !exact ? 'atp' : o.patch === 'resid_post' ? o.engine : 'generic', load_s,
  });
  if (comparison) Object.assign(results, { atp_matrix: estimate!.matrix, atp_s: estimate!.sweep_s, comparison });
  out.add('patching.json', JSON.stringify(results, null, 2) + '\n');
  // vega is large; loaded only here so that mistakes in the input are reported at once
  const { chartFiles } = await import('./cli/plot.ts');
  const { comparisonChart, experimentCharts } = await import('./assignments/activation-patching/charts.ts');
  const described = {
    model: modelName, cleanText: o.clean, corruptText: o.corrupt, cleanToken: o.cleanToken, corruptToken: o.corruptToken,
    cleanLogitDiff: runs.clean_logit_diff, corruptLogitDiff: runs.corrupt_logit_diff, randomWeights,
  };
  let pngMissing = false;
  const charts = experimentCharts(described, patch, cleanTokens, runs.logit_lens, runs.dla, o.scale);
  if (comparison) charts.push(comparisonChart(described, patch, estimate!, comparison, cleanTokens));
  for (const chart of charts) {
    const { files, png } = await chartFiles(chart.name, chart.spec, chart.title, { description: chart.description });
    for (const [name, data] of files) out.add(name, data);
    pngMissing ||= !png;
  }
  const written = out.commit();
  if (stagedCache) {
    installTemporary(stagedCache, o.saveCache!);
    written.push(path.resolve(o.saveCache!));
  }
  section(p, `6. files in ${o.out}${stagedCache ? ` and ${o.saveCache}` : ''}`);
  for (const f of written) {
    const rel = path.relative(process.cwd(), f);
    p.print(`  ${rel.startsWith('..') ? f : rel}`);
  }
  if (pngMissing) p.print('  (the .png files skipped: the optional PNG renderer @resvg/resvg-js is not installed)');
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, 'npx tsx generate.ts');
}
