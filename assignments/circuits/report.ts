/**
 * The circuits experiment's terminal report: steps 1-7 as numbers, then a few sentences computed
 * from them that say what they mean (the reading aid). Nothing here runs the model; everything
 * reads the Report that experiment.ts returns.
 */
import { num, randomWeightsWarning } from '../../cli/terminal.ts';
import type { Report } from './experiment.ts';
import { headName, parseHead } from '../../lens/heads.ts';

/** Heads the literature reports in GPT-2 small: they should come out as copying heads. */
const GPT2_SMALL_COPYING = { induction: ['5.1', '5.5', '6.9', '7.2', '7.10'], name_movers: ['9.9', '9.6', '10.0'] };

/** The entry of head "l.h" in a [layer][head] table. */
const at = <T>(m: T[][], head: string): T => { const { layer, head: h } = parseHead(head); return m[layer][h]; };
/** Rows q ≥ 1 of a positional QK matrix whose best key among 0 … q is q − 1. */
const previousPeaks = (m: number[][]) => m.slice(1).filter((row, i) => {
  const q = i + 1;
  let best = 0;
  for (let k = 0; k <= q; k++) if (row[k] > row[best]) best = k;
  return best === q - 1;
}).length;
/** Tokens whose OV row is largest on its own column (attending to the token raises that token most). */
const ovDiagonal = (ov: number[][]) => ov.filter((row, i) => { let best = 0; row.forEach((v, j) => { if (v > row[best]) best = j; }); return best === i; }).length;

export function printReport(r: Report, print: (s?: string) => void): void {
  const L = r.config.n_layer, nh = r.config.n_head;
  const flat = r.copying_score.flatMap((row, l) => row.map((v, h) => ({ name: headName({ layer: l, head: h }), v }))).sort((a, b) => b.v - a.v);
  print(`\n1. copying scores (${r.weights} weights; +1 = the head raises the logit of the token it attends to)`);
  print(`   highest: ${flat.slice(0, 8).map((x) => `${x.name} ${num(x.v, 2)}`).join(', ')}`);
  print(`   lowest:  ${flat.slice(-4).reverse().map((x) => `${x.name} ${num(x.v, 2)}`).join(', ')}`);
  if (L === 12 && nh === 12) {
    const show = (names: string[]) => names.map((n) => `${n} ${num(at(r.copying_score, n), 2)}`).join(', ');
    print(`   GPT-2 small's induction heads: ${show(GPT2_SMALL_COPYING.induction)}`);
    print(`   GPT-2 small's name movers:     ${show(GPT2_SMALL_COPYING.name_movers)}`);
  }
  const b = r.composition_baseline;
  print(`\n2. composition scores (random matrices of the same shapes: ${b.mean.toPrecision(3)} ± ${b.std.toPrecision(2)})`);
  for (const m of ['q', 'k', 'v'] as const) {
    print(`   ${m.toUpperCase()}: ${r.top_pairs[m].slice(0, 5).map((p) => `${p.writer}→${p.reader} ${p.score.toPrecision(3)}`).join(', ')}`);
  }
  const pq = at(r.positional_qk, r.path.writer);
  const hq = at(r.positional_qk, r.head);
  print(`\n3. positional QK (first ${pq.length} positions): the best key among 0 … q is q − 1 in ${previousPeaks(pq)} of ${pq.length - 1} rows for ${r.path.writer}, ${previousPeaks(hq)} for ${r.head}`);
  const T = r.text.ids.length;
  print(`\n4. head ${r.head} on the text (${T} tokens): scores and their split are in token_qk.svg; the OV circuit on its ${r.ov_on_tokens.ids.length} distinct tokens in ov_tokens.svg`);
  const ov = r.ov_on_tokens.values;
  print(`   OV: for ${ovDiagonal(ov)} of ${ov.length} tokens, attending to the token raises that same token's logit most`);
  print(`\n5. virtual weights of ${r.path.writer} → ${r.path.reader} on the text's tokens: virtual_weights.svg`);
  print(`\n6. memory-management neurons (cosine of input and output direction ≤ ${r.eraser_below}): ${r.erasers.length}`);
  for (const e of r.erasers.slice(0, 12)) print(`   ${e.layer}.${e.neuron}  ${num(e.cosine)}`);
  if (r.erasers.length > 12) print(`   … and ${r.erasers.length - 12} more (circuits.json "erasers")`);
  print(`   lowest ${r.lowest_neurons.length}: ${r.lowest_neurons.map((e) => `${e.layer}.${e.neuron} ${num(e.cosine, 2)}`).join(', ')}`);
  const q = r.qk_path;
  print(`\n7. causal check on ${q.batch} × (BOS + 2 × ${q.seq_len}) repeated random tokens, second-half top-1 accuracy:`);
  print(`   clean                                    ${num(q.clean.accuracy)}`);
  print(`   ${(q.writer + ' removed from ' + q.reader + "'s keys").padEnd(40)} ${num(q.k_path_removed.accuracy)}`);
  print(`   ${(q.writer + ' removed from ' + q.reader + "'s queries").padEnd(40)} ${num(q.q_path_removed.accuracy)}`);
  print(`   chance                                   ${q.chance_accuracy.toPrecision(2)}`);
}

/** A few sentences computed from the report: which heads copy, which pairs compose beyond chance, and what the causal check says. */
export function readingAid(r: Report, randomWeights: boolean): string[] {
  const out: string[] = [];
  if (randomWeights) out.push(randomWeightsWarning());
  const flat = r.copying_score.flatMap((row, l) => row.map((v, h) => ({ name: headName({ layer: l, head: h }), v }))).sort((a, b) => b.v - a.v);
  const copiers = flat.filter((x) => x.v > 0.5), suppressors = flat.filter((x) => x.v < -0.5);
  out.push(copiers.length
    ? `${copiers.length > 1 ? `${copiers.length} heads copy what they attend` : 'One head copies what it attends'} to (score above 0.5): ${copiers.slice(0, 8).map((x) => `${x.name} ${num(x.v, 2)}`).join(', ')}${copiers.length > 8 ? ', …' : ''}; induction heads and name movers look like this.`
    : `No head copies what it attends to (every copying score is at most 0.5; the highest, ${flat[0].name}, is ${num(flat[0].v, 2)}).`);
  if (suppressors.length) out.push(`${suppressors.length > 1 ? `${suppressors.length} heads lower the logit of what they attend` : 'One head lowers the logit of what it attends'} to (score below −0.5): ${suppressors.slice(0, 5).map((x) => x.name).join(', ')}.`);

  const b = r.composition_baseline;
  for (const [m, name] of [['k', 'K'], ['q', 'Q'], ['v', 'V']] as const) {
    const best = r.top_pairs[m][0];
    if (!best) continue;
    const z = b.std > 0 ? (best.score - b.mean) / b.std : 0;
    out.push(z >= 3
      ? `The strongest ${name}-composition, ${best.writer} → ${best.reader} (${best.score.toPrecision(3)}), is ${num(z, 1)} standard deviations above random matrices (${b.mean.toPrecision(3)}): ${best.reader} reads what ${best.writer} writes${m === 'k' ? ' into its keys, as an induction head reads a previous-token head' : ''}.`
      : `No ${name}-composition stands clearly above chance: the strongest, ${best.writer} → ${best.reader} (${best.score.toPrecision(3)}), is ${num(Math.abs(z), 1)} standard deviations ${z >= 0 ? 'above' : 'below'} random matrices.`);
  }
  const pq = at(r.positional_qk, r.path.writer);
  const peaks = previousPeaks(pq);
  out.push(peaks >= 0.8 * (pq.length - 1)
    ? `From positions alone, ${r.path.writer} prefers the previous position in ${peaks} of ${pq.length - 1} rows: a previous-token head by its weights.`
    : `From positions alone, ${r.path.writer} prefers the previous position in only ${peaks} of ${pq.length - 1} rows.`);
  const ov = r.ov_on_tokens.values;
  out.push(`On the text's ${ov.length} distinct tokens, ${r.head}'s OV circuit raises the attended token's own logit most for ${ovDiagonal(ov)} of them${ovDiagonal(ov) >= 0.8 * ov.length ? ': it copies' : ''}.`);
  out.push(r.erasers.length
    ? `${r.erasers.length > 1 ? `${r.erasers.length} MLP neurons write back minus what they read` : 'One MLP neuron writes back minus what it reads'} (cosine ≤ ${r.eraser_below}), erasing a direction from the residual stream.`
    : `No MLP neuron erases what it reads (the lowest cosine is ${r.lowest_neurons.length ? num(r.lowest_neurons[0].cosine, 2) : '—'}, above ${r.eraser_below}).`);
  const q = r.qk_path;
  const room = q.clean.accuracy - q.chance_accuracy;
  if (room < 0.05) {
    out.push(`The causal check has nothing to show: the model gets the second half of repeated random tokens right ${num(q.clean.accuracy, 2)} of the time, about chance.`);
  } else {
    const kLoss = (q.clean.accuracy - q.k_path_removed.accuracy) / room, qLoss = (q.clean.accuracy - q.q_path_removed.accuracy) / room;
    out.push(`Taking ${q.writer} out of ${q.reader}'s keys costs ${Math.round(100 * kLoss)}% of the accuracy above chance, out of its queries ${Math.round(100 * qLoss)}%` +
      (kLoss > 0.5 && qLoss < 0.2 ? `: ${q.reader}'s keys need ${q.writer}, which is K-composition at work.` : '.'));
  }
  return out;
}
