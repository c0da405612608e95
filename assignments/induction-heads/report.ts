/**
 * The induction experiment's terminal report: steps 2-6 as numbers, then a few sentences computed
 * from them that say what they mean (the reading aid). Nothing here runs the model; everything
 * reads the Report that induction.ts assembles.
 */
import { num, randomWeightsWarning } from '../../cli/terminal.ts';
import { SCORE_KINDS, type ScoreKind } from './scores.ts';
import { headName } from '../../lens/heads.ts';
import type { Options, Report } from './induction.ts';

const fmt = (v: number | null, d = 3) => (v === null ? '—' : num(v, d));
const signed = (v: number, d = 4) => num(v, d, true);
const KIND_WORDS: Record<ScoreKind, string> = { induction: 'induction', previous_token: 'previous-token', duplicate_token: 'duplicate-token' };
const article = (kind: ScoreKind) => (kind === 'induction' ? 'an' : 'a');

/** Steps 2-6 on the terminal: the numbers a reader looks at first (induction.json has them all). */
export function printResults(report: Report, o: Pick<Options, 'k' | 'minScore'>, range: { lo: number; hi: number }, print: (line?: string) => void): void {
  print(`\n2. log P(correct next token), mean over the batch (clean run: ${report.timing_s.clean_run.toFixed(1)} s)`);
  print(`   first half  (first copy):                 ${fmt(report.first_half_logprob)}   top-1 accuracy ${fmt(report.first_half_accuracy)}`);
  print(`   seam        (second copy's first token):  ${fmt(report.seam_logprob)}`);
  print(`   second half (rest of the second copy):    ${fmt(report.second_half_logprob)}   top-1 accuracy ${fmt(report.second_half_accuracy)}`);
  print(`   (uniform guessing over the token range: ${fmt(-Math.log(range.hi - range.lo))}, accuracy ${fmt(1 / (range.hi - range.lo), 4)})`);

  print('\n3-4. head scores and detection (threshold = max(mean + k·std over all heads, floor), k = ' + o.k + ', floor = ' + o.minScore + ')');
  for (const kind of SCORE_KINDS) {
    const flat = report.scores[kind].flatMap((row, l) => row.map((v, h) => ({ name: headName({ layer: l, head: h }), v }))).sort((a, b) => b.v - a.v);
    const d = report.detection[kind];
    print(`   ${KIND_WORDS[kind]}: top ${flat.slice(0, 5).map((x) => `${x.name} ${num(x.v)}`).join(', ')}`);
    print(`      threshold ${num(d.threshold)} (mean ${num(d.mean)}, std ${num(d.std)}): detected ${report.detected[kind].join(', ') || 'none'}`);
    const e = report.evaluation?.[kind];
    if (e && e.labelled.length) {
      print(`      vs labelled ${e.labelled.join(', ')}: precision ${fmt(e.precision)}, recall ${fmt(e.recall)}, F1 ${fmt(e.f1)}`);
    }
  }
  if (report.labels) print(`   labels: ${report.labels.source}`);
  else print('   labels: none for this model (use --labels gpt2-small for a GPT-2 small checkpoint)');

  print(`\n5. MLP ablation at the second-half positions: change in second-half log-prob (${report.timing_s.mlp_ablation.toFixed(1)} s)`);
  print('   layer      zero      mean');
  for (let l = 0; l < report.config.n_layer; l++) print(`   ${String(l).padStart(5)}  ${signed(report.mlp_ablation.zero.change[l]).padStart(8)}  ${signed(report.mlp_ablation.mean.change[l]).padStart(8)}`);

  const a = report.head_ablation;
  if (a) {
    print(`\n5b. --ablate ${a.heads.join(',')} (${a.ablation}-ablated at every position${a.heads.length > 1 ? ', together' : ''}; ${report.timing_s.head_ablation.toFixed(1)} s)`);
    print(`   second-half log-prob ${fmt(a.second_half_logprob)} (${signed(a.change)} vs the full model), top-1 accuracy ${fmt(a.second_half_accuracy)} (full model ${fmt(report.second_half_accuracy)})`);
  }

  const c = report.two_head_circuit;
  if (c) {
    print(`\n6. two-head circuit: previous-token head ${c.heads[0]} + induction head ${c.heads[1]}, every other head and every MLP ${c.ablation}-ablated (${report.timing_s.two_head_circuit.toFixed(1)} s)`);
    print(`   second-half top-1 accuracy ${fmt(c.accuracy)} (${c.other_ablation.ablation}-ablation: ${fmt(c.other_ablation.accuracy)}; full model ${fmt(c.full_model_accuracy)})`);
    print(`   why ${c.ablation}: ${c.ablation_note}`);
  } else {
    print('\n6. two-head circuit: skipped (a one-layer model has no room for a previous-token head below an induction head)');
  }
}

/**
 * A few sentences computed from the report: whether the second copy is predicted better than the
 * first (the behaviour induction heads produce), which heads the scores single out, whether the
 * MLPs matter, and how much the two-head circuit keeps.
 */
export function readingAid(report: Report, range: { lo: number; hi: number }, randomWeights: boolean): string[] {
  const out: string[] = [];
  if (randomWeights) out.push(randomWeightsWarning());
  const first = report.first_half_logprob, second = report.second_half_logprob;
  const gain = second - first;
  const uniform = -Math.log(range.hi - range.lo);
  const acc = `top-1 accuracy ${num(report.second_half_accuracy, 2)} against ${num(report.first_half_accuracy, 2)}`;
  if (gain > 1) {
    out.push(`The second copy is predicted far better than the first (log-prob ${num(second, 2)} against ${num(first, 2)}, ${acc}): the model looks back at the first copy and predicts the token that followed, which is what induction heads do.`);
  } else if (gain > 0.5) {
    out.push(`The second copy is predicted a little better than the first (by ${num(gain, 2)} nats, ${acc}): a weak use of the repetition; GPT-2 small gains several nats here.`);
  } else {
    out.push(`The second copy is predicted hardly better than the first (${num(second, 2)} against ${num(first, 2)}): this model does not use the repetition, so the head scores below have no behaviour behind them.`);
  }
  if (first < uniform - 1) {
    out.push(`Both halves are below uniform guessing over the token range (${num(uniform, 2)}): the model is confidently wrong about what follows a random token.`);
  }
  for (const kind of SCORE_KINDS) {
    const found = report.detected[kind];
    const d = report.detection[kind];
    const best = report.scores[kind].flatMap((row, l) => row.map((v, h) => ({ name: headName({ layer: l, head: h }), v }))).sort((a, b) => b.v - a.v)[0];
    out.push(found.length
      ? `${found.length === 1 ? `One head stands out as ${article(kind)}` : `${found.length} heads stand out as`} ${KIND_WORDS[kind]} head${found.length === 1 ? '' : 's'}: ${found.join(', ')} (threshold ${num(d.threshold, 2)}).`
      : `No head stands out as ${article(kind)} ${KIND_WORDS[kind]} head: the best, ${best.name}, scores ${num(best.v, 2)}, below the threshold ${num(d.threshold, 2)}.`);
  }
  const e = report.evaluation?.induction;
  if (e && e.labelled.length) out.push(`Against the labelled induction heads (${e.labelled.join(', ')}), detection has recall ${fmt(e.recall, 2)} and precision ${fmt(e.precision, 2)}.`);
  const changes = report.mlp_ablation.mean.change;
  let worst = 0;
  changes.forEach((c, l) => { if (c < changes[worst]) worst = l; });
  out.push(changes.length && changes[worst] < -0.1
    ? `Replacing MLP ${worst}'s output by its mean costs the second half most: ${num(changes[worst], 2)} nats of log-prob.`
    : `No MLP, replaced by its mean, costs the second half more than 0.1 nats${gain > 1 ? ': the attention does the copying' : ''}.`);
  const c = report.two_head_circuit;
  if (c) {
    const kept = report.second_half_accuracy > 0 ? c.accuracy / report.second_half_accuracy : 0;
    out.push(report.second_half_accuracy < 0.05
      ? `The full model gets ${num(report.second_half_accuracy, 2)} of the second half right, so there is nothing for the two-head circuit (${c.heads.join(' + ')}) to keep.`
      : `With only ${c.heads[0]} and ${c.heads[1]} the second half is ${num(c.accuracy, 2)} right (full model ${num(report.second_half_accuracy, 2)}): the two heads keep ${Math.round(100 * kept)}% of the accuracy.`);
  }
  return out;
}
