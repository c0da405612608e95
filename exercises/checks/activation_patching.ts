/**
 * The activation-patching tasks' checks (1.1–1.6). The numbers come from the reference (the
 * fixtures' PyTorch run or a teacher's key) or are worked out by hand; the loop (1.5) runs on a
 * stand-in model whose every answer is fixed by construction, so that it needs none of the model
 * tasks (1.2–1.4).
 */
import ndarray from 'ndarray';
import type { GPT, ForwardOptions, Idx } from '../../mingpt/model.ts';
import { run_with_cache } from '../../lens/activation_cache.ts';
import { referencePatchingSweep } from '../../sweep/sweep.ts';
import { targetTokenId, tokenizeInputs } from '../../assignments/activation-patching/experiment.ts';
import { patchingHeatmapSpec } from '../../assignments/activation-patching/charts.ts';
import { positionLabel } from '../../cli/plot.ts';
import {
  Mismatch, attempt, expectArrayNear, expectGridNear, expectNear, firstDiff, fmt, near, stubTask, type Alternative,
} from '../harness.ts';
import { hookData } from '../reference.ts';
import type { Context, TaskChecks } from '../context.ts';

const q = JSON.stringify;

/** logit(token) − logit(other) at the last position of forward()'s logits (B = 1). */
function lastDiff(logits: Float32Array, T: number, V: number, token: number, other: number): number {
  return logits[(T - 1) * V + token] - logits[(T - 1) * V + other];
}

// -----------------------------------------------------------------------------------------------
// 1.1 the answers' token ids

const task11: TaskChecks = async (t, c) => {
  const bpe = c.bpe();
  await t.test("each case's answers get their token ids", () => {
    for (const k of c.ref.reference.cases) {
      for (const [word, id, flag] of [[k.clean_token, k.clean_token_id, '--clean-token'], [k.corrupt_token, k.corrupt_token_id, '--corrupt-token']] as const) {
        const got = targetTokenId(bpe, word, flag);
        if (got === id) continue;
        const bare = bpe.encode(word.trim());
        const hint = word !== word.trim() && bare.length === 1 && got === bare[0]
          ? `that is the id of ${q(word.trim())}, the word without its leading space. Inside a sentence a word carries the space before it: ${q(word)} and ${q(word.trim())} are different tokens (the assignment's bpe(' Jones'))`
          : 'encode the answer exactly as given, leading space included, and return its single id';
        throw new Mismatch(`the id of ${q(word)} = ${id}`, String(got), hint);
      }
    }
  });
  await t.test('an answer of several tokens is refused', () => {
    let got: number;
    try {
      got = targetTokenId(bpe, ' Michelle Jones', '--clean-token');
    } catch (err) {
      if (stubTask(err) !== null) throw err;
      return;
    }
    throw new Mismatch('an error: " Michelle Jones" is two tokens', `the id ${got}`, 'the experiment compares the logits of two single tokens: throw an error (an InputError) when the answer splits into several');
  });
  await t.test("each case's texts and answers, through tokenizeInputs", () => {
    for (const k of c.ref.reference.cases) {
      const r = tokenizeInputs(bpe, { clean: k.clean, corrupt: k.corrupt, cleanToken: k.clean_token, corruptToken: k.corrupt_token });
      const got = [r.clean_ids, r.corrupt_ids, [r.clean_token_id, r.corrupt_token_id]], want = [k.clean_ids, k.corrupt_ids, [k.clean_token_id, k.corrupt_token_id]];
      if (q(got) !== q(want)) throw new Mismatch(q(want), q(got), "tokenizeInputs encodes both texts and calls targetTokenId for the two answers: compare the ids with the reference's");
    }
  });
};

// -----------------------------------------------------------------------------------------------
// 1.2 the save flag

const RESID_POST = /^blocks\.(\d+)\.hook_resid_post$/;

const task12: TaskChecks = async (t, c) => {
  const model = c.model(), { n_layer: L, n_embd: C } = model.config;
  const { clean_ids, corrupt_ids } = c.ref.analysis.case, T = clean_ids.length;
  // what the model itself hands to the save flag, seen by a hook of our own at the same points
  const seen: Float32Array[] = [];
  let saved: Float32Array[][] = [];
  await t.test("every block's output at every position, as the reference has it", () => {
    model.forward(clean_ids, { save: true, hooks: [[(n) => RESID_POST.test(n), (act, name) => { seen[Number(RESID_POST.exec(name)![1])] = act.data; }]] });
    saved = model.activations;
    if (!Array.isArray(saved) || saved.length !== L) throw new Mismatch(`model.activations with ${L} layers`, Array.isArray(saved) ? `${saved.length}` : String(saved), 'keep one list per block: activations[layer][position]');
    for (let l = 0; l < L; l++) {
      if (!Array.isArray(saved[l]) || saved[l].length !== T) throw new Mismatch(`activations[${l}] with ${T} positions`, Array.isArray(saved[l]) ? `${saved[l].length}` : String(saved[l]), 'one vector per position of the text');
      const want = hookData(c.ref, `blocks.${l}.hook_resid_post`), before = c.ref.analysis.hooks[`blocks.${l}.hook_resid_pre`] ? hookData(c.ref, `blocks.${l}.hook_resid_pre`) : null;
      for (let p = 0; p < T; p++) {
        const v = saved[l][p], w = want.subarray(p * C, (p + 1) * C);
        if (!v || v.length !== C) throw new Mismatch(`activations[${l}][${p}]: ${C} numbers`, v ? `${v.length}` : String(v), 'each entry is one position\'s vector (C numbers) of the block\'s output');
        if (firstDiff(v, w, 1e-3) < 0) continue;
        const input = before && firstDiff(v, before.subarray(p * C, (p + 1) * C), 1e-3) < 0;
        expectArrayNear(`activations[${l}][${p}]`, v, w, 1e-3, input
          ? "that is the block's input (blocks.l.hook_resid_pre): keep what block l outputs, after its MLP"
          : "activations[l][p] is block l's output at position p (blocks.l.hook_resid_post) in the clean run");
      }
    }
  });
  await t.test('copies, not views of the model\'s arrays', () => {
    if (saved.length !== L) throw new Mismatch('the activations of the first test', 'none', 'the first test must pass first');
    for (let l = 0; l < L; l++) {
      for (let p = 0; p < T; p++) {
        if (seen[l] && saved[l][p].buffer === seen[l].buffer) {
          throw new Mismatch(`activations[${l}][${p}]: a copy with memory of its own`, `a view of the array the model computed (same buffer)`,
            'the activations were saved by reference: a later run may overwrite them. Keep a copy (slice(), Float32Array.from): the assignment\'s .detach().clone()');
        }
      }
    }
    const snapshot = saved.map((row) => row.map((v) => Float32Array.from(v)));
    model.forward(corrupt_ids);
    for (let l = 0; l < L; l++) for (let p = 0; p < T; p++) {
      expectArrayNear(`activations[${l}][${p}] after another run`, saved[l][p], snapshot[l][p], 0, 'a run without save must leave the saved activations alone; were they saved by reference?');
    }
  });
};

// -----------------------------------------------------------------------------------------------
// 1.3 the patch flag

const task13: TaskChecks = async (t, c) => {
  const model = c.model(), { n_layer: L, n_embd: C, vocab_size: V } = model.config;
  const k = c.ref.analysis.case, T = k.clean_ids.length;
  // the clean run's block outputs, put where the save flag would have put them (the test needs no 1.2)
  const clean = run_with_cache(model, k.clean_ids, { names: (n) => RESID_POST.test(n) }).cache;
  const post = Array.from({ length: L }, (_, l) => clean.get('resid_post', l).data);
  model.activations = post.map((a) => Array.from({ length: T }, (_, p) => a.slice(p * C, (p + 1) * C)));
  const want = c.ref.analysis.patching.resid_post;
  await t.test('every (layer, position) patched from the clean run: logit(corrupt) − logit(clean)', () => {
    const errors = new Map<number, string>();
    const got = Array.from({ length: L }, (_, l) => Array.from({ length: T }, (_, p) => attempt(() => {
      const r = model.forward(k.corrupt_ids, { patch: { layer: l, position: p } });
      return lastDiff(r.logits.data, T, V, k.corrupt_token_id, k.clean_token_id);
    }, errors, l * T + p)));
    expectGridNear('patched[layer][position]', got, want, 1e-3,
      'forward(corrupt, { patch: { layer, position } }) must replace, after block `layer`, the vector at `position` by the saved clean one, and nothing else',
      () => patchAlternatives(model, k, post, want, c), errors);
  });
};

/** What the usual patching mistakes give, to name them. */
function patchAlternatives(model: GPT, k: Context['ref']['analysis']['case'], post: Float32Array[], want: number[][], c: Context): Alternative[] {
  const { n_layer: L, n_embd: C, vocab_size: V } = model.config, T = k.clean_ids.length;
  const at = (l: number, p: number) => (l < L && p < T ? want[l][p] : NaN);
  // the saved vector of (l, p) written somewhere else: (hook point, position), computed with a plain hook
  const misplaced = (where: (l: number, p: number) => [string, number] | null) => Array.from({ length: L }, (_, l) => Array.from({ length: T }, (_, p) => {
    const w = where(l, p);
    if (!w) return NaN;
    const r = model.run_with_hooks(k.corrupt_ids, [[w[0], (act) => { act.data.set(post[l].subarray(p * C, (p + 1) * C), w[1] * C); }]]);
    return lastDiff(r.logits.data, T, V, k.corrupt_token_id, k.clean_token_id);
  })).flat();
  const nextPosition = 'each patch lands on the next position (p + 1): the vector at position p is entry p';
  const nextBlock = 'each patch lands after the next block (l + 1): patch the output of block `layer` itself';
  return [
    { values: want.flatMap((row, l) => row.map((_, p) => at(l, p + 1))), hint: nextPosition },
    { values: want.flatMap((row, l) => row.map((_, p) => at(l + 1, p))), hint: nextBlock },
    { values: misplaced((l, p) => (p + 1 < T ? [`blocks.${l}.hook_resid_post`, p + 1] : null)), hint: nextPosition },
    { values: misplaced((l, p) => (l + 1 < L ? [`blocks.${l + 1}.hook_resid_post`, p] : null)), hint: nextBlock },
    { values: misplaced((l, p) => [`blocks.${l}.hook_resid_pre`, p]), hint: "the patch is written into the block's input; the assignment patches its output, before the next block reads it" },
    { values: c.ref.analysis.patching.resid_pre.flat(), hint: "that is patching each block's input (resid_pre) from the clean run; the assignment patches the block's output (resid_post)" },
    { values: want.flat().map(() => c.ref.analysis.metric.corrupt), hint: 'no patch changed anything: the patched vector must be the saved clean one (model.activations[layer][position]), written into the run' },
  ];
}

// -----------------------------------------------------------------------------------------------
// 1.4 the last position's logits

const task14: TaskChecks = async (t, c) => {
  const model = c.model(), V = model.config.vocab_size;
  const k = c.ref.reference.cases[0], T = k.clean_ids.length;
  let kept: Float32Array = new Float32Array(0);
  await t.test("model.lastLogits holds the last position's logits", () => {
    model.forward(k.clean_ids);
    kept = model.lastLogits;
    if (kept.length === T * V) throw new Mismatch(`${V} logits`, `${kept.length} (every position)`, 'keep only the last position\'s row of the logits: what predicts the next token');
    if (kept.length !== V) throw new Mismatch(`${V} logits (the vocabulary)`, String(kept.length), 'lastLogits is one logit per vocabulary entry, at the last position');
    const first8 = Array.from(kept.subarray(0, 8));
    if (firstDiff(first8, k.clean_last_logits_first8, 1e-3) >= 0) {
      const p0 = model.forward(k.clean_ids, { logits_at: [0] }).logits.data.subarray(0, 8);
      model.forward(k.clean_ids);
      const hint = firstDiff(first8, p0, 1e-4) < 0 ? "those are the first position's logits; keep the last position's (T − 1)" : "lastLogits after forward(clean) must be the logits at the text's last position";
      expectArrayNear('lastLogits[0..8]', first8, k.clean_last_logits_first8, 1e-3, hint);
    }
    let sum = 0;
    for (let i = 0; i < V; i++) sum += kept[i];
    expectNear('the sum of lastLogits', sum, k.clean_last_logits_sum, 1e-3, 'some entries of lastLogits differ from the last position\'s logits');
    expectNear('lastLogits[corrupt] − lastLogits[clean]', kept[k.corrupt_token_id] - kept[k.clean_token_id], k.clean_logit_diff, 1e-3, 'the entries at the answers\' ids are wrong');
  });
  await t.test('kept: the next run does not overwrite them', () => {
    if (kept.length !== V) throw new Mismatch('the logits of the first test', `${kept.length} numbers`, 'the first test must pass first');
    const snapshot = Float32Array.from(kept);
    model.forward(k.corrupt_ids);
    expectArrayNear('the first run\'s lastLogits after a second run', kept, snapshot, 0, 'lastLogits must be an array of its own: a view of memory the model reuses changes under you');
    expectNear('after forward(corrupt): lastLogits[corrupt] − lastLogits[clean]', model.lastLogits[k.corrupt_token_id] - model.lastLogits[k.clean_token_id], k.corrupt_logit_diff, 1e-3, 'every forward pass must set lastLogits to its own last position\'s logits');
  });
};

// -----------------------------------------------------------------------------------------------
// 1.5 the loop, on a stand-in model

/**
 * A model whose answers are fixed by construction: the clean run's metric is CLEAN, the corrupted
 * run's CORRUPT, and the corrupted run patched at (layer, position) gives value(layer, position).
 * It refuses what the assignment's loop never does (patching before saving, patching the clean
 * text, unknown texts) and records the patched runs.
 */
const CLEAN = -3.5, CORRUPT = 2.25;
const value = (l: number, p: number) => l + 1 + (p + 1) / 100;

function standIn(L: number, T: number) {
  const V = 64, cleanTok = 7, corruptTok = 40;
  const clean_ids = Array.from({ length: T }, (_, i) => 10 + i), corrupt_ids = clean_ids.map((x, i) => (i === 1 ? 50 : x));
  const patched: string[] = [];
  let saved = false;
  const logitsFor = (diff: number) => {
    const row = new Float32Array(V).fill(-1);
    row[cleanTok] = 0.25;
    row[corruptTok] = 0.25 + diff;
    return row;
  };
  const model = {
    config: { n_layer: L, n_head: 2, n_embd: 8, vocab_size: V, block_size: 64 },
    block_size: 64,
    transformer: { h: Array.from({ length: L }, () => ({})) },
    activations: [] as Float32Array[][],
    lastLogits: new Float32Array(0),
    forward(idx: Idx | null, opts: ForwardOptions = {}) {
      const ids = (Array.isArray(idx?.[0]) ? (idx as number[][])[0] : (idx as number[])) ?? [];
      const isClean = q(ids) === q(clean_ids), isCorrupt = q(ids) === q(corrupt_ids);
      if (!isClean && !isCorrupt) throw new Error(`the stand-in model only knows the clean and the corrupted texts; it was given ${q(ids)}`);
      let diff: number;
      if (opts.patch) {
        if (isClean) throw new Error('the loop patched the clean run; patches go into the corrupted run');
        if (!saved) throw new Error('a patch before the clean run was saved: run forward(clean_ids, { save: true }) first');
        const { layer, position } = opts.patch;
        if (!(Number.isInteger(layer) && layer >= 0 && layer < L && Number.isInteger(position) && position >= 0 && position < T)) throw new Error(`patch (${layer}, ${position}) is outside the ${L} × ${T} grid`);
        patched.push(`${layer},${position}`);
        diff = value(layer, position);
      } else {
        if (opts.save) {
          if (!isClean) throw new Error('the loop saved the corrupted run; the clean run is the one to save');
          saved = true;
          this.activations = Array.from({ length: L }, () => Array.from({ length: T }, () => new Float32Array(8)));
        }
        diff = isClean ? CLEAN : CORRUPT;
      }
      const row = logitsFor(diff), all = new Float32Array(T * V);
      for (let p = 0; p < T; p++) all.set(row, p * V);
      this.lastLogits = row.slice();
      return { logits: ndarray(all, [1, T, V]), loss: null, residual: ndarray(new Float32Array(T * 8), [1, T, 8]) };
    },
  };
  return { model, input: { clean_ids, corrupt_ids, clean_token_id: cleanTok, corrupt_token_id: corruptTok }, patched };
}

const task15: TaskChecks = async (t) => {
  const L = 3, T = 5;
  const s = standIn(L, T);
  let r: ReturnType<typeof referencePatchingSweep> | null = null;
  const want = Array.from({ length: L }, (_, l) => Array.from({ length: T }, (_, p) => value(l, p)));
  const result = () => r ?? (() => { throw new Mismatch('a result from the first test', 'none', 'the first test must pass first'); })();
  await t.test('the matrix: matrix[layer][position] = the patched run\'s logit(corrupt) − logit(clean)', () => {
    r = referencePatchingSweep(s.model as unknown as GPT, s.input);
    expectGridNear('matrix', r.matrix, want, 1e-6, 'one row per layer, one column per position, each the logit difference of the run patched there', () => [
      { values: want.flat().map((v) => -v), hint: 'the sign is reversed: the metric is logit(corrupt token) − logit(clean token)' },
      { values: Array.from({ length: L * T }, (_, i) => (i < T * L ? (want[i % L]?.[Math.floor(i / L)] ?? NaN) : NaN)), hint: 'the matrix is transposed: rows are layers (matrix[layer][position])' },
    ]);
  });
  await t.test('the clean and corrupted runs\' own differences, and their last logits', () => {
    const r = result();
    const sign = near(r.clean_logit_diff, -CLEAN, 1e-6) ? 'the sign is reversed: the metric is logit(corrupt token) − logit(clean token)' : 'clean_logit_diff is the clean run\'s metric, without patching; corrupt_logit_diff the corrupted run\'s';
    expectNear('clean_logit_diff', r.clean_logit_diff, CLEAN, 1e-6, sign);
    expectNear('corrupt_logit_diff', r.corrupt_logit_diff, CORRUPT, 1e-6, sign);
    expectNear('clean_last_logits[corrupt] − [clean]', r.clean_last_logits[s.input.corrupt_token_id] - r.clean_last_logits[s.input.clean_token_id], CLEAN, 1e-6, 'clean_last_logits are the clean run\'s last logits');
    expectNear('corrupt_last_logits[corrupt] − [clean]', r.corrupt_last_logits[s.input.corrupt_token_id] - r.corrupt_last_logits[s.input.clean_token_id], CORRUPT, 1e-6, 'corrupt_last_logits are the corrupted run\'s last logits, without a patch');
  });
  await t.test('one patched run per (layer, position)', () => {
    const wantRuns = want.flatMap((row, l) => row.map((_, p) => `${l},${p}`)).sort();
    if (q([...s.patched].sort()) !== q(wantRuns)) throw new Mismatch(`${L * T} patched runs, each (layer, position) once`, `${s.patched.length}: ${s.patched.slice(0, 6).join(' ')}${s.patched.length > 6 ? ' …' : ''}`, 'loop over every layer and, inside, every position');
  });
};

// -----------------------------------------------------------------------------------------------
// 1.6 the heatmap's cells

interface Encoding { field?: string; sort?: unknown; scale?: { domain?: unknown } }
interface Spec { data?: { values?: Record<string, unknown>[] }; encoding?: Record<string, Encoding>; layer?: { encoding?: Record<string, Encoding> }[] }

/** The labels an ordinal axis lists, in order (its scale's domain, or a sort array). */
const axisLabels = (e: Encoding): unknown[] | null => (Array.isArray(e.scale?.domain) ? e.scale.domain : Array.isArray(e.sort) ? e.sort : null);

const task16: TaskChecks = async (t) => {
  // a matrix small enough to check by eye: 3 layers × 4 positions, every value different
  const matrix = [[0.5, -1.25, 2, 0], [3.5, -0.75, 1.5, -2], [0.25, 4, -3, 1]];
  const tokens = ['Michelle', ' Jones', ' was', ' a'];
  const spec = patchingHeatmapSpec({
    model: 'stand-in', cleanText: 'Michelle Jones was a', corruptText: 'Michelle Smith was a', cleanToken: ' Jones', corruptToken: ' Smith',
    cleanLogitDiff: -1, corruptLogitDiff: 1, matrix, tokens,
  }) as unknown as Spec;
  await t.test('every (layer, position) is one cell, on its row and column, with its value', () => {
    const cells = spec.data?.values ?? [];
    const enc = (ch: string) => spec.encoding?.[ch] ?? spec.layer?.find((l) => l.encoding?.[ch])?.encoding?.[ch];
    const x = enc('x'), y = enc('y'), color = spec.layer?.[0]?.encoding?.color ?? spec.encoding?.color;
    if (!x?.field || !y?.field || !color?.field) throw new Mismatch('x, y and colour encodings with fields', q({ x: x?.field, y: y?.field, color: color?.field }), 'the spec around the region encodes x = position, y = layer and colour = value; fill the grid to match');
    const xs = axisLabels(x), ys = axisLabels(y);
    if (xs?.length === matrix.length && ys?.length === tokens.length)
      throw new Mismatch(`${tokens.length} position columns and ${matrix.length} layer rows`, `${xs.length} columns and ${ys.length} rows`, 'the heatmap is transposed: positions go on x (columns), layers on y (rows)');
    const order = (labels: unknown[] | null, what: string, n: number) => {
      if (!labels || labels.length !== n) throw new Mismatch(`the ${what} axis listing ${n} labels in order`, labels ? `${labels.length} labels` : 'no order', `fill \`${what === 'position' ? 'cols' : 'rows'}\` with one label per ${what}, in order`);
      return labels;
    };
    order(xs, 'position', tokens.length);
    order(ys, 'layer', matrix.length);
    // each column is labelled "index: token" with its own position's index and token
    tokens.forEach((token, p) => {
      const want = positionLabel(p, token);
      if (xs![p] !== want) {
        const next = xs![p] === positionLabel(p + 1, token) || (p + 1 < tokens.length && xs![p] === positionLabel(p + 1, tokens[p + 1]));
        throw new Mismatch(`column ${p} labelled ${q(want)}`, q(String(xs![p])), next
          ? "each column is labelled with the next position's label: column p is position p (index p, token p)"
          : 'label column p with positionLabel(p, its token)');
      }
    });
    if (cells.length !== matrix.length * tokens.length) throw new Mismatch(`${matrix.length * tokens.length} cells (3 layers × 4 positions)`, String(cells.length), 'one cell per (layer, position)');
    const seen = new Set<string>();
    for (const cell of cells) {
      const p = xs!.indexOf(cell[x.field]), l = ys!.indexOf(cell[y.field]);
      if (p < 0 || l < 0) {
        const swapped = xs!.indexOf(cell[y.field]) >= 0 && ys!.indexOf(cell[x.field]) >= 0;
        throw new Mismatch(`a cell whose x is a position label (${xs!.map(String).join(', ')}) and y a layer label`, q({ x: cell[x.field], y: cell[y.field] }),
          swapped ? 'the heatmap is transposed: positions go on x (columns), layers on y (rows)' : 'label each cell with the same row and column labels the axes list (rows, cols)');
      }
      const v = Number(cell[color.field]);
      if (!near(v, matrix[l][p], 1e-9)) {
        const shifted = p > 0 && near(v, matrix[l][p - 1], 1e-9);
        throw new Mismatch(`the cell at layer ${l}, ${String(xs![p])} = ${fmt(matrix[l][p])}`, fmt(v), shifted
          ? "each cell is labelled with the next position's label: matrix[layer][p] belongs to position p"
          : 'each cell carries matrix[layer][position], on the row of its layer and the column of its position');
      }
      for (const [field, want] of [['layer', l], ['position', p]] as const) {
        if (cell[field] !== undefined && cell[field] !== want) throw new Mismatch(`the cell's ${field} = ${want}`, String(cell[field]), `the ${field} field (shown in the tooltip) must agree with the cell's place`);
      }
      seen.add(`${l},${p}`);
    }
    if (seen.size !== cells.length) throw new Mismatch('each (layer, position) once', `${seen.size} distinct of ${cells.length}`, 'one cell per (layer, position), no repeats');
  });
};

export const CHECKS: Record<string, TaskChecks> = { '1.1': task11, '1.2': task12, '1.3': task13, '1.4': task14, '1.5': task15, '1.6': task16 };
