/**
 * The induction-heads tasks' checks (2.1–2.5). Their numbers are worked out by hand in the
 * comments (attention patterns written cell by cell, scores whose mean and spread are easy to
 * follow); a teacher's key adds the scores and the detection of the key's own model.
 */
import { run_with_cache } from '../../lens/activation_cache.ts';
import { detectHeads, evaluateDetection, repeatedTokens, stripeOf, stripeScore, type ScoreKind } from '../../assignments/induction-heads/scores.ts';
import { Mismatch, expectArrayNear, expectGridNear, expectNear, fmt, near } from '../harness.ts';
import type { TaskChecks } from '../context.ts';

const q = JSON.stringify;

// -----------------------------------------------------------------------------------------------
// 2.1 the data

const task21: TaskChecks = async (t) => {
  const o = { batch: 3, seqLen: 7, lo: 100, hi: 120, bos: 50256, seed: 3 };
  await t.test('B rows of BOS, n tokens, the same n tokens again', () => {
    const rows = repeatedTokens(o);
    if (!Array.isArray(rows) || rows.length !== o.batch) throw new Mismatch(`${o.batch} rows`, Array.isArray(rows) ? String(rows.length) : String(rows), 'one sequence per batch row');
    rows.forEach((row, b) => {
      if (row.length !== 2 * o.seqLen + 1) throw new Mismatch(`row ${b}: ${2 * o.seqLen + 1} tokens (BOS + 2 × ${o.seqLen})`, String(row.length), 'each row is [BOS, x1 … xn, x1 … xn]');
      if (row[0] !== o.bos) throw new Mismatch(`row ${b} starts with BOS = ${o.bos}`, String(row[0]), 'the first token of every row is the BOS token');
      const first = row.slice(1, 1 + o.seqLen), second = row.slice(1 + o.seqLen);
      if (q(first) !== q(second)) throw new Mismatch(`row ${b}: the second copy = ${q(first)}`, q(second), 'the second copy must repeat the first: the same n tokens in the same order (draw n tokens once, use them twice)');
      for (const x of first) if (!(Number.isInteger(x) && x >= o.lo && x < o.hi)) throw new Mismatch(`tokens in [${o.lo}, ${o.hi})`, String(x), 'draw each token uniformly from the ids lo … hi − 1 (rng.randint(lo, hi))');
    });
    if (rows.every((r) => q(r) === q(rows[0]))) throw new Mismatch('rows drawn independently', 'every row the same', 'draw fresh tokens for each row');
  });
  await t.test('seeded: the same seed gives the same rows, another seed others', () => {
    const a = repeatedTokens(o), b = repeatedTokens(o), c = repeatedTokens({ ...o, seed: 4 });
    if (q(a) !== q(b)) throw new Mismatch('the same rows for the same seed', 'different rows', 'make the generator from o.seed inside the function (new RNG(o.seed)), not a global one');
    if (q(a) === q(c)) throw new Mismatch('other rows for another seed', 'the same rows', 'the seed must decide the tokens');
  });
  await t.test('both ends of the range are reached, and nothing beyond', () => {
    // 20 rows of 10 tokens from {5, 6}: a fair draw misses one of them with probability 2 · 2^-200
    const ids = new Set(repeatedTokens({ batch: 20, seqLen: 10, lo: 5, hi: 7, bos: 0, seed: 1 }).flatMap((r) => r.slice(1)));
    if (q([...ids].sort()) !== q([5, 6])) throw new Mismatch('the ids {5, 6} for lo = 5, hi = 7', q([...ids].sort()), 'the range is [lo, hi): lo included, hi excluded');
  });
};

// -----------------------------------------------------------------------------------------------
// 2.2 one stripe's mean, per head

/**
 * A (B = 2, nh = 3, T = 6) pattern and the stripe t ∈ [2, 6), key t − 2: the cells (2,0), (3,1),
 * (4,2), (5,3) of each batch row. Stripe cells per head (batch row 0 | 1):
 *   head 0: 0.25 0.25 0.25 0.25 | 0.25 0.25 0.25 0.25   mean 0.25
 *   head 1: 1 0 1 0             | 0 1 0 1               mean 8 × ... = 4/8 = 0.5
 *   head 2: 0.8 0.8 0.8 0.8     | 0 0 0 0               mean 3.2/8 = 0.4
 * Every other cell on or below the diagonal holds 0.9, so reading any other cell shows.
 */
function handPattern(): { att: Float32Array; B: number; nh: number; T: number; want: number[] } {
  const B = 2, nh = 3, T = 6, att = new Float32Array(B * nh * T * T);
  const stripe: number[][][] = [
    [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]],
    [[1, 0, 1, 0], [0, 1, 0, 1]],
    [[0.8, 0.8, 0.8, 0.8], [0, 0, 0, 0]],
  ];
  for (let b = 0; b < B; b++) for (let h = 0; h < nh; h++) for (let r = 0; r < T; r++) for (let k = 0; k <= r; k++) {
    att[((b * nh + h) * T + r) * T + k] = r >= 2 && k === r - 2 ? stripe[h][b][r - 2] : 0.9;
  }
  return { att, B, nh, T, want: [0.25, 0.5, 0.4] };
}

const task22: TaskChecks = async (t, c) => {
  await t.test('the mean over the batch and the stripe\'s query rows, for each head (worked out by hand)', () => {
    const p = handPattern();
    const got = stripeScore(p.att, p.B, p.nh, p.T, 2, 6, 2);
    if (got.length === p.nh && got.every((g, h) => near(g, p.want[h] * 4 / p.T, 1e-6)) && p.want.some((w) => !near(w, w * 4 / p.T, 1e-6))) {
      throw new Mismatch(`scores ${q(p.want)}`, q(got.map(fmt)), 'you divided by T: the mean is over the stripe\'s own query rows (to − from of them) and the batch rows');
    }
    expectArrayNear('scores[head]', got, p.want, 1e-6, 'score[h] = mean of att[b, h, t, t − offset] over b and over t in [from, to); att is laid out (B, nh, T, T)');
  });
  await t.test('a single row batch and the previous-token stripe', () => {
    // B = 1, nh = 1, T = 4, stripe t ∈ [1, 4), key t − 1: cells (1,0) = 0.6, (2,1) = 0.3, (3,2) = 0.9 → mean 0.6
    const att = new Float32Array(16).fill(0.05);
    att[1 * 4 + 0] = 0.6; att[2 * 4 + 1] = 0.3; att[3 * 4 + 2] = 0.9;
    expectArrayNear('score', stripeScore(att, 1, 1, 4, 1, 4, 1), [0.6], 1e-6, 'the previous-token stripe reads att[t][t − 1] for t = 1 … T − 1');
  });
  const x = c.ref.extra?.induction;
  if (x) {
    await t.test("the key's model: induction and previous-token scores of every head", () => {
      const model = c.model(), L = model.config.n_layer, nh = model.config.n_head, B = x.tokens.length, T = x.tokens[0].length;
      const cache = run_with_cache(model, x.tokens, { names: (n) => n.endsWith('attn.hook_pattern'), logits_at: [T - 1] }).cache;
      for (const kind of ['induction', 'previous_token'] as const) {
        const s = x.stripes[kind];
        const got = Array.from({ length: L }, (_, l) => stripeScore(cache.get('pattern', l).data, B, nh, T, s.from, s.to, s.offset));
        expectGridNear(`${kind} score[layer][head]`, got, s.scores, 1e-4, 'the same mean as above, on the key model\'s attention patterns');
      }
    });
  }
};

// -----------------------------------------------------------------------------------------------
// 2.3 which stripe

const task23: TaskChecks = async (t) => {
  await t.test('each kind\'s query rows and key offset, for n = 3, 5 and 50', () => {
    for (const n of [3, 5, 50]) {
      const T = 2 * n + 1;
      const want: Record<ScoreKind, { from: number; to: number; offset: number }> = {
        previous_token: { from: 1, to: T, offset: 1 }, // every t ≥ 1 looks at t − 1
        induction: { from: n + 1, to: T, offset: n - 1 }, // the second copy looks at t − n + 1
        duplicate_token: { from: n + 1, to: T, offset: n }, // the second copy looks at t − n
      };
      for (const kind of ['previous_token', 'induction', 'duplicate_token'] as const) {
        const s = stripeOf(kind, n), w = want[kind];
        if (s.from === w.from && s.to === w.to && s.offset === w.offset) continue;
        const hint = kind === 'induction' && s.offset === n
          ? 'that is the duplicate-token diagonal (the earlier copy of the same token, t − n); an induction head looks one further, at the token that came next last time: t − n + 1'
          : kind === 'induction' && s.offset === n - 2 ? 'one too far: the token after the earlier copy of position t\'s token sits at t − n + 1'
            : 'positions: 0 is BOS, 1 … n the first copy, n + 1 … 2n the second; see the header of scores.ts';
        throw new Mismatch(`stripeOf('${kind}', ${n}) = ${q(w)}`, q(s), hint);
      }
    }
  });
};

// -----------------------------------------------------------------------------------------------
// 2.4 detection

/**
 * Six scores, 2 layers × 3 heads: 0.1 0.9 0.2 / 0.15 0.05 0.6. Sum 2.0, mean 1/3. Squared
 * deviations 0.054444, 0.321111, 0.017778, 0.033611, 0.080278, 0.071111: sum 0.578333, over 6
 * (population) 0.0963889, std 0.310466.
 *   k = 1:   threshold 0.643799: only 0.1 (0.9) is above
 *   k = 0.5: threshold 0.488566: 0.1 (0.9), then 1.2 (0.6)
 *   k = 0, floor 0.95: threshold 0.95: nothing
 */
const SCORES = [[0.1, 0.9, 0.2], [0.15, 0.05, 0.6]];
const MEAN = 1 / 3, STD = 0.310466;

const task24: TaskChecks = async (t, c) => {
  await t.test('mean, population std, threshold and flagged heads (worked out by hand)', () => {
    const cases = [
      { k: 1, floor: 0, threshold: MEAN + STD, heads: ['0.1'] },
      { k: 0.5, floor: 0, threshold: MEAN + 0.5 * STD, heads: ['0.1', '1.2'] },
      { k: 0, floor: 0.95, threshold: 0.95, heads: [] },
    ];
    for (const w of cases) {
      const d = detectHeads(SCORES, w.k, w.floor);
      expectNear('mean', d.mean, MEAN, 1e-5, 'the mean of every head\'s score, all layers together');
      expectNear('std', d.std, STD, 1e-5, near(d.std, Math.sqrt(0.578333 / 5), 1e-5) ? 'that is the sample std (÷ (N − 1)); use the population std (÷ N)' : 'the population standard deviation of all the scores');
      expectNear(`threshold (k = ${w.k}, floor ${w.floor})`, d.threshold, w.threshold, 1e-5,
        near(d.threshold, Math.max(MEAN, w.floor), 1e-5) ? 'the threshold has no k·std: it is max(mean + k·std, floor)' : 'threshold = max(mean + k·std, floor)');
      if (q(d.heads) !== q(w.heads)) throw new Mismatch(`flagged (k = ${w.k}, floor ${w.floor}) = ${q(w.heads)}`, q(d.heads), 'flag the heads whose score is above the threshold, named "layer.head", highest score first');
    }
  });
  const x = c.ref.extra?.induction;
  if (x) {
    await t.test("the key's model: detection on its induction scores", () => {
      const d = detectHeads(x.stripes.induction.scores, x.detection.k, x.detection.min_score);
      expectNear('threshold', d.threshold, x.detection.threshold, 1e-6, 'threshold = max(mean + k·std, floor)');
      if (q(d.heads) !== q(x.detection.heads)) throw new Mismatch(q(x.detection.heads), q(d.heads), 'flag the heads above the threshold, highest score first');
    });
  }
};

// -----------------------------------------------------------------------------------------------
// 2.5 precision, recall, F1

const task25: TaskChecks = async (t) => {
  await t.test('precision, recall and F1 (worked out by hand)', () => {
    // detected 5.1 5.5 3.3, labelled 5.1 5.5 6.9 7.2: 2 true positives; precision 2/3, recall 2/4,
    // F1 = 2 · (2/3)(1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    const e = evaluateDetection(['5.1', '5.5', '3.3'], ['5.1', '5.5', '6.9', '7.2']);
    const lists = { true_positives: ['5.1', '5.5'], false_positives: ['3.3'], false_negatives: ['6.9', '7.2'] };
    for (const [k, w] of Object.entries(lists)) if (q(e[k as keyof typeof lists]) !== q(w)) throw new Mismatch(`${k} = ${q(w)}`, q(e[k as keyof typeof lists]), 'true positives are flagged and labelled; false positives flagged only; false negatives labelled only');
    const swapped = near(e.precision ?? NaN, 1 / 2, 1e-9) && near(e.recall ?? NaN, 2 / 3, 1e-9);
    const hint = swapped ? 'precision and recall are swapped: precision = TP / flagged, recall = TP / labelled' : 'precision = TP / flagged, recall = TP / labelled, F1 their harmonic mean';
    expectNear('precision', e.precision ?? NaN, 2 / 3, 1e-9, hint);
    expectNear('recall', e.recall ?? NaN, 1 / 2, 1e-9, hint);
    expectNear('F1', e.f1 ?? NaN, 4 / 7, 1e-9, 'F1 = 2PR / (P + R), the harmonic mean');
  });
  await t.test('the empty cases: nothing flagged, nothing labelled, nothing right', () => {
    const none = evaluateDetection([], ['1.1']);
    if (none.precision !== null || none.recall !== 0 || none.f1 !== null) throw new Mismatch('nothing flagged: precision null, recall 0, F1 null', q([none.precision, none.recall, none.f1]), 'precision is 0/0 when nothing is flagged: null, not 0 or NaN');
    const unlabelled = evaluateDetection(['1.1'], []);
    if (unlabelled.precision !== 0 || unlabelled.recall !== null || unlabelled.f1 !== null) throw new Mismatch('nothing labelled: precision 0, recall null, F1 null', q([unlabelled.precision, unlabelled.recall, unlabelled.f1]), 'recall is 0/0 when nothing is labelled: null');
    const wrong = evaluateDetection(['1.1'], ['2.2']);
    if (wrong.precision !== 0 || wrong.recall !== 0 || wrong.f1 !== 0) throw new Mismatch('all wrong: precision 0, recall 0, F1 0', q([wrong.precision, wrong.recall, wrong.f1]), 'F1 is 0 when precision and recall are both 0');
  });
};

export const CHECKS: Record<string, TaskChecks> = { '2.1': task21, '2.2': task22, '2.3': task23, '2.4': task24, '2.5': task25 };
