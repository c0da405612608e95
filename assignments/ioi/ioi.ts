/**
 * The indirect-object-identification experiment (README.md beside this file explains it):
 * Wang et al. 2022's tools, on GPT-2 small or any GPT-2-layout checkpoint.
 *
 *   npx tsx assignments/ioi/ioi.ts                                   # GPT-2 small, 50 prompts
 *   npx tsx assignments/ioi/ioi.ts --weights test/fixtures/gpt2-tiny --prompts test/fixtures/ioi-group.json
 *   npx tsx assignments/ioi/ioi.ts --help
 *
 * In order (experiment.ts does the work, charts.ts draws it):
 *   1. prompts and their ABC twins, grouped by token length (dataset.ts)
 *   2. F = mean logit(IO) − logit(S) at END, accuracy, P(IO)
 *   3. logit lens and direct logit attribution
 *   4. activation patching: each head's z (layer × head), the residual stream (layer × position)
 *   5. attention from END to IO, S1, S2 of the top heads, and their patterns
 *   6. path patching to the logits and to the name movers' queries
 *   7. knockouts: faithfulness, completeness, minimality of a circuit
 *   8. ioi.json and the charts, written together at the end (a failed run writes nothing)
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { GPT } from '../../mingpt/model.ts';
import { BPETokenizer, tokenStrings } from '../../mingpt/bpe.ts';
import { ProgressBar } from '../../io/progress.ts';
import { helpText, parseArgs, type CommandSpec } from '../../cli/args.ts';
import { InputError, UsageError } from '../../io/errors.ts';
import { OutputWriter } from '../../io/output.ts';
import { MODEL_OPTIONS, checkModelChoice, hasRandomWeights, loadModel, runCli } from '../../cli/command.ts';
import { headName, parseHead, type HeadRef } from '../../lens/heads.ts';
import { loadPromptsFile, makeDataset, tokenizePrompts, type IOIPrompt, type PromptGroup } from './dataset.ts';
import {
  PAPER_CIRCUIT, PAPER_NAME_MOVERS, circuitFromClasses, keptHeads, parseHeadList, type Circuit,
} from './circuit.ts';
import {
  basicResults, completenessSets, knockoutResults, pathResults, residSweep,
  type BasicResults, type HeadGrid, type KnockoutResults, type PathResults, type ResidSweep, type StepsProgress,
} from './experiment.ts';

const SCRIPT = 'npx tsx assignments/ioi/ioi.ts';

// -----------------------------------------------------------------------------------------------
// the command line

export const COMMAND: CommandSpec = {
  usage: SCRIPT,
  description: `
Indirect object identification ("When Mary and John went to the store, John gave a drink to" ->
" Mary") with the tools of Wang et al. 2022: the logit difference IO − S, logit lens and direct
logit attribution, activation patching, attention, path patching, and knockouts that test a
circuit's faithfulness, completeness and minimality.`,
  options: {
    ...MODEL_OPTIONS,
    n: { type: 'int', default: 50, min: 1, max: 10000, metavar: 'N', help: 'how many prompts to generate (spread over the 15 templates)' },
    seed: { type: 'int', default: 0, min: 0, metavar: 'S', help: 'seed of the generated prompts and of the random completeness sets' },
    prompts: { type: 'string', metavar: 'FILE', help: 'read the prompts from a JSON file instead: a list of {clean, corrupt, io, s} (optional "group"), or an object with it under "prompts" (and optionally "circuit", "completeness_sets", "name_movers")' },
    circuit: { type: 'string', metavar: 'paper|l.h,...', help: "the circuit to test with knockouts: 'paper' (GPT-2 small's 26 heads) or a list of heads (default: the prompts file's, else config.json's known_heads, else 'paper' on a 12 × 12-head model, else the name movers and the heads that matter most to their queries)" },
    'name-movers': { type: 'string', metavar: 'l.h,...', help: "receivers of path patching (default: 9.9,9.6,10.0 on GPT-2 small; else the prompts file's or config.json's name movers; else the three heads with the largest direct effect)" },
    positions: { type: 'string', default: 'all', choices: ['all', 'paper'], metavar: 'WHERE', help: "where knockouts keep the circuit's heads: 'all' positions, or 'paper': each class at its positions (name movers and S-inhibition at END, induction and duplicate-token at S2, previous-token at S1+1)" },
    'completeness-samples': { type: 'int', default: 5, min: 0, max: 1000, metavar: 'K', help: 'random subsets of the circuit (besides each class) for the completeness criterion' },
    'skip-resid-sweep': { type: 'boolean', default: false, help: 'leave out the residual stream sweep (layer × position) on the first group' },
    out: { type: 'string', default: 'out/ioi', metavar: 'DIR', help: 'folder for ioi.json and the charts (created when missing)' },
  },
  epilog: `
writes into --out: ioi.json (every number, each a mean over the prompts), and for each chart a
vega-lite spec (.vl.json), an SVG, a PNG and an HTML page that opens offline: logit_lens, dla,
head_patching, resid_patching, attention, patterns, path_patching, knockout.

examples:
  ${SCRIPT}
  ${SCRIPT} --n 100 --circuit paper --positions paper
  ${SCRIPT} --weights test/fixtures/gpt2-tiny --prompts test/fixtures/ioi-group.json --out out/ioi-tiny
  npx tsx assignments/ioi/handmade.ts --out out/ioi-handmade && ${SCRIPT} --weights out/ioi-handmade --out out/ioi-hand`,
};

export interface Options {
  model?: string;
  weights?: string;
  kernels?: string;
  n: number;
  seed: number;
  prompts?: string;
  circuit?: string;
  nameMovers?: string;
  positions: 'all' | 'paper';
  completenessSamples: number;
  residSweep: boolean;
  out: string;
}

export function readOptions(argv: readonly string[]): Options | 'help' {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return 'help';
  const choice = checkModelChoice(argv, a);
  if ((a.out as string) === '') throw new UsageError('--out needs a folder');
  if (a.prompts !== undefined && argv.some((x) => x === '--n' || x.startsWith('--n='))) throw new UsageError('give either --n (generated prompts) or --prompts FILE, not both');
  return {
    ...choice,
    n: a.n as number,
    seed: a.seed as number,
    prompts: a.prompts as string | undefined,
    circuit: a.circuit as string | undefined,
    nameMovers: a['name-movers'] as string | undefined,
    positions: a.positions as 'all' | 'paper',
    completenessSamples: a['completeness-samples'] as number,
    residSweep: !(a['skip-resid-sweep'] as boolean),
    out: a.out as string,
  };
}

// -----------------------------------------------------------------------------------------------
// the model, the prompts, and what the model's config.json and the prompts file say

export interface Setup {
  modelName: string;
  /** GPT-2 small's weights (--model gpt2, or a checkpoint of its shape without the random-weights mark) */
  gpt2Small: boolean;
  config: Record<string, unknown> | null;
  prompts: IOIPrompt[];
  promptsSource: string;
  groups: PromptGroup[];
  /** what the prompts file brings besides its prompts */
  file: { circuit?: string[]; completeness_sets?: string[][]; name_movers?: string[] };
}

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

function readPromptsExtras(file: string): Setup['file'] {
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown; // loadPromptsFile has checked it parses
  if (Array.isArray(json) || json === null || typeof json !== 'object') return {};
  const o = json as Record<string, unknown>;
  const out: Setup['file'] = {};
  if (o.circuit !== undefined) {
    if (!isStringList(o.circuit)) throw new InputError(`${file}: "circuit" must be a list of "layer.head" strings`);
    out.circuit = o.circuit;
  }
  if (o.name_movers !== undefined) {
    if (!isStringList(o.name_movers)) throw new InputError(`${file}: "name_movers" must be a list of "layer.head" strings`);
    out.name_movers = o.name_movers;
  }
  if (o.completeness_sets !== undefined) {
    if (!Array.isArray(o.completeness_sets) || !o.completeness_sets.every(isStringList)) throw new InputError(`${file}: "completeness_sets" must be a list of lists of "layer.head" strings`);
    out.completeness_sets = o.completeness_sets as string[][];
  }
  return out;
}

export function setup(model: GPT, o: Options): Setup {
  const raw = model.source?.raw_config ?? null;
  const c = model.config;
  const shapeSmall = c.n_layer === 12 && c.n_head === 12 && c.n_embd === 768 && c.vocab_size === 50257;
  const gpt2Small = o.weights === undefined ? o.model === 'gpt2' : shapeSmall && !hasRandomWeights(model);
  let prompts: IOIPrompt[], promptsSource: string, file: Setup['file'] = {};
  if (o.prompts !== undefined) {
    prompts = loadPromptsFile(o.prompts);
    file = readPromptsExtras(o.prompts);
    promptsSource = o.prompts;
  } else {
    // a checkpoint built for some names only (the handmade model) lists them in config.json
    const names = isStringList(raw?.names) ? (raw!.names as string[]).map((n) => n.trim()) : undefined;
    prompts = makeDataset({ n: o.n, seed: o.seed, names });
    promptsSource = `generated: ${o.n} prompts, seed ${o.seed}${names ? `, the ${names.length} names of config.json` : ''}`;
  }
  const groups = tokenizePrompts(prompts, new BPETokenizer());
  for (const g of groups) {
    if (g.T > model.block_size) throw new InputError(`the prompts of group "${g.key}" are ${g.T} tokens, more than the model's context of ${model.block_size}`);
    for (const p of g.prompts) {
      const bad = [...p.clean_ids, ...p.corrupt_ids].find((id) => id >= c.vocab_size);
      if (bad !== undefined) throw new InputError(`prompt ${p.index}: token id ${bad} is outside the model's vocabulary of ${c.vocab_size}`);
    }
  }
  return { modelName: o.weights ?? o.model ?? 'gpt2', gpt2Small, config: raw, prompts, promptsSource, groups, file };
}

/** The receivers of path patching: --name-movers, the paper's, the file's, config.json's, or the top DLA heads. */
export function chooseNameMovers(model: GPT, o: Options, s: Setup, dla: number[][]): { heads: HeadRef[]; source: string } {
  const { n_layer: L, n_head: nh } = model.config;
  if (o.nameMovers !== undefined) return { heads: parseHeadList(o.nameMovers, '--name-movers', L, nh), source: '--name-movers' };
  if (s.gpt2Small) return { heads: PAPER_NAME_MOVERS.map(parseHead), source: 'the paper (Wang et al. 2022) for GPT-2 small' };
  if (s.file.name_movers) return { heads: parseHeadList(s.file.name_movers.join(','), `${o.prompts}: name_movers`, L, nh), source: `${o.prompts} name_movers` };
  const known = (s.config?.known_heads as Record<string, unknown> | undefined)?.name_mover;
  if (isStringList(known) && known.length) return { heads: parseHeadList(known.join(','), 'config.json known_heads.name_mover', L, nh), source: 'config.json known_heads.name_mover' };
  const ranked = dla.flatMap((row, l) => row.map((v, h) => ({ l, h, v }))).filter((x) => x.l > 0 || L === 1).sort((a, b) => b.v - a.v);
  return { heads: ranked.slice(0, 3).map((x) => ({ layer: x.l, head: x.h })), source: 'the three heads (after layer 0) with the largest positive direct logit attribution' };
}

/** The circuit for the knockouts (see --circuit's help). `path` is needed only for the last fallback. */
export function chooseCircuit(model: GPT, o: Options, s: Setup, nameMovers: HeadRef[], path: PathResults | null, F_model: number): Circuit {
  const { n_layer: L, n_head: nh } = model.config;
  const small = L === 12 && nh === 12;
  if (o.circuit === 'paper') {
    if (!small) throw new InputError(`--circuit paper is GPT-2 small's circuit (12 layers × 12 heads), but ${s.modelName} has ${L} layers × ${nh} heads: give the heads with --circuit l.h,l.h,... (or leave --circuit out to use the model's known_heads or a circuit found from the path patching)`);
    const c = circuitFromClasses(PAPER_CIRCUIT, 'the paper\'s circuit', L, nh);
    return { ...c, source: s.gpt2Small ? 'paper: Wang et al. 2022, 26 heads' : `paper: Wang et al. 2022, 26 heads (found in GPT-2 small; ${s.modelName} only has its shape)` };
  }
  if (o.circuit !== undefined) return { heads: parseHeadList(o.circuit, '--circuit', L, nh), classes: {}, source: '--circuit' };
  if (s.file.circuit) return { heads: parseHeadList(s.file.circuit.join(','), `${o.prompts}: circuit`, L, nh), classes: {}, source: `${o.prompts} circuit` };
  const known = s.config?.known_heads;
  if (known && typeof known === 'object' && !Array.isArray(known)) return circuitFromClasses(known as Record<string, unknown>, `${s.modelName}/config.json known_heads`, L, nh);
  if (small) return chooseCircuit(model, { ...o, circuit: 'paper' }, s, nameMovers, path, F_model);
  // the name movers, and the three heads whose path to the name movers' queries moves F the most
  const nm = new Set(nameMovers.map(headName));
  const ranked = (path?.to_name_movers ?? []).flatMap((row, l) => row.map((v, h) => ({ name: `${l}.${h}`, d: v === null ? -1 : Math.abs(v - F_model) })))
    .filter((x) => x.d >= 0 && !nm.has(x.name)).sort((a, b) => b.d - a.d).slice(0, 3);
  return {
    heads: [...nameMovers, ...ranked.map((x) => parseHead(x.name))],
    classes: Object.fromEntries(nameMovers.map((h) => [headName(h), 'name_mover'])),
    source: 'found here: the name movers and the three heads whose path patching to their queries changes F the most',
  };
}

// -----------------------------------------------------------------------------------------------
// the report

export interface Report {
  model: string;
  config: { n_layer: number; n_head: number; n_embd: number; vocab_size: number; block_size: number };
  prompts_source: string;
  prompts: { clean: string; corrupt: string; io: string; s: string; group: string }[];
  n_prompts: number;
  groups: { key: string; T: number; n: number }[];
  F_model: number;
  accuracy: number;
  io_prob: number;
  per_prompt_F: number[];
  logit_lens: number[];
  dla: BasicResults['dla'];
  patching: { head_z: number[][]; corrupt_F: number; resid_post: ResidSweep | null };
  attention: {
    top_heads: { head: string; why: string; to_IO: number; to_S1: number; to_S2: number }[];
    to_IO: number[][];
    to_S1: number[][];
    to_S2: number[][];
  };
  path_patching: { name_movers: string[]; name_movers_source: string; to_logits: number[][]; to_name_movers: HeadGrid };
  knockout: KnockoutResults & { circuit_source: string; classes: Record<string, string> };
  timing_s: Record<string, number>;
}

/** The heads the attention chart shows: the name movers, the top direct effects either way, the top patching effects. */
export function topHeads(b: BasicResults, nameMovers: HeadRef[]): { head: HeadRef; why: string }[] {
  const flat = b.dla.heads.flatMap((row, l) => row.map((v, h) => ({ head: { layer: l, head: h }, v })));
  const out = new Map<string, { head: HeadRef; why: string[] }>();
  const add = (head: HeadRef, why: string) => {
    const k = headName(head);
    if (!out.has(k)) out.set(k, { head, why: [] });
    out.get(k)!.why.push(why);
  };
  for (const h of nameMovers) add(h, 'name mover');
  [...flat].sort((a, c) => c.v - a.v).slice(0, 3).forEach((x) => add(x.head, `direct effect ${x.v.toFixed(2)}`));
  [...flat].sort((a, c) => a.v - c.v).slice(0, 2).filter((x) => x.v < 0).forEach((x) => add(x.head, `direct effect ${x.v.toFixed(2)}`));
  return [...out.values()].slice(0, 8).map((x) => ({ head: x.head, why: x.why.join('; ') }));
}

export interface Results {
  report: Report;
  basic: BasicResults;
  tokens: string[];
}

export async function runExperiment(model: GPT, o: Options, s: Setup, progress: StepsProgress): Promise<Results> {
  const c = model.config;
  const timing: Record<string, number> = {};
  const timed = async <R>(name: string, work: () => R | Promise<R>): Promise<R> => {
    const t0 = performance.now();
    const r = await work();
    timing[name] = (performance.now() - t0) / 1000;
    return r;
  };
  const basic = await timed('metric_lens_dla_head_patching', () => basicResults(model, s.groups, progress));
  const resid = o.residSweep ? await timed('resid_sweep', () => residSweep(model, s.groups[0], progress)) : null;
  const nm = chooseNameMovers(model, o, s, basic.dla.heads);
  const pathRes = await timed('path_patching', () => pathResults(model, s.groups, nm.heads, progress));
  const circuit = chooseCircuit(model, o, s, nm.heads, pathRes, basic.F_model);
  const kept = keptHeads(circuit, o.positions);
  const sets = s.file.completeness_sets && o.circuit === undefined
    ? s.file.completeness_sets.map((K) => ({ K: parseHeadList(K.join(','), `${o.prompts}: completeness_sets`, c.n_layer, c.n_head), kind: 'prompts file' }))
    : completenessSets(circuit.heads, circuit.classes, o.completenessSamples, o.seed);
  const ko = await timed('knockout', () => knockoutResults(model, s.groups, kept, sets, o.positions, progress));

  const top = topHeads(basic, nm.heads);
  const report: Report = {
    model: s.modelName,
    config: { n_layer: c.n_layer, n_head: c.n_head, n_embd: c.n_embd, vocab_size: c.vocab_size, block_size: model.block_size },
    prompts_source: s.promptsSource,
    prompts: s.groups.flatMap((g) => g.prompts.map((p) => ({ clean: p.prompt.clean, corrupt: p.prompt.corrupt, io: p.prompt.io, s: p.prompt.s, group: g.key }))),
    n_prompts: s.groups.reduce((a, g) => a + g.prompts.length, 0),
    groups: s.groups.map((g) => ({ key: g.key, T: g.T, n: g.prompts.length })),
    F_model: basic.F_model,
    accuracy: basic.accuracy,
    io_prob: basic.io_prob,
    per_prompt_F: basic.per_prompt,
    logit_lens: basic.logit_lens,
    dla: basic.dla,
    patching: { head_z: basic.patching.head_z, corrupt_F: basic.patching.corrupt_F, resid_post: resid },
    attention: {
      top_heads: top.map(({ head, why }) => ({
        head: headName(head), why,
        to_IO: basic.attention.to_IO[head.layer][head.head], to_S1: basic.attention.to_S1[head.layer][head.head], to_S2: basic.attention.to_S2[head.layer][head.head],
      })),
      ...basic.attention,
    },
    path_patching: { name_movers: nm.heads.map(headName), name_movers_source: nm.source, to_logits: pathRes.to_logits, to_name_movers: pathRes.to_name_movers },
    knockout: { ...ko, circuit_source: circuit.source, classes: circuit.classes },
    timing_s: timing,
  };
  const first = s.groups[0].prompts[0];
  return { report, basic, tokens: tokenStrings(first.clean_ids) };
}

// -----------------------------------------------------------------------------------------------
// the charts

export async function outputFiles(r: Results): Promise<Map<string, string | Uint8Array>> {
  const { chartFiles } = await import('../../cli/plot.ts');
  const charts = await import('./charts.ts');
  const rep = r.report, model = rep.model;
  const files = new Map<string, string | Uint8Array>();
  files.set('ioi.json', JSON.stringify(rep, null, 2) + '\n');
  const add = async (name: string, spec: Parameters<typeof chartFiles>[1], title: string, description: string) => {
    for (const [n, data] of (await chartFiles(name, spec, title, { description })).files) files.set(n, data);
  };
  const marks = { name_movers: rep.path_patching.name_movers, circuit: rep.knockout.circuit };
  await add('logit_lens', charts.lensSpec({ model, lens: rep.logit_lens, F: rep.F_model }), 'Logit lens: IO − S by layer',
    'The residual stream entering each block, read through the final layer norm and the unembedding: mean logit(IO) − logit(S) at END.');
  await add('dla', charts.headGridSpec({ model, grid: rep.dla.heads, title: 'Direct logit attribution of every head', what: 'direct effect on logit(IO) − logit(S)', marks, center: 0 }),
    'Direct logit attribution per head', 'Each head\'s output at END, through the final layer norm (scale held fixed), on the IO − S direction. Name movers stand out positive, negative name movers negative.');
  await add('head_patching', charts.headGridSpec({ model, grid: rep.patching.head_z, title: 'Activation patching: the ABC run with one head\'s output from the IOI run', what: 'logit(IO) − logit(S)', marks, center: rep.patching.corrupt_F }),
    'Activation patching per head', 'Each cell: the ABC prompt\'s run with one head\'s z (every position) taken from the IOI prompt. White: the ABC run\'s own value.');
  if (rep.patching.resid_post) {
    const rp = rep.patching.resid_post;
    await add('resid_patching', charts.residSpec({ model, matrix: rp.matrix, tokens: r.tokens, clean: rp.clean_F, corrupt: rp.corrupt_F, group: rp.group, prompts: rp.prompts }),
      'Activation patching of the residual stream', 'The ABC run with one block\'s output at one position from the IOI run; mean over the first group\'s prompts.');
  }
  await add('attention', charts.attentionBarsSpec({ model, heads: rep.attention.top_heads }), 'Attention from END to IO, S1 and S2',
    'Mean attention of the top heads from the last position to the names.');
  const panels = rep.attention.top_heads.map((t) => {
    const h = parseHead(t.head);
    return { head: t.head, caption: t.why, pattern: r.basic.first_patterns[h.layer][h.head] };
  });
  const { attentionSpec } = await import('../induction-heads/charts.ts');
  await add('patterns', attentionSpec({ model, tokens: r.tokens, panels }), 'Attention patterns of the top heads (first prompt)',
    'Rows attend to columns; the first prompt of the first group.');
  await add('path_patching', charts.pathSpec({ model, to_logits: rep.path_patching.to_logits, to_name_movers: rep.path_patching.to_name_movers, F: rep.F_model, name_movers: rep.path_patching.name_movers, marks }),
    'Path patching', 'Left: each sender\'s path straight to the logits. Right: its path through the name movers\' queries at END. White: the model\'s own F.');
  await add('knockout', charts.knockoutSpec({ model, ko: rep.knockout }), 'Knockouts: faithfulness, completeness, minimality',
    'F with heads mean-ablated over the ABC prompts.');
  return files;
}

// -----------------------------------------------------------------------------------------------
// the run

const f3 = (v: number | null) => (v === null ? '—' : v.toFixed(3));

function topList(g: HeadGrid, n: number, by: (v: number) => number): string {
  return g.flatMap((row, l) => row.map((v, h) => ({ name: `${l}.${h}`, v })))
    .filter((x): x is { name: string; v: number } => x.v !== null).sort((a, b) => by(b.v) - by(a.v)).slice(0, n)
    .map((x) => `${x.name} ${x.v >= 0 ? '+' : ''}${x.v.toFixed(3)}`).join(', ');
}

function printResults(rep: Report, print: (s?: string) => void): void {
  print(`\n2. metric: F = mean logit(IO) − logit(S) at END = ${rep.F_model.toFixed(3)} (the paper: about 3.55 on GPT-2 small)`);
  print(`   accuracy (IO > S) ${(100 * rep.accuracy).toFixed(1)}%, mean P(IO) ${rep.io_prob.toFixed(3)}`);
  print(`\n3. logit lens (IO − S from the stream entering each block, then the end): ${rep.logit_lens.map((v) => v.toFixed(2)).join(' ')}`);
  print(`   direct logit attribution, most positive heads: ${topList(rep.dla.heads, 5, (v) => v)}`);
  print(`   most negative heads: ${topList(rep.dla.heads, 3, (v) => -v)}`);
  print(`\n4. activation patching (ABC run = ${rep.patching.corrupt_F.toFixed(3)}; one head's z from the IOI run), biggest gains: ${topList(rep.patching.head_z, 5, (v) => v - rep.patching.corrupt_F)}`);
  if (rep.patching.resid_post) {
    const rp = rep.patching.resid_post;
    print(`   residual stream sweep on group "${rp.group}" (${rp.prompts} prompts): IOI run ${rp.clean_F.toFixed(3)}, ABC run ${rp.corrupt_F.toFixed(3)} (resid_patching chart)`);
  }
  print('\n5. attention from END (mean):        to IO   to S1   to S2');
  for (const t of rep.attention.top_heads) print(`   ${t.head.padEnd(6)} ${t.why.slice(0, 26).padEnd(26)} ${t.to_IO.toFixed(3).padStart(6)}  ${t.to_S1.toFixed(3).padStart(6)}  ${t.to_S2.toFixed(3).padStart(6)}`);
  print(`\n6. path patching (orig = IOI prompt, new = ABC twin; F_model ${rep.F_model.toFixed(3)})`);
  print(`   to the logits, lowest F (sender's path carries the answer): ${topList(rep.path_patching.to_logits, 5, (v) => rep.F_model - v)}`);
  print(`   to the queries of ${rep.path_patching.name_movers.join(', ')} at END (${rep.path_patching.name_movers_source}), lowest F: ${topList(rep.path_patching.to_name_movers, 5, (v) => rep.F_model - v)}`);
  const k = rep.knockout;
  print(`\n7. knockouts (mean ablation over the ABC prompts; circuit heads kept at ${k.positions === 'paper' ? "their class's positions" : 'every position'})`);
  print(`   circuit: ${k.circuit.length} heads (${k.circuit_source})`);
  print(`   F_model ${f3(k.F_model)}   F_circuit ${f3(k.F_circuit)}   F_empty ${f3(k.F_empty)}   faithfulness |F_model − F_circuit| = ${f3(k.faithfulness)} (${(100 * k.faithfulness / Math.abs(k.F_model)).toFixed(1)}% of F_model)`);
  for (const c of k.completeness) print(`   completeness ${c.kind.padEnd(28)} K = {${c.K.join(', ')}}: |F(C\\K) − F(M\\K)| = |${f3(c.F_C_minus_K)} − ${f3(c.F_M_minus_K)}| = ${f3(c.value)}`);
  print(`   minimality |F(C\\{v}) − F(C)|: ${[...k.minimality].sort((a, b) => b.value - a.value).map((m) => `${m.head} ${m.value.toFixed(3)}`).join(', ')}`);
}

/**
 * What can be checked before the long part: --name-movers, and the circuit unless it is to be
 * found from the path patching (then --positions paper is refused: those heads have no class).
 */
export function checkEarly(model: GPT, o: Options, s: Setup): void {
  const { n_layer: L, n_head: nh } = model.config;
  if (o.nameMovers !== undefined) parseHeadList(o.nameMovers, '--name-movers', L, nh);
  const found = o.circuit === undefined && !s.file.circuit && !s.config?.known_heads && !(L === 12 && nh === 12);
  if (!found) {
    const c = chooseCircuit(model, o, s, [], null, 0);
    keptHeads(c, o.positions);
  } else if (o.positions === 'paper') {
    throw new InputError('--positions paper keeps each circuit head at its class\'s positions, but this model has no known circuit with classes (no --circuit paper, no known_heads in config.json): use --positions all');
  }
}

/** Progress bars for the steps, one after the other. */
function stepBars(): StepsProgress {
  let bar: ProgressBar | null = null;
  return {
    start: (label, total) => { bar = new ProgressBar({ total, label }); },
    update: (done) => bar?.update(done),
    end: () => { bar?.done(); bar = null; },
  };
}

export async function main(argv: readonly string[]): Promise<void> {
  const o = readOptions(argv);
  if (o === 'help') {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  new OutputWriter(o.out).check(); // before the long part, not after it
  const print = (s = '') => process.stdout.write(s + '\n');
  const start = performance.now();
  const model = await loadModel(o);
  const load_s = (performance.now() - start) / 1000;
  const s = setup(model, o);
  // a circuit or a list of heads that cannot work on this model is refused before the long part
  checkEarly(model, o, s);
  const c = model.config;
  print(`model: ${s.modelName} (${c.n_layer} layers × ${c.n_head} heads, n_embd ${c.n_embd}), loaded in ${load_s.toFixed(1)} s${s.gpt2Small ? '' : ' — not GPT-2 small: the paper\'s heads are not expected here'}`);
  const n = s.groups.reduce((a, g) => a + g.prompts.length, 0);
  print(`\n1. prompts: ${n} (${s.promptsSource}), in ${s.groups.length} group${s.groups.length > 1 ? 's' : ''} of one token length each`);
  const p0 = s.groups[0].prompts[0];
  print(`   e.g. ${JSON.stringify(p0.prompt.clean)} -> IO ${JSON.stringify(p0.prompt.io)}, S ${JSON.stringify(p0.prompt.s)}; ABC twin ${JSON.stringify(p0.prompt.corrupt)}`);

  const results = await runExperiment(model, o, s, stepBars());
  printResults(results.report, print);
  const t0 = performance.now();
  const files = await outputFiles(results);
  const rep = results.report;
  rep.timing_s.charts = (performance.now() - t0) / 1000;
  rep.timing_s.load = load_s;
  rep.timing_s.total = (performance.now() - start) / 1000;
  files.set('ioi.json', JSON.stringify(rep, null, 2) + '\n');
  const out = new OutputWriter(o.out);
  for (const [name, data] of files) out.add(name, data);
  const written = out.commit();
  print(`\n8. files in ${o.out} (total ${rep.timing_s.total.toFixed(1)} s)`);
  for (const f of written) print(`   ${path.relative(process.cwd(), f).startsWith('..') ? f : path.relative(process.cwd(), f)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, SCRIPT);
}
