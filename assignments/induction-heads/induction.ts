/**
 * The induction-heads experiment (README.md beside this file explains it).
 *
 *   npx tsx assignments/induction-heads/induction.ts                       # GPT-2 small
 *   npx tsx assignments/induction-heads/induction.ts --weights out/handmade --token-range 256,1256
 *   npx tsx assignments/induction-heads/induction.ts --help
 *
 * In order:
 *   1. a seeded batch of [BOS, n random tokens, the same n tokens again];
 *   2. one forward pass: log P(correct next token) at every position, first half vs second half;
 *   3. from the same pass's attention patterns, every head's induction, previous-token and
 *      duplicate-token score;
 *   4. detection: heads whose score stands out (mean + k·std over all heads), and precision,
 *      recall and F1 against the heads we know about (the literature for GPT-2 small, the
 *      construction for the handmade model);
 *   5. each layer's MLP output removed (zero or mean) at the second-half positions; with
 *      --ablate, the heads you name removed;
 *   6. the two-head circuit: everything but one previous-token head and one induction head removed;
 *   7. induction.json and the charts (vega-lite, SVG, PNG, HTML), written together at the end (a
 *      failed run writes nothing).
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { GPT } from '../../mingpt/model.ts';
import { tokenStrings } from '../../mingpt/bpe.ts';
import { ProgressBar } from '../../io/progress.ts';
import { helpText, optionValue, parseArgs, type CommandSpec } from '../../cli/args.ts';
import { headExists, headName, parseHead } from '../../lens/heads.ts';
import { MODEL_OPTIONS, checkModelChoice, hasRandomWeights, loadModel as loadChosenModel, runCli, type ModelChoice } from '../../cli/command.ts';
import { InputError, UsageError } from '../../io/errors.ts';
import { OutputWriter } from '../../io/output.ts';
import { kernelsName } from '../../mingpt/kernels/index.ts';
import {
  GPT2_SMALL_HEADS, SCORE_KINDS, detectHeads, evaluateDetection, parseTokenRange, repeatedTokens, stripeOf,
  type Detection, type Evaluation, type LabelledHeads, type ScoreKind,
} from './scores.ts';
import type { AttentionPanel } from './charts.ts';
import { printResults, readingAid } from './report.ts';
import { circuitSpec, cleanRun, halves, mlpAblation, runAblated, summarize, type AblationMode, type CleanRun, type HalfSummary } from './circuit.ts';

const SCRIPT = 'npx tsx assignments/induction-heads/induction.ts';
const EOT = 50256; // GPT-2's <|endoftext|>, used as BOS
const GPT2_VOCAB = 50257;

// -----------------------------------------------------------------------------------------------
// the command line

export const COMMAND = {
  usage: SCRIPT,
  description: `
Induction heads on repeated random tokens: how much better the model predicts the second copy
of a random sequence than the first, which heads attend like induction, previous-token and
duplicate-token heads, whether the MLPs matter, and how much two heads alone can do.`,
  options: {
    ...MODEL_OPTIONS,
    kernels: { ...MODEL_OPTIONS.kernels, metavar: undefined }, // shown as simd|js, like every choice here
    'seq-len': { type: 'int', default: 50, min: 2, metavar: 'N', help: 'random tokens in each copy; BOS + 2·N must fit in the context (when not given, a model with a shorter context gets the longest N that fits)' },
    batch: { type: 'int', default: 8, min: 1, max: 1024, metavar: 'B', help: 'how many random sequences' },
    seed: { type: 'int', default: 0, min: 0, metavar: 'S', help: 'seed of the random tokens' },
    'token-range': { type: 'string', metavar: 'LO,HI', help: "draw the random tokens from the ids [LO, HI) (default: the checkpoint's token_range if its config.json has one, else 256,50256: GPT-2 tokens other than the 256 single bytes and <|endoftext|>)" },
    k: { type: 'number', default: 1, min: 0, metavar: 'K', help: 'detection threshold: mean + K·std of the scores over all heads' },
    'min-score': { type: 'number', default: 0.1, min: 0, max: 1, metavar: 'S', help: 'detection floor: a head is never flagged with a score at or below S' },
    labels: { type: 'string', default: 'auto', choices: ['auto', 'gpt2-small', 'none'], help: "heads to grade detection against: 'auto' takes config.json's known_heads (the handmade model) or, for --model gpt2, the heads reported for GPT-2 small" },
    circuit: { type: 'string', metavar: 'PREV,IND', help: 'the two heads of the circuit, e.g. 4.11,5.5 (default: the top previous-token head below the top induction head)' },
    ablate: { type: 'string', metavar: 'L.H[,L.H…]', help: 'also remove these heads (at every position) and report the second half without them, e.g. 5.1,5.5' },
    ablation: { type: 'string', default: 'mean', choices: ['mean', 'zero'], help: "how a removed head or MLP is removed for --ablate and the two-head circuit: 'mean' keeps its average output, 'zero' writes zeros (the circuit reports the other one too)" },
    out: { type: 'string', default: 'out/induction', metavar: 'DIR', help: 'folder for induction.json and the charts (created when missing)' },
  },
  epilog: `
writes into --out: induction.json (every number), and for each chart a vega-lite spec (.vl.json),
an SVG, a PNG (when @resvg/resvg-js is installed) and an HTML page that opens offline: logprob
(log-prob by position), scores (layer × head heatmaps), attention (patterns of the top heads),
mlp_ablation.

examples:
  ${SCRIPT}
  npx tsx assignments/induction-heads/handmade.ts --out out/handmade
  ${SCRIPT} --weights out/handmade --token-range 256,1256 --out out/induction-handmade
  ${SCRIPT} --weights test/fixtures/gpt2-tiny --seq-len 20 --batch 4
  ${SCRIPT} --weights out/handmade --ablate 1.1 --ablation zero`,
} as const satisfies CommandSpec;

export interface Options extends ModelChoice {
  seqLen: number;
  /** whether --seq-len was given (else a model whose context is too short for the default gets a shorter one) */
  seqLenGiven?: boolean;
  batch: number;
  seed: number;
  tokenRange?: [number, number];
  k: number;
  minScore: number;
  labels: 'auto' | 'gpt2-small' | 'none';
  circuit?: [string, string];
  /** --ablate: heads to remove, "layer.head" */
  ablate?: string[];
  ablation: AblationMode;
  out: string;
}

/** The options, or 'help'. Throws UsageError for anything wrong on the command line itself. */
export function readOptions(argv: readonly string[]): Options | 'help' {
  const a = parseArgs(argv, COMMAND);
  if (a.help) return 'help';
  const choice = checkModelChoice(argv, a);
  if (a.out === '') throw new UsageError('--out needs a folder');
  // heads are only read here; whether they exist (and the circuit's layer order) is checked
  // against the model in setup()
  let circuit: [string, string] | undefined;
  if (a.circuit !== undefined) {
    const parts = a.circuit.split(',');
    if (parts.length !== 2) throw new UsageError(`--circuit expects two heads PREV,IND, e.g. 4.11,5.5; got "${a.circuit}"`);
    const [p, i] = parts.map((x) => optionValue('--circuit', x, parseHead));
    circuit = [headName(p), headName(i)];
  }
  let ablate: string[] | undefined;
  if (a.ablate !== undefined) {
    const heads = a.ablate.split(',').map((x) => headName(optionValue('--ablate', x, parseHead)));
    ablate = [...new Set(heads)];
  }
  return {
    model: choice.weights === undefined ? choice.model : undefined,
    weights: choice.weights,
    kernels: choice.kernels,
    seqLen: a['seq-len'],
    seqLenGiven: argv.some((x) => x === '--seq-len' || x.startsWith('--seq-len=')),
    batch: a.batch,
    seed: a.seed,
    tokenRange: a['token-range'] === undefined ? undefined : optionValue('--token-range', a['token-range'], parseTokenRange),
    k: a.k,
    minScore: a['min-score'],
    labels: a.labels,
    circuit,
    ablate,
    ablation: a.ablation,
    out: a.out,
  };
}

// -----------------------------------------------------------------------------------------------
// the model and what its config.json says about it

export interface ModelInfo {
  model: GPT;
  name: string;
  /** the raw config.json of a --weights checkpoint (null for --model) */
  config: Record<string, unknown> | null;
}

/** The model the options name (cli/command.ts), with the config.json it was read with. */
export async function loadModel(o: ModelChoice): Promise<ModelInfo> {
  const model = await loadChosenModel(o); // checks config.json and every tensor
  if (o.weights !== undefined) return { model, name: o.weights, config: model.source?.raw_config ?? null };
  return { model, name: o.model ?? 'gpt2', config: null };
}

export interface Setup {
  lo: number;
  hi: number;
  bos: number;
  /** where the token range came from, for the report */
  rangeSource: string;
  labels: LabelledHeads | null;
}

const isIdPair = (v: unknown): v is [number, number] => Array.isArray(v) && v.length === 2 && v.every((x) => Number.isInteger(x) && x >= 0);
const isHeadList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Token range, BOS and labels for this model, with every check that needs the model. Throws InputError. */
export function setup(info: ModelInfo, o: Options): Setup {
  const { model, config } = info;
  const V = model.config.vocab_size;
  const T = 2 * o.seqLen + 1;
  if (T > model.block_size) {
    throw new InputError(`--seq-len ${o.seqLen} needs BOS + 2 × ${o.seqLen} = ${T} positions, but ${info.name} has a context of ${model.block_size}; use --seq-len ${Math.floor((model.block_size - 1) / 2)} or less`);
  }
  // BOS: config.json's bos_token_id, else GPT-2's <|endoftext|>
  let bos = EOT;
  if (config && config.bos_token_id !== undefined) {
    if (!(Number.isInteger(config.bos_token_id) && (config.bos_token_id as number) >= 0)) throw new InputError(`${info.name}: config.json's bos_token_id must be a token id, got ${JSON.stringify(config.bos_token_id)}`);
    bos = config.bos_token_id as number;
  }
  if (bos >= V) throw new InputError(`${info.name} has a vocabulary of ${V}, which does not hold the BOS token ${bos}; set bos_token_id in its config.json`);
  // the token range: the flag, else the checkpoint's own, else ordinary GPT-2 tokens
  let lo: number, hi: number, rangeSource: string;
  if (o.tokenRange) {
    [lo, hi] = o.tokenRange;
    rangeSource = '--token-range';
  } else if (config && config.token_range !== undefined) {
    if (!isIdPair(config.token_range) || config.token_range[1] <= config.token_range[0]) throw new InputError(`${info.name}: config.json's token_range must be [lo, hi] with lo < hi, got ${JSON.stringify(config.token_range)}`);
    [lo, hi] = config.token_range;
    rangeSource = 'config.json token_range';
  } else {
    [lo, hi] = [256, Math.min(EOT, V)];
    rangeSource = 'default: GPT-2 tokens after the 256 single bytes, before <|endoftext|>';
    if (hi <= lo) throw new InputError(`${info.name} has a vocabulary of only ${V}: give the ids to draw from with --token-range LO,HI`);
  }
  if (hi > V) throw new InputError(`the token range [${lo}, ${hi}) goes past the vocabulary of ${info.name} (${V} tokens, ids 0..${V - 1})`);
  if (bos >= lo && bos < hi) throw new InputError(`the token range [${lo}, ${hi}) contains the BOS token ${bos}; random tokens must not look like the start of a text`);
  // the heads to grade detection against
  let labels: LabelledHeads | null = null;
  const known = config?.known_heads as Record<string, unknown> | undefined;
  if (o.labels === 'gpt2-small' || (o.labels === 'auto' && !known && info.name === 'gpt2')) labels = GPT2_SMALL_HEADS;
  else if (o.labels === 'auto' && known) {
    if (!SCORE_KINDS.every((k) => known[k] === undefined || isHeadList(known[k]))) throw new InputError(`${info.name}: config.json's known_heads must map score kinds to lists of "layer.head"`);
    labels = {
      source: `${info.name}/config.json known_heads`,
      induction: (known.induction as string[] | undefined) ?? [],
      previous_token: (known.previous_token as string[] | undefined) ?? [],
      duplicate_token: (known.duplicate_token as string[] | undefined) ?? [],
    };
  }
  const L = model.config.n_layer, nh = model.config.n_head;
  const exists = (h: string) => {
    try {
      return headExists(parseHead(h), L, nh);
    } catch {
      return false; // not even of the form layer.head
    }
  };
  const shape = `${info.name} has ${L} layers of ${nh} heads`;
  const noSuchHead = (flag: string, h: string) => new InputError(`${flag}: no such head ${h}: the model has ${plural(L, 'layer')} × ${plural(nh, 'head')} (layers 0 … ${L - 1}, heads 0 … ${nh - 1})`);
  for (const h of o.circuit ?? []) if (!exists(h)) throw noSuchHead('--circuit', h);
  for (const h of o.ablate ?? []) if (!exists(h)) throw noSuchHead('--ablate', h);
  if (o.circuit) {
    const [p, i] = o.circuit.map(parseHead);
    if (!(p.layer < i.layer)) throw new UsageError(`--circuit ${o.circuit.join(',')}: the previous-token head must sit in an earlier layer than the induction head, whose keys it prepares`);
  }
  for (const kind of SCORE_KINDS) {
    const missing = (labels?.[kind] ?? []).filter((h) => !exists(h));
    if (missing.length) {
      const hint = labels === GPT2_SMALL_HEADS ? ' (--labels gpt2-small is for GPT-2 small: 12 layers of 12 heads)' : '';
      throw new InputError(`the labelled ${kind.replace('_', '-')} heads include ${missing.join(', ')}, which this model does not have: ${shape}${hint}`);
    }
  }
  return { lo, hi, bos, rangeSource, labels };
}

/** "1 layer", "2 layers": a count with its noun. */
export const plural = (count: number, noun: string, nouns = `${noun}s`) => `${count} ${count === 1 ? noun : nouns}`;

// -----------------------------------------------------------------------------------------------
// the experiment

/** induction.json: the settings, the halves' summary (first_half_logprob, …), and every number below. */
export interface Report extends HalfSummary {
  model: string;
  config: { n_layer: number; n_head: number; n_embd: number; vocab_size: number; block_size: number };
  seed: number;
  batch: number;
  seq_len: number;
  token_range: [number, number];
  token_range_source: string;
  bos_token_id: number;
  tokens: number[][];
  positions: { first_half: string; seam: string; second_half: string };
  scores: Record<ScoreKind, number[][]>;
  detection: Record<ScoreKind, Omit<Detection, 'heads'>>;
  detected: Record<ScoreKind, string[]>;
  labels: LabelledHeads | null;
  evaluation: Record<ScoreKind, Evaluation> | null;
  mlp_ablation: {
    positions: string;
    baseline_second_half_logprob: number;
    zero: { second_half_logprob: number[]; change: number[] };
    mean: { second_half_logprob: number[]; change: number[] };
  };
  two_head_circuit: {
    heads: string[];
    chosen_by: string;
    ablation: AblationMode;
    /** why this ablation (README step 6) */
    ablation_note: string;
    accuracy: number;
    second_half_logprob: number;
    full_model_accuracy: number;
    other_ablation: { ablation: AblationMode; accuracy: number; second_half_logprob: number };
  } | null;
  /** --ablate: the named heads removed at every position */
  head_ablation: {
    heads: string[];
    ablation: AblationMode;
    positions: string;
    second_half_logprob: number;
    second_half_accuracy: number;
    /** second_half_logprob − the full model's */
    change: number;
  } | null;
  timing_s: Record<string, number>;
}

export interface ExperimentHooks {
  /** called each time a transformer block finishes, in any of the runs: done of total (blocksToRun) */
  onProgress?: (done: number, total: number) => void;
}

/** How many circuit runs the experiment makes: the chosen ablation and the other one; none for one layer. */
const circuitRuns = (L: number) => (L > 1 ? 2 : 0);

/**
 * The transformer blocks the experiment runs in all, the unit of its progress bar: the clean
 * pass runs all L; an MLP ablation in layer l starts after it and runs L − 1 − l, once zeroing
 * and once with the mean; a circuit run removes layer 0's MLP too, so it runs all L; --ablate
 * runs from the lowest layer it names (`ablateFrom`).
 */
export function blocksToRun(L: number, ablateFrom?: number): number {
  let mlp = 0;
  for (let l = 0; l < L; l++) mlp += 2 * (L - 1 - l);
  return L + mlp + circuitRuns(L) * L + (ablateFrom === undefined ? 0 : L - ablateFrom);
}

/** The lowest layer among heads "layer.head" (undefined for none). */
const lowestLayer = (heads?: readonly string[]) => (heads && heads.length ? Math.min(...heads.map((h) => parseHead(h).layer)) : undefined);

/** The best head of a kind, "layer.head", among layers [fromLayer, toLayer). */
function topHead(scores: number[][], fromLayer = 0, toLayer = scores.length): string | null {
  let best: { name: string; score: number } | null = null;
  for (let l = fromLayer; l < toLayer; l++) scores[l].forEach((s, h) => {
    if (!best || s > best.score) best = { name: headName({ layer: l, head: h }), score: s };
  });
  return best ? (best as { name: string }).name : null;
}

/** 4. Each kind's threshold and flagged heads, and their grades against the labelled heads (if any). */
function detectAll(scores: CleanRun['scores'], o: Pick<Options, 'k' | 'minScore'>, labels: LabelledHeads | null) {
  const detection = {} as Report['detection'];
  const detected = {} as Report['detected'];
  for (const kind of SCORE_KINDS) {
    const { heads, ...rest } = detectHeads(scores[kind], o.k, o.minScore);
    detection[kind] = rest;
    detected[kind] = heads;
  }
  const evaluation = labels
    ? (Object.fromEntries(SCORE_KINDS.map((kind) => [kind, evaluateDetection(detected[kind], labels[kind])])) as Record<ScoreKind, Evaluation>)
    : null;
  return { detection, detected, evaluation };
}

/** 5. Each layer's MLP output removed at the second-half positions, zeroed and mean-replaced: 2L runs. */
function mlpAblations(model: GPT, clean: CleanRun, base: number, onBlock: () => void): Report['mlp_ablation'] {
  const L = model.config.n_layer, n = clean.n;
  const mlp: Report['mlp_ablation'] = {
    positions: `second half: positions ${n + 1} … ${2 * n} (the second copy)`,
    baseline_second_half_logprob: base,
    zero: { second_half_logprob: [], change: [] },
    mean: { second_half_logprob: [], change: [] },
  };
  // each = runAblated({ mode, mlps: [l], positions: 'second_half' }), one block sooner (circuit.ts)
  for (let layer = 0; layer < L; layer++) {
    for (const mode of ['zero', 'mean'] as const) {
      const r = mlpAblation(model, clean, layer, mode, onBlock);
      mlp[mode].second_half_logprob.push(r.second_half_logprob);
      mlp[mode].change.push(r.second_half_logprob - base);
    }
  }
  return mlp;
}

const ABLATION_NOTE: Record<AblationMode, string> = {
  mean: 'a removed head or MLP keeps its average output, so only what it says about this input is lost; zeroing would also push the residual stream where the model was never trained (README, step 6)',
  zero: 'asked for with --ablation zero; zeroing also removes the average part of each output, which pushes the residual stream where the model was never trained (README, step 6)',
};

/**
 * 6. The two-head circuit: --circuit's pair, or the strongest induction head that has a layer
 * below it and the strongest previous-token head there; everything else removed, both ways.
 */
function twoHeadCircuit(model: GPT, clean: CleanRun, o: Options, fullAccuracy: number, onBlock: () => void): Report['two_head_circuit'] {
  let heads: string[] | null = o.circuit ? [...o.circuit] : null;
  let chosenBy = '--circuit';
  if (!heads && circuitRuns(model.config.n_layer) > 0) {
    const ind = topHead(clean.scores.induction, 1);
    const prev = ind ? topHead(clean.scores.previous_token, 0, parseHead(ind).layer) : null;
    if (ind && prev) heads = [prev, ind];
    chosenBy = 'scores: the top induction head (layer ≥ 1), and the top previous-token head in the layers below it';
  }
  if (!heads) return null;
  const other: AblationMode = o.ablation === 'mean' ? 'zero' : 'mean';
  const main = runAblated(model, clean, circuitSpec(model, heads, o.ablation), onBlock);
  const alt = runAblated(model, clean, circuitSpec(model, heads, other), onBlock);
  return {
    heads,
    chosen_by: chosenBy,
    ablation: o.ablation,
    ablation_note: ABLATION_NOTE[o.ablation],
    accuracy: main.second_half_accuracy,
    second_half_logprob: main.second_half_logprob,
    full_model_accuracy: fullAccuracy,
    other_ablation: { ablation: other, accuracy: alt.second_half_accuracy, second_half_logprob: alt.second_half_logprob },
  };
}

/** 5b. --ablate: the named heads removed at every position. */
function headAblation(model: GPT, clean: CleanRun, o: Options, base: number, onBlock: () => void): Report['head_ablation'] {
  if (!o.ablate || !o.ablate.length) return null;
  const r = runAblated(model, clean, { mode: o.ablation, heads: o.ablate, positions: 'all' }, onBlock);
  return {
    heads: [...o.ablate],
    ablation: o.ablation,
    positions: 'all',
    second_half_logprob: r.second_half_logprob,
    second_half_accuracy: r.second_half_accuracy,
    change: r.second_half_logprob - base,
  };
}

/** Everything but the charts: one clean run, the ablations, and the report. */
export async function runExperiment(info: ModelInfo, o: Options, s: Setup, hooks: ExperimentHooks = {}): Promise<{ report: Report; clean: CleanRun; summary: HalfSummary }> {
  const { model } = info;
  const cfg = model.config as unknown as Report['config'];
  const n = o.seqLen;
  const total = blocksToRun(cfg.n_layer, lowestLayer(o.ablate));
  let done = 0;
  const tick = () => { hooks.onProgress?.(++done, total); };
  const timing: Record<string, number> = {};
  const timed = <R>(name: string, work: () => R): R => {
    const t0 = performance.now();
    const result = work();
    timing[name] = (performance.now() - t0) / 1000;
    return result;
  };

  // 1-3. the batch, the clean run, and the scores read off its attention patterns
  const tokens = repeatedTokens({ batch: o.batch, seqLen: n, lo: s.lo, hi: s.hi, bos: s.bos, seed: o.seed });
  const clean = timed('clean_run', () => cleanRun(model, tokens, n, tick));
  const summary = summarize(clean);
  // 4-6
  const { detection, detected, evaluation } = detectAll(clean.scores, o, s.labels);
  const mlp = timed('mlp_ablation', () => mlpAblations(model, clean, summary.second_half_logprob, tick));
  const heads = o.ablate ? timed('head_ablation', () => headAblation(model, clean, o, summary.second_half_logprob, tick)) : null;
  const circuit = timed('two_head_circuit', () => twoHeadCircuit(model, clean, o, summary.second_half_accuracy, tick));

  const h = halves(n);
  const report: Report = {
    model: info.name,
    config: { n_layer: cfg.n_layer, n_head: cfg.n_head, n_embd: cfg.n_embd, vocab_size: cfg.vocab_size, block_size: model.block_size },
    seed: o.seed,
    batch: o.batch,
    seq_len: n,
    token_range: [s.lo, s.hi],
    token_range_source: s.rangeSource,
    bos_token_id: s.bos,
    tokens,
    first_half_logprob: summary.first_half_logprob,
    second_half_logprob: summary.second_half_logprob,
    seam_logprob: summary.seam_logprob,
    first_half_accuracy: summary.first_half_accuracy,
    second_half_accuracy: summary.second_half_accuracy,
    logprob_by_position: summary.logprob_by_position,
    accuracy_by_position: summary.accuracy_by_position,
    positions: {
      first_half: `targets at positions 1 … ${n} (the first copy), predicted from positions ${h.first[0]} … ${h.first[1] - 1}`,
      seam: `the target at position ${n + 1} (the second copy's first token), predicted from position ${h.seam}; in neither mean`,
      second_half: `targets at positions ${n + 2} … ${2 * n} (the rest of the second copy), predicted from positions ${h.second[0]} … ${h.second[1] - 1}`,
    },
    scores: clean.scores,
    detection,
    detected,
    labels: s.labels,
    evaluation,
    mlp_ablation: mlp,
    two_head_circuit: circuit,
    head_ablation: heads,
    timing_s: timing,
  };
  return { report, clean, summary };
}

// -----------------------------------------------------------------------------------------------
// the charts

/** Tokens as the charts label them: GPT-2's strings, with BOS shown as such. */
export function tokenLabels(ids: readonly number[], bos: number): string[] {
  return ids.map((id) => (id === bos && id !== EOT ? '<bos>' : id < GPT2_VOCAB ? tokenStrings([id])[0] : `#${id}`));
}

const KIND_WORDS: Record<ScoreKind, string> = { induction: 'induction', previous_token: 'previous-token', duplicate_token: 'duplicate-token' };

/**
 * The heads the attention view shows: the top head of each kind and the circuit's two heads,
 * each once, with its pattern (T, T) in the first sequence and the stripe its kind's score reads.
 */
export function attentionPanels(report: Report, clean: CleanRun): AttentionPanel[] {
  const T = clean.T;
  const scoreOf = (kind: ScoreKind, head: string) => {
    const { layer, head: h } = parseHead(head);
    return report.scores[kind][layer][h];
  };
  const wanted: { head: string; kind: ScoreKind; why: string }[] = SCORE_KINDS.map((kind) => {
    const head = topHead(report.scores[kind])!;
    return { head, kind, why: `top ${KIND_WORDS[kind]} head (score ${scoreOf(kind, head).toFixed(3)})` };
  });
  if (report.two_head_circuit) {
    const [prev, ind] = report.two_head_circuit.heads;
    wanted.push({ head: prev, kind: 'previous_token', why: 'the circuit’s previous-token head' }, { head: ind, kind: 'induction', why: 'the circuit’s induction head' });
  }
  // a head wanted twice is shown once, with the stripe of the first reason and every reason in its caption
  const shown = new Map<string, { kind: ScoreKind; why: string[] }>();
  for (const w of wanted) {
    const e = shown.get(w.head);
    if (!e) shown.set(w.head, { kind: w.kind, why: [w.why] });
    else if (!e.why.includes(w.why)) e.why.push(w.why);
  }
  return [...shown].map(([head, { kind, why }]) => {
    const { layer, head: h } = parseHead(head);
    const scoresText = SCORE_KINDS.map((k) => `${KIND_WORDS[k]} ${scoreOf(k, head).toFixed(2)}`).join(', ');
    return {
      head,
      caption: `${why.join('; ')} — scores: ${scoresText}`,
      pattern: clean.patterns[layer].subarray(h * T * T, (h + 1) * T * T), // (T, T), batch row 0
      stripe: stripeOf(kind, report.seq_len),
    };
  });
}

/** induction.json and the charts, as name -> contents, ready for an OutputWriter. */
export async function outputFiles(report: Report, clean: CleanRun): Promise<Map<string, string | Uint8Array>> {
  // vega is large; loaded only once the numbers exist
  const { chartFiles } = await import('../../cli/plot.ts');
  const charts = await import('./charts.ts');
  const n = report.seq_len, model = report.model;
  const files = new Map<string, string | Uint8Array>();
  files.set('induction.json', JSON.stringify(report, null, 2) + '\n');

  const add = async (name: string, spec: Parameters<typeof chartFiles>[1], title: string, description: string) => {
    for (const [n, data] of (await chartFiles(name, spec, title, { description })).files) files.set(n, data);
  };

  await add('logprob', charts.logprobSpec({ model, n, byPosition: report.logprob_by_position, firstHalf: report.first_half_logprob, secondHalf: report.second_half_logprob }),
    'Log-probability of the correct next token, by position',
    'The same random tokens twice: a model with induction heads predicts the second copy far better than the first. Hover a point for its value.');

  await add('scores', charts.scoresSpec({
    model,
    scores: report.scores,
    detected: report.detected,
    thresholds: Object.fromEntries(SCORE_KINDS.map((k) => [k, report.detection[k].threshold])) as Record<ScoreKind, number>,
    labelled: report.labels,
  }), 'Head scores: induction, previous-token, duplicate-token',
  'Rows are layers, columns heads. Outlines mark the heads the threshold picks out and, where a labelled list exists, the ones it misses.');

  const panels = attentionPanels(report, clean);
  await add('attention', charts.attentionSpec({ model, tokens: tokenLabels(report.tokens[0], report.bos_token_id), panels }),
    'Attention patterns of the top heads',
    'The first sequence of the batch. Rows attend to columns; hover a cell for the tokens and the weight. The outlined cells are the stripe each head’s score averages.');

  await add('mlp_ablation', charts.mlpSpec({ model, zero: report.mlp_ablation.zero.change, mean: report.mlp_ablation.mean.change }),
    'MLP ablation at the second-half positions',
    'Each bar: one layer’s MLP output replaced, at the second copy’s positions, by zero or by its mean; the change in the mean second-half log-probability.');
  return files;
}

// -----------------------------------------------------------------------------------------------
// the run

export async function main(argv: readonly string[]): Promise<void> {
  const o = readOptions(argv);
  if (o === 'help') {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  new OutputWriter(o.out).check(); // before the long part, not after it
  const print = (s = '') => process.stdout.write(s + '\n');
  const start = performance.now(), cpuStart = process.cpuUsage();

  const loadStart = performance.now();
  const info = await loadModel(o);
  const load_s = (performance.now() - loadStart) / 1000;
  const fit = Math.floor((info.model.block_size - 1) / 2);
  if (!o.seqLenGiven && 2 * o.seqLen + 1 > info.model.block_size && fit >= 2) {
    print(`note: ${info.name} has a context of ${info.model.block_size}: --seq-len ${fit} instead of the default ${o.seqLen}`);
    o.seqLen = fit;
  }
  const s = setup(info, o);
  const cfg = info.model.config as unknown as Report['config'];
  const n = o.seqLen;
  print(`model: ${info.name} (${plural(cfg.n_layer, 'layer')} × ${plural(cfg.n_head, 'head')}, n_embd ${cfg.n_embd}, vocabulary ${cfg.vocab_size}, context ${info.model.block_size}), loaded in ${load_s.toFixed(1)} s` +
    (hasRandomWeights(info.model) ? ' — random weights (config.json says so)' : ''));
  print(`\n1. data: ${plural(o.batch, 'sequence')} of BOS (id ${s.bos}) + ${n} random tokens + the same ${n} again = ${2 * n + 1} tokens (seed ${o.seed})`);
  print(`   random tokens from the ids [${s.lo}, ${s.hi}) (${s.rangeSource})`);
  // the same draw runExperiment makes (seeded), shown before the long part starts
  const first = tokenLabels(repeatedTokens({ batch: 1, seqLen: n, lo: s.lo, hi: s.hi, bos: s.bos, seed: o.seed })[0], s.bos);
  print(`   first sequence: ${first.slice(0, 12).map((t) => JSON.stringify(t)).join(' ')}${first.length > 12 ? ' …' : ''}`);
  const blocks = blocksToRun(cfg.n_layer, lowestLayer(o.ablate));
  const ablateRun = o.ablate ? ', 1 head-ablation run' : '';
  print(`   running: one clean forward pass, ${plural(2 * cfg.n_layer, 'MLP ablation')}, ${plural(circuitRuns(cfg.n_layer), 'circuit run')}${ablateRun} (${plural(blocks, 'transformer block')} in all)`);

  const bar = new ProgressBar({ total: blocks, label: 'transformer blocks' });
  const { report, clean } = await runExperiment(info, o, s, { onProgress: (done) => bar.update(done) });
  bar.done();

  printResults(report, o, s, print);
  print('\nwhat the numbers say:');
  for (const sentence of readingAid(report, s, hasRandomWeights(info.model))) print(`• ${sentence}`);

  const chartStart = performance.now();
  const files = await outputFiles(report, clean);
  report.timing_s.charts = (performance.now() - chartStart) / 1000;
  report.timing_s.load = load_s;
  report.timing_s.total = (performance.now() - start) / 1000;
  // processor time of every thread (the kernels' helper threads too): on a busy machine the
  // wall-clock time above says more about the other programs than about this one
  const cpu = process.cpuUsage(cpuStart);
  report.timing_s.cpu = (cpu.user + cpu.system) / 1e6;
  files.set('induction.json', JSON.stringify(report, null, 2) + '\n'); // with the final timings
  const out = new OutputWriter(o.out);
  for (const [name, data] of files) out.add(name, data);
  const written = out.commit();
  print(`\n7. files in ${o.out} (total ${report.timing_s.total.toFixed(1)} s; processor time ${report.timing_s.cpu.toFixed(1)} s, ${kernelsName()} kernels)`);
  for (const f of written) print(`   ${path.relative(process.cwd(), f).startsWith('..') ? f : path.relative(process.cwd(), f)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  // the test checkpoint's context is 64 tokens: BOS + 2 × 50 would not fit
  await runCli(main, SCRIPT, '--seq-len 20 --batch 4');
}
