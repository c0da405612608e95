/**
 * The IOI experiment's terminal report: steps 2-7 as numbers, then a few sentences computed from
 * them that say what they mean (the reading aid). Nothing here runs the model; everything reads
 * the Report that ioi.ts assembles.
 */
import { num, randomWeightsWarning, term } from '../../cli/terminal.ts';
import type { HeadGrid } from './experiment.ts';
import type { Report } from './ioi.ts';
import { eapLines } from './eap.ts';
import { headName } from '../../lens/heads.ts';

const f3 = (v: number | null) => (v === null ? '—' : num(v));
const pct = (x: number) => `${Math.round(100 * x)}%`;

interface Ranked { name: string; v: number }

/** Every head of a grid with its value (null cells left out). */
function heads(g: HeadGrid): Ranked[] {
  return g.flatMap((row, l) => row.map((v, h) => ({ name: headName({ layer: l, head: h }), v })))
    .filter((x): x is Ranked => x.v !== null && Number.isFinite(x.v));
}

/** The n heads with the largest `key` among those where it is positive (rounded to the printed digits). */
function top(g: HeadGrid, n: number, key: (v: number) => number): Ranked[] {
  return heads(g).filter((x) => Number(key(x.v).toFixed(3)) > 0).sort((a, b) => key(b.v) - key(a.v)).slice(0, n);
}

const list = (xs: Ranked[], show: (x: Ranked) => string) => (xs.length ? xs.map(show).join(', ') : 'none');

/** Steps 2-7 as the terminal shows them. */
export function printResults(rep: Report, print: (s?: string) => void): void {
  print(`\n2. metric: F = mean logit(IO) − logit(S) at END = ${num(rep.F_model)} (the paper: about 3.55 on GPT-2 small)`);
  print(`   accuracy (IO > S) ${(100 * rep.accuracy).toFixed(1)}%, mean P(IO) ${num(rep.io_prob)}`);
  print(`\n3. logit lens (IO − S from the stream entering each block, then the end): ${rep.logit_lens.map((v) => num(v, 2)).join(' ')}`);
  print(`   direct logit attribution, heads toward IO: ${list(top(rep.dla.heads, 5, (v) => v), (x) => `${x.name} ${num(x.v, 3, true)}`)}`);
  print(`   heads toward S: ${list(top(rep.dla.heads, 3, (v) => -v), (x) => `${x.name} ${num(x.v, 3, true)}`)}`);
  const base = rep.patching.corrupt_F;
  print(`\n4. activation patching (ABC run F = ${num(base)}; one head's z from the IOI run), biggest gains in IO − S: ` +
    list(top(rep.patching.head_z, 5, (v) => v - base), (x) => `${x.name} ${num(x.v - base, 3, true)} (to ${num(x.v)})`));
  if (rep.patching.resid_post) {
    const rp = rep.patching.resid_post;
    print(`   residual stream sweep on group "${rp.group}" (${rp.prompts} prompts): IOI run ${num(rp.clean_F)}, ABC run ${num(rp.corrupt_F)} (resid_patching chart)`);
  }
  print('\n5. attention from END (mean):        to IO   to S1   to S2');
  for (const t of rep.attention.top_heads) print(`   ${t.head.padEnd(6)} ${t.why.slice(0, 26).padEnd(26)} ${num(t.to_IO).padStart(6)}  ${num(t.to_S1).padStart(6)}  ${num(t.to_S2).padStart(6)}`);
  const F = rep.F_model;
  print(`\n6. path patching (orig = IOI prompt, new = ABC twin; F_model ${num(F)}): how much F falls when one sender's path comes from the ABC twin`);
  print(`   to the logits (the sender's direct path carries the answer): ${list(top(rep.path_patching.to_logits, 5, (v) => F - v), (x) => `${x.name} ${num(x.v - F, 3, true)} (to ${num(x.v)})`)}`);
  print(`   to the queries of ${rep.path_patching.name_movers.join(', ')} at END (${rep.path_patching.name_movers_source}): ` +
    list(top(rep.path_patching.to_name_movers, 5, (v) => F - v), (x) => `${x.name} ${num(x.v - F, 3, true)} (to ${num(x.v)})`));
  const k = rep.knockout;
  print(`\n7. knockouts (mean ablation over the ABC prompts; circuit heads kept at ${k.positions === 'paper' ? "their class's positions" : 'every position'})`);
  print(`   circuit: ${k.circuit.length} heads (${k.circuit_source})`);
  const share = Math.abs(k.F_model) > 1e-9 ? ` (${(100 * k.faithfulness / Math.abs(k.F_model)).toFixed(1)}% of |F_model|)` : '';
  print(`   F_model ${f3(k.F_model)}   F_circuit ${f3(k.F_circuit)}   F_empty ${f3(k.F_empty)}   faithfulness |F_model − F_circuit| = ${f3(k.faithfulness)}${share}`);
  for (const c of k.completeness) print(`   completeness ${c.kind.padEnd(28)} K = {${c.K.join(', ')}}: |F(C\\K) − F(M\\K)| = |${term(c.F_C_minus_K)} − ${term(c.F_M_minus_K)}| = ${f3(c.value)}`);
  print(`   minimality |F(C\\{v}) − F(C)|: ${[...k.minimality].sort((a, b) => b.value - a.value).map((m) => `${m.head} ${num(m.value)}`).join(', ')}`);
  if (rep.eap) for (const line of eapLines(rep.eap)) print(line);
}

/**
 * A few sentences computed from the report: whether the model does the task, where the answer
 * appears, which heads carry it by each tool, and how the circuit holds up. Thresholds are
 * shares of |F| so that they mean the same on any model.
 */
export function readingAid(rep: Report, randomWeights: boolean): string[] {
  const out: string[] = [];
  if (randomWeights) out.push(randomWeightsWarning());
  const F = rep.F_model, absF = Math.abs(F) || 1;
  if (F > 0) {
    out.push(`On average the model prefers IO to S by ${num(F, 2)} logits, and puts IO above S in ${pct(rep.accuracy)} of the prompts (GPT-2 small: about 3.55 and 99%).`);
  } else {
    out.push(`The model does not prefer IO: F = ${num(F, 2)}, IO above S in only ${pct(rep.accuracy)} of the prompts, so the tools below have no IOI behaviour to explain; read them as arithmetic.`);
  }
  if (F > 0) {
    const L = rep.logit_lens.length - 1;
    const at = rep.logit_lens.findIndex((v) => v >= F / 2);
    if (at === 0) out.push('The logit lens shows half of F in the embeddings already: the answer is there before any block runs.');
    else if (at > 0 && at < L) out.push(`The logit lens first shows half of F in the stream entering block ${at}: ${at === 1 ? 'block 0 writes' : `blocks 0 … ${at - 1} write`} that much of the answer.`);
    else out.push('The logit lens stays below half of F until after the last block: the last block writes most of the answer.');
  }
  const toIO = top(rep.dla.heads, 3, (v) => v).filter((x) => x.v > 0.1 * absF);
  const toS = top(rep.dla.heads, 2, (v) => -v).filter((x) => -x.v > 0.1 * absF);
  if (toIO.length) out.push(`Writing directly toward IO: ${list(toIO, (x) => `${x.name} (${num(x.v, 2, true)})`)}${toS.length ? `; toward S: ${list(toS, (x) => `${x.name} (${num(x.v, 2)})`)}` : ''}. Name movers look like this.`);
  else out.push('No head writes more than a tenth of |F| directly toward IO.');

  const base = rep.patching.corrupt_F, gap = F - base;
  if (gap > 0.1 * absF) {
    const gains = top(rep.patching.head_z, 3, (v) => v - base).filter((x) => x.v - base > 0.1 * gap);
    out.push(gains.length
      ? `Patching one head's output from the IOI run into the ABC run restores most for ${list(gains, (x) => `${x.name} (${pct((x.v - base) / gap)} of the gap from the ABC run's ${num(base, 2)} to F)`)}.`
      : `No single head's output restores a tenth of the gap between the ABC run (${num(base, 2)}) and F: the answer is spread over several heads.`);
  } else {
    out.push(`The ABC run gives ${num(base, 2)}, ${base >= F ? 'no less than' : 'within a tenth of'} F (${num(F, 2)}): the ABC prompts do not lack what this model uses, so activation patching has no gap to close.`);
  }

  const drops = (g: HeadGrid) => top(g, 3, (v) => F - v).filter((x) => F - x.v > 0.1 * absF);
  const direct = drops(rep.path_patching.to_logits), viaQ = drops(rep.path_patching.to_name_movers);
  out.push(direct.length
    ? `Path patching: the direct paths to the logits that carry the answer (F drops by more than a tenth when they come from the ABC run): ${list(direct, (x) => `${x.name} (to ${num(x.v, 2)})`)}.`
    : 'Path patching: no single head\'s direct path to the logits carries a tenth of |F|.');
  out.push(viaQ.length
    ? `Through the queries of ${rep.path_patching.name_movers.join(', ')}: ${list(viaQ, (x) => `${x.name} (to ${num(x.v, 2)})`)}; in GPT-2 small the S-inhibition heads do this, telling the name movers which name not to copy.`
    : `No head's path into the queries of ${rep.path_patching.name_movers.join(', ')} moves F by a tenth of |F|.`);

  const k = rep.knockout;
  const faithful = k.faithfulness / absF;
  out.push(`Keeping only the ${k.circuit.length} circuit heads gives F_circuit ${num(k.F_circuit, 2)} against F_model ${num(k.F_model, 2)}: ` +
    (faithful < 0.1 ? `faithful (the difference is ${pct(faithful)} of |F|).` : `the circuit misses ${pct(faithful)} of |F|: part of the behaviour is elsewhere.`));
  if (k.completeness.length) {
    const worst = [...k.completeness].sort((a, b) => b.value - a.value)[0];
    out.push(worst.value < 0.1 * absF
      ? `Completeness: removing any of the tested sets K hurts the circuit about as much as the whole model (at most ${num(worst.value, 2)}).`
      : `Completeness: removing K = {${worst.K.join(', ')}} (${worst.kind}) hurts the circuit and the model differently (${num(worst.value, 2)}): the model has heads outside the circuit that take over.`);
  }
  const idle = k.minimality.filter((m) => m.value < 0.05 * absF).map((m) => m.head);
  const some = (xs: string[]) => (xs.length > 8 ? `${xs.slice(0, 8).join(', ')} and ${xs.length - 8} more` : xs.join(', '));
  if (idle.length) out.push(`Minimality: the circuit barely needs ${some(idle)} (removing each changes F_circuit by less than 5% of |F|).`);
  else if (k.minimality.length) out.push('Minimality: removing any one circuit head changes F_circuit by at least 5% of |F|: each one is needed.');
  return out;
}
