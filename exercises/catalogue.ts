/**
 * The catalogue of exercises: every task a student writes, where, for how many points, what to
 * read first, what grades it and which wrong implementations (mutants) the grading catches.
 *
 * The solution's source holds each task between a line `// BEGIN TASK <id>…` and a line
 * `// END TASK <id>` (a task may have two regions, e.g. the two steps of the layer norm). The
 * starter (./starter.ts) replaces what is between them by a stub; the grader (./grade.ts) runs the
 * task's checks (./checks/) in a process of its own. exercises/README.md is the guide; its tables
 * are checked against this file by test/exercises.test.ts.
 */

export type ExperimentId = 'activation-patching' | 'induction-heads' | 'ioi' | 'circuits' | 'model';

interface Experiment {
  id: ExperimentId;
  title: string;
  /** the assignment's README, which links back to its tasks */
  readme: string;
  /** graded and stubbed only when asked for (`--tracks`): the track that rebuilds the model */
  optional?: boolean;
}

export interface Task {
  id: string;
  title: string;
  experiment: ExperimentId;
  /** the file that holds the region(s), and the function or place inside it */
  file: string;
  where: string;
  points: number;
  /** what to read before writing it: the lines of minGPT or of the seed it mirrors, and our docs */
  read: string;
  /** what the checks compare, and against which reference */
  graded: string;
  /** the realistic mistakes the checks catch, by mutant id (./mutants.ts holds their code) */
  mutants: Record<string, string>;
  /**
   * How the starter stubs the region: `throw` (default) throws "TASK <id> not done: …";
   * `unset` assigns `target` a Float32Array that throws that message when read, for a region on
   * every forward pass whose value only some callers need.
   */
  stub?: { kind: 'unset'; target: string };
  /** shipped solved in the starter, as an example; earns its points there too */
  worked?: boolean;
}

export const EXPERIMENTS: readonly Experiment[] = [
  { id: 'activation-patching', title: 'Activation patching', readme: 'assignments/activation-patching/README.md' },
  { id: 'induction-heads', title: 'Induction heads', readme: 'assignments/induction-heads/README.md' },
  { id: 'ioi', title: 'Indirect object identification (IOI)', readme: 'assignments/ioi/README.md' },
  { id: 'circuits', title: 'Weight circuits', readme: 'assignments/circuits/README.md' },
  { id: 'model', title: 'Optional: rebuild the model', readme: 'exercises/README.md', optional: true },
];

const SEED = 'the assignment (activation-patching-assignment.txt)';

export const TASKS: readonly Task[] = [
  // --- activation patching ------------------------------------------------------------------
  {
    id: '1.1', title: "The answer's token id", experiment: 'activation-patching',
    file: 'assignments/activation-patching/experiment.ts', where: 'targetTokenId', points: 10,
    read: `${SEED}, "Tokenization" and the paragraph on bpe(' Jones'); mingpt/bpe.ts (BPETokenizer.encode), minGPT's bpe.py`,
    graded: "the ids of each case's two answers and texts against reference.json's (minGPT's tokenizer); an answer of several tokens refused",
    mutants: { 'ap-answer-no-space': 'the answer tokenised without its leading space' },
  },
  {
    id: '1.2', title: "Save every block's output at every position", experiment: 'activation-patching',
    file: 'mingpt/model.ts', where: 'GPT.flagHooks, the save flag', points: 20,
    read: `${SEED}, "Implementation Details" (the deep copy, .detach().clone()); minGPT's GPT.forward (the loop over self.transformer.h); mingpt/hooks.ts`,
    graded: "model.activations[l][t] after forward(clean, { save: true }) against the reference's blocks.l.hook_resid_post; the saved vectors own their memory and survive the next run",
    mutants: { 'ap-save-reference': 'activations saved by reference (a view of the model\'s array), not copied' },
  },
  {
    id: '1.3', title: 'Patch one block output at one position', experiment: 'activation-patching',
    file: 'mingpt/model.ts', where: 'GPT.flagHooks, the patch flag', points: 20,
    read: `${SEED}, "A More Informal Explanation" (replace one embedding after one layer); minGPT's GPT.forward`,
    graded: 'the corrupted run with every (layer, position) patched from the clean run, logit(corrupt) − logit(clean) at the last position, against analysis.json patching.resid_post',
    mutants: {
      'ap-patch-next-position': 'patching position p + 1',
      'ap-patch-next-layer': 'patching after block l + 1',
      'ap-patch-block-input': "patching the block's input instead of its output",
    },
  },
  {
    id: '1.4', title: "Keep the last position's logits", experiment: 'activation-patching',
    file: 'mingpt/model.ts', where: 'GPT.forward, after the logits', points: 10,
    read: `${SEED}: "modify the forward function to store the logits of the last token"; minGPT's GPT.forward (logits = self.lm_head(x))`,
    graded: "model.lastLogits after forward(clean) against reference.json's clean_last_logits_first8, _sum and clean_logit_diff; kept, not overwritten by the next run",
    mutants: { 'ap-last-logits-first-position': "the first position's logits kept instead of the last" },
    stub: { kind: 'unset', target: 'this.lastLogits' },
  },
  {
    id: '1.5', title: 'The layer × position loop and its logit-difference matrix', experiment: 'activation-patching',
    file: 'sweep/sweep.ts', where: 'referencePatchingSweep', points: 20,
    read: `${SEED}: "Include a nested loop that iterates over all layers and all positions"; the header of sweep/sweep.ts`,
    graded: "the matrix, the clean and corrupted differences and the runs made, on a stand-in model whose every answer is known by construction (so it needs none of 1.2–1.4)",
    mutants: {
      'ap-loop-sign-reversed': 'the logit difference with its sign reversed (clean − corrupt)',
      'ap-loop-transposed': 'the matrix indexed [position][layer]',
    },
  },
  {
    id: '1.6', title: "The heatmap's grid from the matrix", experiment: 'activation-patching',
    file: 'assignments/activation-patching/charts.ts', where: 'gridOf, the layer × position grid', points: 20,
    read: `${SEED}: "use matshow to visualize the difference matrix"; the vega-lite spec around the region (x = position, y = layer, colour = value)`,
    graded: "patchingHeatmapSpec on a small hand-written matrix: every (layer, position) appears once, on the right row and column, with its value",
    mutants: {
      'ap-heatmap-transposed': 'the heatmap transposed (positions as rows, layers as columns)',
      'ap-heatmap-shifted-label': "each column labelled with the next position's index",
    },
  },
  // --- induction heads ----------------------------------------------------------------------
  {
    id: '2.1', title: 'The repeated random sequences', experiment: 'induction-heads',
    file: 'assignments/induction-heads/scores.ts', where: 'repeatedTokens', points: 15,
    read: 'assignments/induction-heads/README.md, "1. The data"; the induction-heads blog post (a sequence of random tokens, repeated); mingpt/utils.ts (RNG)',
    graded: 'shape, BOS first, second copy equal to the first, ids in [lo, hi) with both ends reached, seeded (same seed, same rows)',
    mutants: { 'ih-second-copy-redrawn': 'the second copy drawn afresh instead of repeating the first' },
  },
  {
    id: '2.2', title: "One stripe's mean attention, per head", experiment: 'induction-heads',
    file: 'assignments/induction-heads/scores.ts', where: 'stripeScore', points: 25,
    read: 'assignments/induction-heads/README.md, "3. The scores"; the header of scores.ts (positions of the two copies); the (B, nh, T, T) layout of blocks.l.attn.hook_pattern',
    graded: 'scores on hand-written attention patterns whose stripe means are worked out by hand; with a key, scores of the key\'s model',
    mutants: { 'ih-score-divides-by-T': 'the stripe summed and divided by T instead of by the number of its query rows' },
  },
  {
    id: '2.3', title: 'The stripe (diagonal) each score reads', experiment: 'induction-heads',
    file: 'assignments/induction-heads/scores.ts', where: 'stripeOf', points: 20,
    read: 'the header of scores.ts and README.md, "3. The scores": previous-token t → t − 1, induction t → t − n + 1, duplicate-token t → t − n',
    graded: 'the query rows and key offset of each kind, for several n, against the definitions',
    mutants: { 'ih-induction-wrong-diagonal': 'the induction score on the duplicate-token diagonal (t − n instead of t − n + 1)' },
  },
  {
    id: '2.4', title: 'Detection with the dynamic threshold', experiment: 'induction-heads',
    file: 'assignments/induction-heads/scores.ts', where: 'detectHeads', points: 20,
    read: 'the induction/QK project\'s "Dynamic Threshold Detection" (induction-qk-project.txt); README.md, "4. Detection"',
    graded: 'mean, population std, threshold max(mean + k·std, floor) and the flagged heads (highest first) on scores worked out by hand; with a key, the key\'s detection',
    mutants: { 'ih-threshold-without-std': 'the threshold without k·std (the mean alone)' },
  },
  {
    id: '2.5', title: 'Precision, recall and F1', experiment: 'induction-heads',
    file: 'assignments/induction-heads/scores.ts', where: 'evaluateDetection', points: 20,
    read: 'the induction/QK project\'s "Evaluation Metrics"; README.md, "4. Detection"',
    graded: 'true/false positives, false negatives, precision, recall and F1 on lists worked out by hand, with the empty cases (null)',
    mutants: { 'ih-precision-recall-swapped': 'precision and recall swapped' },
  },
  // --- IOI -------------------------------------------------------------------------------------
  {
    id: '3.1', title: 'The logit-difference metric over a group', experiment: 'ioi',
    file: 'lens/patching.ts', where: 'logitDiffMetric', points: 15,
    read: 'the IOI thread (ioi-circuit-thread.txt); test/fixtures/ANALYSIS.md, "The metric" and "The IOI experiment\'s numbers on a group"',
    graded: 'hand-written logits; the metric of the reference case and the mean over the IOI group against analysis.json (metric.clean, group.F_model)',
    mutants: {
      'ioi-metric-sign-reversed': 'the logit difference with its sign reversed',
      'ioi-metric-first-prompt': 'the first prompt only instead of the mean over the group',
    },
  },
  {
    id: '3.2', title: "Patch one head's output at every position", experiment: 'ioi',
    file: 'lens/patching.ts', where: 'layer_head_vector_patch_setter', points: 15,
    read: 'the header of lens/patching.ts; TransformerLens\'s layer_head_vector_patch_setter; the (B, T, nh, hs) layout of blocks.l.attn.hook_z',
    graded: 'a hand-made activation; every head patched, case and group, against analysis.json patching.head_z and group.patching.head_z',
    mutants: { 'ioi-head-patch-wrong-axis': 'the head index used on the position axis' },
  },
  {
    id: '3.3', title: "Path patching's pass C", experiment: 'ioi',
    file: 'lens/path_patching.ts', where: 'passC', points: 30,
    read: 'Wang et al. 2022, Appendix B; the header of lens/path_patching.ts; test/fixtures/ANALYSIS.md, "Path patching"',
    graded: 'to the logits and to the last layer\'s queries on the case pair, and to the name movers\' queries on the group, against analysis.json path_patching and group.path_patching',
    mutants: { 'ioi-path-no-freeze': 'path patching that does not freeze the other heads' },
  },
  {
    id: '3.4', title: 'Knock out (mean-ablate) the heads not kept', experiment: 'ioi',
    file: 'lens/knockout.ts', where: 'Knockout.runGroup, the hook on hook_z', points: 20,
    read: 'Wang et al. 2022, section 4 (knockouts, mean ablation over the ABC prompts); the header of lens/knockout.ts; ANALYSIS.md, "Knockouts"',
    graded: 'F of the circuit, of no head, and of each completeness and minimality set, against analysis.json knockout',
    mutants: { 'ioi-knockout-zero': 'zero ablation instead of the mean over the corrupt prompts' },
  },
  {
    id: '3.5', title: 'Faithfulness, completeness and minimality', experiment: 'ioi',
    file: 'lens/knockout.ts', where: 'evaluateCircuit', points: 20,
    read: 'Wang et al. 2022, section 4 (the three criteria); ANALYSIS.md, "Knockouts"',
    graded: "the three criteria on a stand-in Knockout that returns the reference's F values (and on F values worked out by hand), so it needs none of 3.4",
    mutants: {
      'ioi-faithfulness-no-abs': 'faithfulness and completeness without the absolute value',
      'ioi-minimality-vs-model': 'minimality measured against the whole model instead of the circuit',
    },
  },
  // --- weight circuits ------------------------------------------------------------------------
  {
    id: '4.1', title: "A head's OV circuit", experiment: 'circuits',
    file: 'lens/circuits.ts', where: 'ovCircuit', points: 25,
    read: 'the mathematical-framework notes (math-framework-notes.txt), "OV circuit"; the header of lens/circuits.ts; lens/factored_matrix.ts',
    graded: 'shape (C, C), the product against W_V W_O from the processed weights, and the copying scores it implies against analysis.json circuits.copying_score',
    mutants: { 'circ-ov-wrong-order': 'the OV circuit multiplied in the wrong order (W_O W_V)' },
  },
  {
    id: '4.2', title: "A head's QK circuit", experiment: 'circuits',
    file: 'lens/circuits.ts', where: 'qkCircuit', points: 25,
    read: 'the mathematical-framework notes, "QK circuit"; the header of lens/circuits.ts',
    graded: 'shape (C, C), the product against W_Q W_Kᵀ, and W_pos W_QK W_posᵀ against analysis.json circuits.positional_qk',
    mutants: { 'circ-qk-transposed': 'the QK circuit transposed (W_K W_Qᵀ)' },
  },
  {
    id: '4.3', title: 'The copying score from the eigenvalues', experiment: 'circuits',
    file: 'lens/circuits.ts', where: 'copyingScoreOf', points: 25,
    read: 'the mathematical-framework notes (copying, positive eigenvalues); ANALYSIS.md, "Weight circuits"',
    graded: 'eigenvalue sets worked out by hand (real, complex, zero), and every head\'s score against analysis.json circuits.copying_score',
    mutants: { 'circ-copying-no-abs': 'the score divided by Σ Re λ instead of Σ |λ|' },
  },
  {
    id: '4.4', title: 'The composition score', experiment: 'circuits',
    file: 'lens/circuits.ts', where: 'compositionOf', points: 25,
    read: 'the mathematical-framework notes (Q-, K- and V-composition); ANALYSIS.md, "Weight circuits"',
    graded: 'every pair of heads in every mode against analysis.json circuits.composition (the circuits are built by the grader, so it needs none of 4.1–4.2)',
    mutants: { 'circ-k-composition-no-transpose': 'K-composition without the transpose of W_QK' },
  },
  // --- optional: the model itself -------------------------------------------------------------
  {
    id: 'M.1', title: 'Layer norm', experiment: 'model',
    file: 'mingpt/kernels/js.ts', where: 'layernormScale and layernormApply', points: 30,
    read: "torch.nn.LayerNorm's definition; minGPT's Block (ln_1, ln_2, ln_f); llm.c's layernorm_forward; mingpt/model.ts, LayerNorm",
    graded: 'a row worked out by hand; block 0\'s ln_1 scale and output against analysis.json hooks; a given scale is used as given',
    mutants: { 'model-ln-unbiased-variance': 'the variance divided by C − 1 instead of C' },
  },
  {
    id: 'M.2', title: 'Causal self-attention', experiment: 'model',
    file: 'mingpt/kernels/js.ts', where: 'attentionScoresForward and attentionForward', points: 45,
    read: "minGPT's CausalSelfAttention.forward (the mask, softmax(dim=-1), att @ v); llm.c's attention_forward; mingpt/model.ts, CausalSelfAttention",
    graded: 'uniform attention worked out by hand (values = one-hot rows, so z shows the pattern); block 0\'s scores and z against analysis.json hooks; fewer queries than keys',
    mutants: {
      'model-mask-off-by-one': 'the causal mask off by one (each query also sees the next key)',
      'model-softmax-wrong-axis': 'the softmax over the queries instead of the keys',
    },
  },
  {
    id: 'M.3', title: 'The GELU MLP', experiment: 'model',
    file: 'mingpt/kernels/js.ts and mingpt/model.ts', where: 'geluForward and Block.mlpf', points: 25,
    read: "minGPT's NewGELU and Block.mlpf; the GELU paper's tanh approximation",
    graded: 'GELU at values worked out by hand; block 0\'s mlp.hook_post and hook_mlp_out against analysis.json hooks',
    mutants: { 'model-gelu-square': 'GELU with x² where the tanh approximation has x³' },
  },
];

export function taskById(id: string): Task {
  const t = TASKS.find((x) => x.id === id);
  if (!t) throw new Error(`no task "${id}"; the tasks are ${TASKS.map((x) => x.id).join(', ')}`);
  return t;
}

export function experimentById(id: string): Experiment {
  const e = EXPERIMENTS.find((x) => x.id === id);
  if (!e) throw new Error(`no experiment "${id}"; they are ${EXPERIMENTS.map((x) => x.id).join(', ')}`);
  return e;
}

/**
 * The experiments a `--tracks` value names: the required ones by default, `all` for every one,
 * or a comma-separated list of ids (e.g. `model` or `ioi,circuits`).
 */
export function tracksFrom(value: string | undefined): ExperimentId[] {
  if (value === undefined || value === '' || value === 'required') return EXPERIMENTS.filter((e) => !e.optional).map((e) => e.id);
  if (value === 'all') return EXPERIMENTS.map((e) => e.id);
  return value.split(',').map((s) => experimentById(s.trim()).id);
}
