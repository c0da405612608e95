/**
 * Realistic wrong implementations of each task ("mutants"), as edits of the solution's regions.
 * ./verify.ts grades a copy of the repository with each mutant applied and requires that the task
 * earns nothing and that the grader's hint names the mistake (`hint`). The catalogue describes each
 * one in words; this file holds their code, so a starter leaves it out (copy.ts, TEACHER_FILES).
 *
 * An edit replaces text that must occur exactly once in the task's regions; `body` replaces the
 * whole body of the task's n-th region. A mutant that no longer applies (the region's code changed)
 * is reported by name, so that it can be brought up to date.
 */
import type { Region } from './regions.ts';

interface Mutant {
  id: string;
  task: string;
  edits?: [string, string][];
  body?: { region: number; text: string };
  /** what the grader's hint must say */
  hint: RegExp;
}

export const MUTANTS: readonly Mutant[] = [
  // --- activation patching
  { id: 'ap-answer-no-space', task: '1.1', edits: [['const ids = bpe.encode(word);', 'const ids = bpe.encode(word.trim());']], hint: /leading space/ },
  { id: 'ap-save-reference', task: '1.2', edits: [['act.data.slice(t * C, (t + 1) * C)', 'act.data.subarray(t * C, (t + 1) * C)']], hint: /by reference/ },
  { id: 'ap-patch-next-position', task: '1.3', edits: [['act.data.set(value, (b * T + position) * C)', 'act.data.set(value, (b * T + position + 1) * C)']], hint: /next position/ },
  { id: 'ap-patch-next-layer', task: '1.3', edits: [['this.transformer.h[layer].names.resid_post', 'this.transformer.h[layer + 1].names.resid_post']], hint: /next block/ },
  { id: 'ap-patch-block-input', task: '1.3', edits: [['this.transformer.h[layer].names.resid_post', 'this.transformer.h[layer].names.resid_pre']], hint: /input/ },
  { id: 'ap-last-logits-first-position', task: '1.4', edits: [['logits.slice((P - 1) * V, P * V)', 'logits.slice(0, V)']], hint: /first position/ },
  {
    id: 'ap-loop-sign-reversed', task: '1.5',
    edits: [['logits[corrupt_token_id] - logits[clean_token_id]', 'logits[clean_token_id] - logits[corrupt_token_id]']], hint: /sign is reversed/,
  },
  {
    id: 'ap-loop-transposed', task: '1.5',
    edits: [['const matrix: number[][] = [];', 'const matrix: number[][] = Array.from({ length: T }, () => []);'], ['    matrix.push([]);\n', ''], ['matrix[layer].push(', 'matrix[position].push(']],
    hint: /transposed/,
  },
  {
    id: 'ap-heatmap-transposed', task: '1.6',
    edits: [['return { rows, cols, matrix: m,', 'return { rows: cols, cols: rows, matrix: m[0].map((_, position) => m.map((row) => row[position])),']], hint: /transposed/,
  },
  { id: 'ap-heatmap-shifted-label', task: '1.6', edits: [['positionLabel(position, token)', 'positionLabel(position + 1, token)']], hint: /next position's label/ },
  // --- induction heads
  { id: 'ih-second-copy-redrawn', task: '2.1', edits: [['rows.push([o.bos, ...x, ...x]);', 'rows.push([o.bos, ...x, ...x.map(() => rng.randint(o.lo, o.hi))]);']], hint: /repeat/ },
  {
    id: 'ih-score-divides-by-T', task: '2.2',
    body: {
      region: 0, text: `  const out: number[] = [];
  for (let h = 0; h < nh; h++) {
    let sum = 0;
    for (let b = 0; b < B; b++) for (let t = from; t < to; t++) sum += att[((b * nh + h) * T + t) * T + t - offset];
    out.push(sum / (B * T));
  }
  return out;`,
    },
    hint: /divided by T/,
  },
  { id: 'ih-induction-wrong-diagonal', task: '2.3', edits: [["offset: kind === 'induction' ? n - 1 : n", 'offset: n']], hint: /duplicate-token diagonal/ },
  { id: 'ih-threshold-without-std', task: '2.4', edits: [['Math.max(mean + k * std, minScore)', 'Math.max(mean, minScore)']], hint: /k·std/ },
  {
    id: 'ih-precision-recall-swapped', task: '2.5',
    edits: [['const precision = detected.length ? tp.length / detected.length : null;', 'const precision = labelled.length ? tp.length / labelled.length : null;'],
      ['const recall = labelled.length ? tp.length / labelled.length : null;', 'const recall = detected.length ? tp.length / detected.length : null;']],
    hint: /swapped/,
  },
  // --- IOI
  { id: 'ioi-metric-sign-reversed', task: '3.1', edits: [['sum += logits.data[o + t] - logits.data[o + u];', 'sum += logits.data[o + u] - logits.data[o + t];']], hint: /sign is reversed/ },
  { id: 'ioi-metric-first-prompt', task: '3.1', edits: [['for (let b = 0; b < B; b++) {', 'for (let b = 0; b < 1; b++) {'], ['return sum / B;', 'return sum;']], hint: /first prompt/ },
  { id: 'ioi-head-patch-wrong-axis', task: '3.2', edits: [['act.pick(null, null, head), clean.pick(null, null, head)', 'act.pick(null, head), clean.pick(null, head)']], hint: /position axis/ },
  {
    id: 'ioi-path-no-freeze', task: '3.3',
    body: {
      region: 0, text: `  // only the sender's z is taken from the new run; every other head is left to recompute
  const { n_layer: L, n_embd: C, n_head: nh } = model.config;
  const hs = C / nh, { B, T, cache } = run, n1 = B * P.length, ls = senders[0].layer;
  const x = new Float32Array(senders.length * n1 * C);
  const q: (Float32Array | null)[] = receivers.map((r) => (r.layer >= ls ? new Float32Array(senders.length * n1 * hs) : null));
  senders.forEach((sender, k) => {
    const hooks: HookSpec = [[\`blocks.\${ls}.attn.hook_z\`, (act) => {
      for (let n = 0; n < B * T; n++) act.data.set(run.newZ[ls].subarray((n * nh + sender.head) * hs, (n * nh + sender.head + 1) * hs), (n * nh + sender.head) * hs);
    }]];
    receivers.forEach((r, i) => {
      if (r.layer < ls) return;
      hooks.push([\`blocks.\${r.layer}.attn.hook_q\`, (act) => {
        for (let b = 0; b < B; b++) P.forEach((t, j) => q[i]!.set(act.data.subarray(((b * T + t) * nh + r.head) * hs, ((b * T + t) * nh + r.head + 1) * hs), (k * n1 + b * P.length + j) * hs));
      }]);
    });
    const res = model.forward(null, { start_at_layer: ls, residual: cache.get('resid_pre', ls), stop_at_layer: L, hooks });
    x.set(pickPositions(res.residual.data, B, T, C, P), k * n1 * C);
  });
  return { x, q };`,
    },
    hint: /not frozen/,
  },
  {
    id: 'ioi-knockout-zero', task: '3.4',
    edits: [['act.data.set(m.subarray((t * nh + h) * hs, (t * nh + h + 1) * hs), ((b * T + t) * nh + h) * hs);', 'act.data.fill(0, ((b * T + t) * nh + h) * hs, ((b * T + t) * nh + h + 1) * hs);']],
    hint: /zero ablation/,
  },
  {
    id: 'ioi-faithfulness-no-abs', task: '3.5',
    edits: [['faithfulness: Math.abs(F_model - F_circuit)', 'faithfulness: F_model - F_circuit'], ['value: Math.abs(F_C_minus_K - F_M_minus_K)', 'value: F_C_minus_K - F_M_minus_K']],
    hint: /absolute value/,
  },
  { id: 'ioi-minimality-vs-model', task: '3.5', edits: [['value: Math.abs(F_C_minus_v - F_circuit)', 'value: Math.abs(F_C_minus_v - F_model)']], hint: /not with the whole model/ },
  // --- weight circuits
  {
    id: 'circ-ov-wrong-order', task: '4.1',
    edits: [['new FactoredMatrix(dense(hw.W_V, C, hs), dense(hw.W_O, hs, C))', 'new FactoredMatrix(dense(hw.W_O, hs, C), dense(hw.W_V, C, hs))']], hint: /wrong order/,
  },
  {
    id: 'circ-qk-transposed', task: '4.2',
    edits: [['new FactoredMatrix(dense(hw.W_Q, C, hs), transpose(dense(hw.W_K, C, hs)))', 'new FactoredMatrix(dense(hw.W_K, C, hs), transpose(dense(hw.W_Q, C, hs)))']], hint: /transpose/,
  },
  { id: 'circ-copying-no-abs', task: '4.3', edits: [['abs += Math.hypot(ev.re[i], ev.im[i]);', 'abs += ev.re[i];']], hint: /Σ \|λ\|/ },
  { id: 'circ-k-composition-no-transpose', task: '4.4', edits: [["mode === 'k' ? reader.qk.T : reader.ov", "mode === 'k' ? reader.qk : reader.ov"]], hint: /transpose/ },
  // --- the model
  { id: 'model-ln-unbiased-variance', task: 'M.1', edits: [['scale[i] = Math.sqrt(v / C + eps);', 'scale[i] = Math.sqrt(v / (C - 1) + eps);']], hint: /biased variance/ },
  {
    id: 'model-mask-off-by-one', task: 'M.2',
    edits: [['const t = Tk - Tq + i;                          // the query', 'const t = Math.min(Tk - 1, Tk - Tq + i + 1); // the query'],
      ['const t = Tk - Tq + i; // the query', 'const t = Math.min(Tk - 1, Tk - Tq + i + 1); // the query']],
    hint: /causal mask/,
  },
  {
    id: 'model-softmax-wrong-axis', task: 'M.2',
    body: {
      region: 1, text: `  // scores for every (query, key), masked, then each key's column normalised over the queries
  const hs = C / NH, scale = 1 / Math.sqrt(hs), att = new Float64Array(Tq * Tk);
  z.fill(0, 0, B * Tq * C);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < Tq; i++) {
        for (let j = 0; j < Tk; j++) {
          let dot = 0;
          for (let c = 0; c < hs; c++) dot += q[(b * Tq + i) * C + h * hs + c] * k[(b * Tk + j) * C + h * hs + c];
          att[i * Tk + j] = j > Tk - Tq + i ? 0 : Math.exp(dot * scale);
        }
      }
      for (let j = 0; j < Tk; j++) {
        let sum = 0;
        for (let i = 0; i < Tq; i++) sum += att[i * Tk + j];
        if (sum > 0) for (let i = 0; i < Tq; i++) att[i * Tk + j] /= sum;
      }
      for (let i = 0; i < Tq; i++) {
        for (let j = 0; j < Tk; j++) for (let c = 0; c < hs; c++) z[(b * Tq + i) * C + h * hs + c] += att[i * Tk + j] * v[(b * Tk + j) * C + h * hs + c];
      }
    }
  }`,
    },
    hint: /over the queries/,
  },
  { id: 'model-gelu-square', task: 'M.3', edits: [['0.044715 * x * x * x', '0.044715 * x * x']], hint: /x³/ },
];

/**
 * A region rewriter for `writeCopy` that applies mutant `m`, and a check to call after the copy:
 * it throws if some edit did not apply exactly once (the region's code has changed since).
 */
export function mutantRewriter(m: Mutant): { region: (r: Region) => string[] | null; check: () => void } {
  const counts = new Map<string, number>((m.edits ?? []).map(([from]) => [from, 0]));
  let index = 0, bodyDone = false;
  const region = (r: Region): string[] | null => {
    if (r.task !== m.task) return null;
    const i = index++;
    if (m.body && m.body.region === i) {
      bodyDone = true;
      return m.body.text.split('\n');
    }
    let text = r.body.join('\n');
    for (const [from, to] of m.edits ?? []) {
      const n = text.split(from).length - 1;
      counts.set(from, counts.get(from)! + n);
      text = text.split(from).join(to);
    }
    return text.split('\n');
  };
  const check = () => {
    for (const [from, n] of counts) if (n !== 1) throw new Error(`mutant ${m.id} does not apply any more: "${from}" occurs ${n} times in task ${m.task}'s regions (exercises/mutants.ts)`);
    if (m.body && !bodyDone) throw new Error(`mutant ${m.id} does not apply any more: task ${m.task} has no region ${m.body.region + 1}`);
  };
  return { region, check };
}
