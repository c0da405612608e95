/**
 * The circuits experiment from the command line: what the weights say each head does.
 *
 *   npx tsx assignments/circuits/circuits.ts                      # GPT-2 small
 *   npx tsx assignments/circuits/handmade_erasers.ts --out out/handmade-erasers
 *   npx tsx assignments/circuits/circuits.ts --weights out/handmade-erasers --out out/circuits-handmade
 *
 * ./README.md explains the seven steps and how to read the charts; ./experiment.ts computes them.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { GPT } from '../../mingpt/model.ts';
import { helpText, optionValue, parseArgs, type CommandSpec, type ParsedArgs } from '../../cli/args.ts';
import { InputError, UsageError } from '../../io/errors.ts';
import { MODEL_OPTIONS, checkModelChoice, hasRandomWeights, loadModel, runCli, type ModelChoice } from '../../cli/command.ts';
import { OutputWriter } from '../../io/output.ts';
import { allHeads, headExists, headName, parseHead, type HeadRef } from '../../lens/heads.ts';
import { BPETokenizer, tokenStrings } from '../../mingpt/bpe.ts';
import { visibleToken } from '../../cli/terminal.ts';
import { RNG } from '../../mingpt/utils.ts';
import { parseTokenRange } from '../induction-heads/scores.ts';
import { runCircuits, type Report } from './experiment.ts';
import { printReport, readingAid } from './report.ts';

const SCRIPT = 'npx tsx assignments/circuits/circuits.ts';
const EOT = 50256;
const DEFAULT_TEXT = 'Alice and Bob went to the market, and Alice bought pears. Alice and Bob went to the market, and Alice';


/** Step 7's limits: sequences, and the memory their logits and activations may take. */
const STEP7_MAX_BATCH = 4096;
const STEP7_BYTES = 2 ** 30;

export const COMMAND = {
  usage: SCRIPT,
  description: `
Weight circuits ("A Mathematical Framework for Transformer Circuits"): what each head's QK circuit
(where it looks) and OV circuit (what it moves) do, read from the weights: copying scores,
Q/K/V-composition between heads, positional QK, QK and OV on the tokens of a text, virtual weights,
memory-management neurons; then one causal check that a head's keys really need an earlier head.`,
  options: {
    ...MODEL_OPTIONS,
    text: { type: 'string', metavar: 'TEXT', help: 'text for steps 4-5 (default: a sentence that repeats itself; on a model with a token_range in config.json, BOS + 8 random tokens twice)' },
    head: { type: 'string', metavar: 'L.H', help: 'head for steps 3-4 (default: the reader of --path)' },
    path: { type: 'string', metavar: 'A,B', help: 'writer and reader heads for steps 5 and 7, e.g. 4.11,5.5 (default: the pair with the largest K-composition score)' },
    raw: { type: 'boolean', default: false, help: 'use the raw weights instead of the processed ones (layer norms folded, writing weights and unembedding centred)' },
    'eraser-below': { type: 'number', default: -0.9, metavar: 'X', help: 'list the MLP neurons whose input/output cosine is at or below X' },
    top: { type: 'int', default: 10, min: 1, metavar: 'N', help: 'how many of the lowest-cosine neurons to list anyway' },
    batch: { type: 'int', default: 4, min: 1, max: STEP7_MAX_BATCH, metavar: 'B', help: `step 7: sequences of repeated random tokens (at most ${STEP7_MAX_BATCH}, and as many as fit in ${STEP7_BYTES / 2 ** 30} GiB)` },
    'seq-len': { type: 'int', default: 20, min: 2, metavar: 'N', help: 'step 7: length of each copy (sequences are BOS + 2N tokens)' },
    'token-range': { type: 'string', metavar: 'LO,HI', help: "step 7: draw random tokens from the ids [LO, HI) (default: config.json's token_range, else 256,50256)" },
    seed: { type: 'int', default: 0, min: 0, metavar: 'N', help: 'seed of the random tokens and of the baseline matrices' },
    out: { type: 'string', default: 'out/circuits', metavar: 'DIR', help: 'folder for circuits.json and the charts (created when missing)' },
  },
  epilog: `
writes into --out: circuits.json (every number), and for each chart a vega-lite spec (.vl.json), an
SVG, a PNG and an HTML page that opens offline: copying, composition, positional_qk, token_qk,
ov_tokens, virtual_weights, neurons, qk_path.

examples:
  ${SCRIPT}
  ${SCRIPT} --head 5.5 --path 4.11,5.5 --text "The cat sat on the mat. The cat sat on the"
  npx tsx assignments/circuits/handmade_erasers.ts --out out/handmade-erasers
  ${SCRIPT} --weights out/handmade-erasers --out out/circuits-handmade
  ${SCRIPT} --weights test/fixtures/gpt2-tiny`,
} as const satisfies CommandSpec;

interface Parsed {
  args: ParsedArgs<typeof COMMAND.options>;
  head: HeadRef | null;
  path: [HeadRef, HeadRef] | null;
  choice: ModelChoice;
}

function readArgs(argv: readonly string[]): Parsed | 'help' {
  const args = parseArgs(argv, COMMAND);
  if (args.help) return 'help';
  const choice = checkModelChoice(argv, args);
  const head = args.head === undefined ? null : optionValue('--head', args.head, parseHead);
  let p: [HeadRef, HeadRef] | null = null;
  if (args.path !== undefined) {
    const parts = args.path.split(',');
    if (parts.length !== 2) throw new UsageError(`--path expects two heads A,B, e.g. 4.11,5.5; got "${args.path}"`);
    p = [optionValue('--path', parts[0], parseHead), optionValue('--path', parts[1], parseHead)];
    if (!(p[0].layer < p[1].layer)) throw new UsageError(`--path ${args.path}: the writer must sit in an earlier layer than the reader`);
  }
  return { args, head, path: p, choice };
}

/** What the checkpoint's config.json says about BOS and the token range (handmade models). */
function modelFacts(model: GPT): { bos: number; range: [number, number] | null } {
  const raw = model.source?.raw_config ?? {};
  const V = model.config.vocab_size;
  const bos = Number.isInteger(raw.bos_token_id) ? (raw.bos_token_id as number) : Math.min(EOT, V - 1);
  const r = raw.token_range;
  const range = Array.isArray(r) && r.length === 2 && r.every((x) => Number.isInteger(x)) ? [r[0], r[1]] as [number, number] : null;
  return { bos, range };
}

/** circuits.json and the charts, as name -> contents. */
export async function outputFiles(r: Report): Promise<Map<string, string | Uint8Array>> {
  const { chartFiles, positionLabel } = await import('../../cli/plot.ts');
  const charts = await import('./charts.ts');
  const files = new Map<string, string | Uint8Array>();
  files.set('circuits.json', JSON.stringify(r) + '\n');
  const add = async (name: string, input: Parameters<typeof charts.heatmapSpec>[0] | Parameters<typeof chartFiles>[1], title: string, description: string) => {
    const spec = 'panels' in input ? charts.heatmapSpec(input) : input;
    for (const [n, data] of (await chartFiles(name, spec, title, { description })).files) files.set(n, data);
  };
  /** a heatmap's input with the sentence that names its colours added to the subtitle */
  const keyed = (input: Parameters<typeof charts.heatmapSpec>[0], high: string, low: string) => ({ ...input, subtitle: [...input.subtitle, charts.colourKey(input, high, low)] });
  const L = r.config.n_layer, nh = r.config.n_head;
  const layers = Array.from({ length: L }, (_, l) => String(l));
  const heads = Array.from({ length: nh }, (_, h) => String(h));
  const m = r.model;

  await add('copying', keyed({
    title: `Copying scores of the full OV circuits W_E W_OV W_U (${m}, ${r.weights} weights)`,
    subtitle: ['Σ Re λ / Σ |λ| over the eigenvalues: +1 when attending to a token raises that same token\'s logit (induction heads, name movers), −1 when it lowers it.'],
    panels: [{ title: 'copying score', rows: layers, cols: heads, values: r.copying_score, rowTitle: 'layer', colTitle: 'head' }],
    colors: 'diverging', domain: [-1, 1], valueTitle: 'copying score',
  }, 'the head copies', 'it suppresses what it attends to'), 'Copying scores', 'Rows are layers, columns heads.');

  const everyHead = allHeads(L, nh);
  const writers = everyHead.filter((h) => h.layer < L - 1), readers = everyHead.filter((h) => h.layer > 0);
  // a grid of more than 48 heads a side labels the first head of each layer, and lists its largest pairs
  const large = writers.length > 48;
  const firstOfLayer = (list: HeadRef[]) => list.filter((h) => h.head === 0).map(headName);
  const compPanel = (mode: 'q' | 'k' | 'v', title: string) => ({
    title, rows: writers.map(headName), cols: readers.map(headName), rowTitle: 'writer head A', colTitle: 'reader head B',
    values: writers.map((a) => readers.map((b) => r.composition[mode][a.layer][a.head][b.layer][b.head])),
    ...(large ? { labelEvery: { rows: firstOfLayer(writers), cols: firstOfLayer(readers) }, labelExpr: "'layer ' + split(datum.value, '.')[0]", top: r.top_pairs[mode].map((p) => ({ label: `${p.writer} → ${p.reader}`, value: p.score })) } : {}),
  });
  const base = r.composition_baseline;
  let compMax = base.mean;
  for (const mode of ['q', 'k', 'v'] as const) for (const row of compPanel(mode, '').values) for (const v of row) if (v !== null && v > compMax) compMax = v;
  await add('composition', {
    title: `Composition scores: how much head B reads what head A writes (${m})`,
    subtitle: [
      '‖W_OV[A] R‖ / (‖W_OV[A]‖ ‖R‖) with R = W_QK[B] (Q: A feeds B\'s queries), W_QK[B]ᵀ (K: B\'s keys), W_OV[B] (V: B\'s values).',
      `Random matrices of the same shapes score ${base.mean.toPrecision(3)} ± ${base.std.toPrecision(2)}: the colours start there, so every cell at or below that baseline is the lightest blue, and only what stands above chance is dark. Blank: B not after A.`,
      ...(large ? ['Rows and columns are labelled at the first head of each layer (hover a cell for its heads); under each grid, its largest pairs.'] : []),
    ],
    panels: [compPanel('q', 'Q-composition'), compPanel('k', 'K-composition'), compPanel('v', 'V-composition')],
    colors: 'sequential', domain: [base.mean, compMax > base.mean ? compMax : base.mean + base.std], valueTitle: ['composition', `(from the baseline ${base.mean.toPrecision(3)})`],
  }, 'Composition scores', 'Rows: the writer head A; columns: the reader head B in a later layer.');

  const pos = (name: string) => { const { layer, head } = parseHead(name); return r.positional_qk[layer][head]; };
  const shown = [...new Set([r.path.writer, r.head])];
  const P = pos(shown[0]).length;
  const posLabels = Array.from({ length: P }, (_, i) => String(i));
  await add('positional_qk', keyed({
    title: `Positional QK: W_pos W_QK W_posᵀ on the first ${P} positions (${m})`,
    subtitle: ['How much a query at position q likes a key at position k from their positions alone (no mask, no 1/√hs). A previous-token head peaks just left of the diagonal.'],
    panels: shown.map((n) => ({ title: `head ${n}`, rows: posLabels, cols: posLabels, values: pos(n), rowTitle: 'query position', colTitle: 'key position' })),
    colors: 'diverging', valueTitle: 'score', shared: false,
  }, 'the query likes that key', 'it avoids it'), 'Positional QK', 'Rows: query positions; columns: key positions.');

  const tl = r.text.tokens.map((t, i) => positionLabel(i, t));
  const tq = r.token_qk;
  await add('token_qk', keyed({
    title: `Head ${r.head}: query × key scores on the text, and their parts (${m})`,
    subtitle: [
      'scores: the real pre-softmax scores q·k/√hs (future masked). The parts: the direct path from the embeddings, each over its layer norm scale:',
      'token·token, token·position (both ways), position·position; rest = everything else (biases, and what earlier layers wrote).',
    ],
    panels: [
      { title: 'scores', values: tq.scores }, { title: 'token · token', values: tq.token_token }, { title: 'token · position', values: tq.token_position },
      { title: 'position · position', values: tq.position_position }, { title: 'rest', values: tq.rest },
    ].map((p) => ({ ...p, rows: tl, cols: tl, rowTitle: 'query', colTitle: 'key' })),
    colors: 'diverging', valueTitle: 'score',
  }, 'the query attends more', 'less'), 'Token QK', 'Rows: query tokens; columns: key tokens.');

  const ul = r.ov_on_tokens.tokens.map((t, i) => `${visibleToken(t)} #${r.ov_on_tokens.ids[i]}`);
  await add('ov_tokens', keyed({
    title: `Head ${r.head}: its OV circuit on the text's tokens (${m})`,
    subtitle: ['W_E[src] W_OV W_U[:, dst]: attending to a position holding the row token, how much the head raises the column token\'s logit (direct path).', 'A copying head has a bright diagonal.'],
    panels: [{ title: 'OV circuit', rows: ul, cols: ul, values: r.ov_on_tokens.values, rowTitle: 'attended token', colTitle: 'logit of' }],
    colors: 'diverging', valueTitle: 'logit change',
  }, 'the head raises that logit', 'it lowers it'), 'OV on tokens', 'Rows: the token attended to; columns: the token whose logit changes.');

  const vw = r.virtual_weights;
  if (vw.q.length) {
    await add('virtual_weights', keyed({
      title: `Virtual weights of ${r.path.writer} → ${r.path.reader} on the text's tokens (${m})`,
      subtitle: [
        `Q: (e_row W_OV[${r.path.writer}]) W_QK[${r.path.reader}] e_colᵀ — the row token, moved by ${r.path.writer}, as ${r.path.reader}'s query. K: e_row W_QK (e_col W_OV)ᵀ — the column token, moved, as the key.`,
        `V: e_row W_OV[${r.path.writer}] W_OV[${r.path.reader}] W_U[:, col] — the row token moved twice, onto the column token's logit.`,
      ],
      panels: [
        { title: 'Q-composition', rows: ul, cols: ul, values: vw.q, rowTitle: 'query token (moved)', colTitle: 'key token' },
        { title: 'K-composition', rows: ul, cols: ul, values: vw.k, rowTitle: 'query token', colTitle: 'key token (moved)' },
        { title: 'V-composition', rows: ul, cols: ul, values: vw.v, rowTitle: 'moved token', colTitle: 'logit of' },
      ],
      colors: 'diverging', valueTitle: 'value', shared: false,
    }, 'the pair scores higher', 'lower'), 'Virtual weights', 'Three products of two heads\' circuits, shown on the tokens of the text.');
  }

  await add('neurons', charts.neuronsSpec({ model: m, cosines: r.neuron_cosine, threshold: r.eraser_below }),
    'Memory-management neurons', 'Per layer, how many neurons have each cosine between their input and output direction.');

  await add('qk_path', charts.pathSpec({
    model: m, writer: r.qk_path.writer, reader: r.qk_path.reader, clean: r.qk_path.clean.accuracy,
    k_removed: r.qk_path.k_path_removed.accuracy, q_removed: r.qk_path.q_path_removed.accuracy, chance: r.qk_path.chance_accuracy,
  }), 'Causal check of K-composition', 'Second-half accuracy on repeated random tokens.');
  return files;
}

export async function main(argv: readonly string[]): Promise<void> {
  const parsed = readArgs(argv);
  if (parsed === 'help') {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  const a = parsed.args;
  const out = new OutputWriter(a.out);
  out.check(); // before the long part
  const print = (s = '') => process.stdout.write(s + '\n');
  const start = performance.now();
  const model = await loadModel(parsed.choice);
  const name = a.weights ?? a.model;
  const load_s = (performance.now() - start) / 1000;
  const L = model.config.n_layer, nh = model.config.n_head, V = model.config.vocab_size;
  const shape = `${name} has ${L} layers of ${nh} heads`;
  for (const h of [parsed.head, ...(parsed.path ?? [])]) if (h && !headExists(h, L, nh)) throw new InputError(`head ${headName(h)} does not exist: ${shape}`);
  if (!parsed.path && L < 2) throw new InputError(`${name} has one layer: composition, virtual weights and the causal check need two`);

  // the text of steps 4-5
  const facts = modelFacts(model);
  let ids: number[];
  if (a.text !== undefined) {
    if (a.text.trim() === '') throw new UsageError('--text is empty');
    ids = new BPETokenizer().encode(a.text);
    const bad = ids.filter((id) => id >= V);
    if (bad.length) throw new InputError(`--text has tokens ${[...new Set(bad)].slice(0, 5).join(', ')} outside the vocabulary of ${name} (ids 0..${V - 1})`);
  } else if (facts.range) {
    const rng = new RNG(a.seed);
    const x = Array.from({ length: 8 }, () => rng.randint(facts.range![0], facts.range![1]));
    ids = [facts.bos, ...x, ...x];
  } else {
    ids = new BPETokenizer().encode(DEFAULT_TEXT).filter((id) => id < V);
  }
  if (ids.length > model.block_size) throw new InputError(`the text has ${ids.length} tokens; ${name} reads at most ${model.block_size}`);
  const labels = ids.map((id) => (id === facts.bos && facts.range ? 'BOS' : tokenStrings([id])[0]));

  // step 7's tokens
  const [lo, hi] = a['token-range'] !== undefined ? optionValue('--token-range', a['token-range'], parseTokenRange) : facts.range ?? [256, Math.min(EOT, V)];
  if (hi > V) throw new InputError(`the token range [${lo}, ${hi}) goes past the vocabulary of ${name} (${V} tokens)`);
  const seqLen = a['seq-len'];
  if (2 * seqLen + 1 > model.block_size) throw new InputError(`--seq-len ${seqLen} needs ${2 * seqLen + 1} positions; ${name} reads at most ${model.block_size}`);
  // step 7 holds every sequence's logits at the second half's positions and its activations at once
  const perSequence = 4 * (seqLen * V + (2 * seqLen + 1) * L * 20 * model.config.n_embd);
  const fit = Math.floor(STEP7_BYTES / perSequence);
  if (a.batch > fit) {
    throw new InputError(`--batch ${a.batch} needs about ${(a.batch * perSequence / 2 ** 30).toFixed(1)} GiB for step 7 (sequences of BOS + 2 × ${seqLen} tokens on ${name}); `
      + `at most ${fit} fit in the ${STEP7_BYTES / 2 ** 30} GiB it may use: give --batch ${Math.max(1, fit)} or fewer (or a shorter --seq-len)`);
  }

  print(`model: ${name} (${L} layers × ${nh} heads, n_embd ${model.config.n_embd}, vocabulary ${V}), loaded in ${load_s.toFixed(1)} s; ${a.raw ? 'raw' : 'processed'} weights` +
    (hasRandomWeights(model) ? ' — random weights (config.json says so)' : ''));
  const report = runCircuits(model, name, {
    processed: !a.raw, ids, labels, head: parsed.head, path: parsed.path,
    eraserBelow: a['eraser-below'], top: a.top,
    batch: a.batch, seqLen, seed: a.seed, lo, hi, bos: facts.bos,
  }, (step) => print(`   … ${step}`));
  printReport(report, print);
  print('\nwhat the numbers say:');
  for (const sentence of readingAid(report, hasRandomWeights(model))) print(`• ${sentence}`);

  const chartStart = performance.now();
  const files = await outputFiles(report);
  report.timing_s.charts = (performance.now() - chartStart) / 1000;
  report.timing_s.load = load_s;
  report.timing_s.total = (performance.now() - start) / 1000;
  files.set('circuits.json', JSON.stringify(report) + '\n');
  for (const [n, data] of files) out.add(n, data);
  const written = out.commit();
  const t = report.timing_s;
  print(`\nfiles in ${a.out} (total ${t.total.toFixed(1)} s: load ${t.load.toFixed(1)}, copying ${t.copying.toFixed(1)}, composition ${t.composition.toFixed(1)}, causal check ${t.qk_path.toFixed(1)}, charts ${t.charts.toFixed(1)})`);
  for (const f of written) print(`   ${path.relative(process.cwd(), f)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, SCRIPT);
}
