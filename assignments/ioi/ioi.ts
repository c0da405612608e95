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
 *   (9. with --eap: edge attribution patching, the circuit of its top edges and its knockouts; eap.ts)
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
import { quotedText } from '../../io/show.ts';
import { MODEL_OPTIONS, checkModelChoice, hasRandomWeights, loadModel, runCli, type ModelChoice } from '../../cli/command.ts';
import { headName, parseHead, type HeadRef } from '../../lens/heads.ts';
import { num } from '../../cli/terminal.ts';
import { printResults, readingAid } from './report.ts';
import { loadPromptsFile, makeDataset, tokenizePrompts, type IOIPrompt, type PromptGroup } from './dataset.ts';
import {
  PAPER_CIRCUIT, PAPER_NAME_MOVERS, circuitFromClasses, keptHeads, parseHeadList, type Circuit,
} from './circuit.ts';
import {
  basicResults, completenessSets, knockoutResults, pathResults, residSweep,
  type BasicResults, type HeadGrid, type KnockoutResults, type PathResults, type ResidSweep, type StepsProgress,
} from './experiment.ts';
import { eapResults, type EapReport } from './eap.ts';

const SCRIPT = 'npx tsx assignments/ioi/ioi.ts';

// -----------------------------------------------------------------------------------------------
// the command line

export const COMMAND = {
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
    eap: { type: 'boolean', default: false, help: 'also score every edge of the model\'s graph by edge attribution patching, build the circuit of the top edges, draw it and measure its faithfulness by knockouts' },
    'eap-steps': { type: 'int', default: 1, min: 1, max: 1000, metavar: 'M', help: 'with --eap: integrated-gradient steps (1: plain EAP; EAP-IG with M > 1 sees through saturated attention, at M times the cost)' },
    'eap-edges': { type: 'int', default: 20, min: 1, max: 100000, metavar: 'N', help: 'with --eap: how many top edges make the circuit' },
    out: { type: 'string', default: 'out/ioi', metavar: 'DIR', help: 'folder for ioi.json and the charts (created when missing)' },
  },
  epilog: `
writes into --out: ioi.json (every number, each a mean over the prompts), and for each chart a
vega-lite spec (.vl.json), an SVG, a PNG and an HTML page that opens offline: logit_lens, dla,
head_patching, resid_patching, attention, patterns, path_patching, knockout; with --eap,
eap_circuit.

examples:
  ${SCRIPT}
  ${SCRIPT} --n 100 --circuit paper --positions paper
  ${SCRIPT} --eap --eap-steps 8 --eap-edges 30
  ${SCRIPT} --weights test/fixtures/gpt2-tiny --prompts test/fixtures/ioi-group.json --out out/ioi-tiny
  npx tsx assignments/ioi/handmade.ts --out out/ioi-handmade && ${SCRIPT} --weights out/ioi-handmade --out out/ioi-hand`,
} as const satisfies CommandSpec;

export interface Options extends ModelChoice {
  n: number;
  seed: number;
  prompts?: string;
  circuit?: string;
  nameMovers?: string;
  positions: 'all' | 'paper';
  completenessSamples: number;
  residSweep: boolean;
  eap: boolean;
  eapSteps: number;
  eapEdges: number;
  out: string;
}

export function readOptions(argv: readonly string[]): Options | 'help' {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return 'help';
  const choice = checkModelChoice(argv, a);
  if (a.out === '') throw new UsageError('--out needs a folder');
  if (a.prompts !== undefined && argv.some((x) => x === '--n' || x.startsWith('--n='))) throw new UsageError('give either --n (generated prompts) or --prompts FILE, not both');
  return {
    ...choice,
    n: a.n,
    seed: a.seed,
    prompts: a.prompts,
    circuit: a.circuit,
    nameMovers: a['name-movers'],
    positions: a.positions,
    completenessSamples: a['completeness-samples'],
    residSweep: !a['skip-resid-sweep'],
    eap: a.eap,
    eapSteps: a['eap-steps'],
    eapEdges: a['eap-edges'],
    out: a.out,
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
/** A list of at least one "layer.head" string: an empty one would silently mean "no heads". */
const isHeadList = (v: unknown): v is string[] => isStringList(v) && v.length > 0;

export function readPromptsExtras(file: string): Setup['file'] {
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown; // loadPromptsFile has checked it parses
  if (Array.isArray(json) || json === null || typeof json !== 'object') return {};
  const o = json as Record<string, unknown>;
  const out: Setup['file'] = {};
  if (o.circuit !== undefined) {
    if (!isHeadList(o.circuit)) throw new InputError(`${file}: "circuit" must be a non-empty list of "layer.head" strings`);
    out.circuit = o.circuit;
  }
  if (o.name_movers !== undefined) {
    if (!isHeadList(o.name_movers)) throw new InputError(`${file}: "name_movers" must be a non-empty list of "layer.head" strings (leave it out to have them chosen)`);
    out.name_movers = o.name_movers;
  }
  if (o.completeness_sets !== undefined) {
    if (!Array.isArray(o.completeness_sets) || o.completeness_sets.length === 0 || !o.completeness_sets.every(isHeadList)) {
      throw new InputError(`${file}: "completeness_sets" must be a non-empty list of non-empty lists of "layer.head" strings (an empty set K leaves the circuit whole, so it tests nothing)`);
    }
    out.completeness_sets = o.completeness_sets as string[][];
  }
  return out;
}

/** The prompts of --prompts FILE, read, checked and tokenized before any model is loaded (or downloaded); null without --prompts. */
type PromptsFromFile = Pick<Setup, 'prompts' | 'promptsSource' | 'groups' | 'file'>;
function readPrompts(o: Options): PromptsFromFile | null {
  if (o.prompts === undefined) return null;
  const prompts = loadPromptsFile(o.prompts);
  return { prompts, promptsSource: o.prompts, file: readPromptsExtras(o.prompts), groups: tokenizePrompts(prompts, new BPETokenizer()) };
}

export function setup(model: GPT, o: Options, fromFile: PromptsFromFile | null = readPrompts(o)): Setup {
  const raw = model.source?.raw_config ?? null;
  const c = model.config;
  const shapeSmall = c.n_layer === 12 && c.n_head === 12 && c.n_embd === 768 && c.vocab_size === 50257;
  const gpt2Small = o.weights === undefined ? o.model === 'gpt2' : shapeSmall && !hasRandomWeights(model);
  let prompts: IOIPrompt[], promptsSource: string, file: Setup['file'] = {}, groups: PromptGroup[];
  if (fromFile) {
    ({ prompts, promptsSource, file, groups } = fromFile);
  } else {
    // a checkpoint built for some names only (the handmade model) lists them in config.json
    const names = isStringList(raw?.names) ? (raw!.names as string[]).map((n) => n.trim()) : undefined;
    prompts = makeDataset({ n: o.n, seed: o.seed, names });
    promptsSource = `generated: ${o.n} prompts, seed ${o.seed}${names ? `, the ${names.length} names of config.json` : ''}`;
    groups = tokenizePrompts(prompts, new BPETokenizer());
  }
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
  const ranked = (path?.to_name_movers ?? []).flatMap((row, l) => row.map((v, h) => ({ name: headName({ layer: l, head: h }), d: v === null ? -1 : Math.abs(v - F_model) })))
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
  /** with --eap */
  eap: EapReport | null;
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
  // heads with no direct effect at all (a hand-built model's idle heads) are not "top" heads
  [...flat].sort((a, c) => c.v - a.v).slice(0, 3).filter((x) => x.v > 5e-4).forEach((x) => add(x.head, `direct effect ${num(x.v, 2)}`));
  [...flat].sort((a, c) => a.v - c.v).slice(0, 2).filter((x) => x.v < -5e-4).forEach((x) => add(x.head, `direct effect ${num(x.v, 2)}`));
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
  const eap = o.eap ? await timed('eap', () => eapResults(model, s.groups, { steps: o.eapSteps, edges: o.eapEdges }, progress)) : null;

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
    eap,
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
  await add('dla', charts.headGridSpec({
    model, grid: rep.dla.heads, title: 'Direct logit attribution of every head', what: ['direct effect', 'on IO − S'], marks,
    center: 0, centerName: 'no direct effect,', higher: 'the head writes toward IO', lower: 'toward S',
  }),
    'Direct logit attribution per head', 'Each head\'s output at END, through the final layer norm (scale held fixed), on the IO − S direction. Name movers stand out positive, negative name movers negative.');
  await add('head_patching', charts.headGridSpec({
    model, grid: rep.patching.head_z, title: 'Activation patching: the ABC run with one head\'s output from the IOI run', what: 'IO − S', marks,
    center: rep.patching.corrupt_F, centerName: 'the ABC run\'s own value', higher: 'the head restores IO', lower: 'it pushes toward S',
  }),
    'Activation patching per head', 'Each cell: the ABC prompt\'s run with one head\'s z (every position) taken from the IOI prompt. White: the ABC run\'s own value.');
  if (rep.patching.resid_post) {
    const rp = rep.patching.resid_post;
    await add('resid_patching', charts.residSpec({ model, matrix: rp.matrix, tokens: r.tokens, clean: rp.clean_F, corrupt: rp.corrupt_F, group: rp.group, prompts: rp.prompts }),
      'Activation patching of the residual stream', 'The ABC run with one block\'s output at one position from the IOI run; mean over the first group\'s prompts.');
  }
  await add('attention', charts.attentionBarsSpec({ model, heads: rep.attention.top_heads, nameMovers: rep.path_patching.name_movers }), 'Attention from END to IO, S1 and S2',
    'Mean attention of the top heads from the last position to the names.');
  const panels = rep.attention.top_heads.map((t) => {
    const h = parseHead(t.head);
    return { head: t.head, caption: t.why, pattern: r.basic.first_patterns[h.layer][h.head] };
  });
  const { attentionSpec } = await import('../induction-heads/charts.ts');
  await add('patterns', attentionSpec({ model, sequence: 'the first prompt', tokens: r.tokens, panels }), 'Attention patterns of the top heads (first prompt)',
    'Rows attend to columns; the first prompt of the first group.');
  await add('path_patching', charts.pathSpec({ model, to_logits: rep.path_patching.to_logits, to_name_movers: rep.path_patching.to_name_movers, F: rep.F_model, name_movers: rep.path_patching.name_movers, marks }),
    'Path patching', 'Left: each sender\'s path straight to the logits. Right: its path through the name movers\' queries at END. White: the model\'s own F.');
  await add('knockout', charts.knockoutSpec({ model, ko: rep.knockout }), 'Knockouts: faithfulness, completeness, minimality',
    'F with heads mean-ablated over the ABC prompts.');
  if (rep.eap) {
    await add('eap_circuit', charts.eapGraphSpec({ model, edges: rep.eap.edges, L: rep.config.n_layer, steps: rep.eap.steps, ...rep.eap.knockout }),
      'Edge attribution patching: the circuit of the top edges', 'Each line is an edge of the model\'s graph among the top by |score|; hover it for its score.');
  }
  return files;
}

// -----------------------------------------------------------------------------------------------
// the run

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
  const fromFile = readPrompts(o); // a bad prompts file is refused before the model is loaded or downloaded
  const print = (s = '') => process.stdout.write(s + '\n');
  const start = performance.now();
  const model = await loadModel(o);
  const load_s = (performance.now() - start) / 1000;
  const s = setup(model, o, fromFile);
  // a circuit or a list of heads that cannot work on this model is refused before the long part
  checkEarly(model, o, s);
  const c = model.config;
  print(`model: ${s.modelName} (${c.n_layer} layers × ${c.n_head} heads, n_embd ${c.n_embd}), loaded in ${load_s.toFixed(1)} s` +
    (hasRandomWeights(model) ? ' — random weights (config.json says so)' : s.gpt2Small ? '' : ' — not GPT-2 small: the paper\'s heads are not expected here'));
  const n = s.groups.reduce((a, g) => a + g.prompts.length, 0);
  print(`\n1. prompts: ${n} (${s.promptsSource}), in ${s.groups.length} group${s.groups.length > 1 ? 's' : ''} of one token length each`);
  const p0 = s.groups[0].prompts[0];
  print(`   e.g. ${quotedText(p0.prompt.clean)} -> IO ${quotedText(p0.prompt.io)}, S ${quotedText(p0.prompt.s)}; ABC twin ${quotedText(p0.prompt.corrupt)}`);

  const results = await runExperiment(model, o, s, stepBars());
  printResults(results.report, print);
  print('\nwhat the numbers say:');
  for (const sentence of readingAid(results.report, hasRandomWeights(model))) print(`• ${sentence}`);
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
