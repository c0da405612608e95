/**
 * The experiment's terminal report: the log as a short table, and a reading aid, a few sentences
 * computed from the numbers that say what happened and when. Nothing here runs the model.
 */
import { parseHead } from '../../lens/heads.ts';
import { FORMED, type Jump, type LogEntry } from './formation.ts';
import type { Options, TrainingJson } from './train.ts';

/** About `rows` entries of the log, evenly spaced, the first and the last always among them. */
function sample(log: readonly LogEntry[], rows: number): LogEntry[] {
  if (log.length <= rows) return [...log];
  const every = Math.ceil((log.length - 1) / (rows - 1));
  return log.filter((_, i) => i % every === 0 || i === log.length - 1);
}

const at = (step: number | null) => (step === null ? 'never' : `step ${step}`);

/** "between steps 300 and 450": where a curve went from 10 % to 90 % of its change. */
function window(j: Jump): string {
  if (j.at10 === null || j.at90 === null) return 'without a clear window';
  return j.at10 === j.at90 ? `within the log interval ending at step ${j.at90}` : `between steps ${j.at10} and ${j.at90}`;
}

export function printReport(json: TrainingJson, o: Options, print: (line?: string) => void): void {
  const { log } = json;
  const phase = json.phase_change!;
  const last = log[log.length - 1];
  const { layer: il, head: ih } = parseHead(phase.induction_head), { layer: pl, head: ph } = parseHead(phase.previous_token_head);
  const uniform = Math.log(o.shape.hi - o.shape.lo);

  print(`\nthe log (fixed batch; every ${o.logEvery} steps, ${log.length} entries in training.json):`);
  print(`  ${'step'.padStart(6)}  ${'train'.padStart(6)}  ${'1st half'.padStart(8)}  ${'2nd half'.padStart(8)}  ${`ind ${phase.induction_head}`.padStart(9)}  ${`prev ${phase.previous_token_head}`.padStart(9)}  ${'cpu s'.padStart(6)}`);
  for (const e of sample(log, 12)) {
    print(`  ${String(e.step).padStart(6)}  ${e.loss.toFixed(3).padStart(6)}  ${e.first_half_loss.toFixed(3).padStart(8)}  ${e.second_half_loss.toFixed(3).padStart(8)}  ${e.induction[il][ih].toFixed(3).padStart(9)}  ${e.previous_token[pl][ph].toFixed(3).padStart(9)}  ${e.cpu_s.toFixed(0).padStart(6)}`);
  }

  print('\nreading aid:');
  const l = phase.second_half_loss, s = phase.induction_score, p = phase.previous_token_score;
  print(`- The first half cannot be predicted: its loss is ${last.first_half_loss.toFixed(2)} nats at the end (a uniform guess over the ${o.shape.hi - o.shape.lo} tokens: ${uniform.toFixed(2)}).`);
  if (!phase.formed) {
    print(`- The second half's loss went from ${l.start.toFixed(2)} to ${l.end.toFixed(2)} nats, and the strongest layer-${il} induction score (head ${phase.induction_head}) from ${s.start.toFixed(2)} to ${s.end.toFixed(2)}.`);
    print(`- No induction head has formed yet (that takes an induction score of ${FORMED.induction_score} and a second half at least ${FORMED.loss_gap} nat below the first):`);
    print(`  the log shows the plateau before the jump. Train longer (--steps ${o.steps * 2}), or with another --seed.`);
  } else {
    print(`- The second half's loss went from ${l.start.toFixed(2)} to ${l.end.toFixed(2)} nats, half of that fall by ${at(l.at50)}, most of it ${window(l)}.`);
    print(`- Head ${phase.induction_head}'s induction score went from ${s.start.toFixed(2)} to ${s.end.toFixed(2)}, half-way by ${at(s.at50)}, most of it ${window(s)}.`);
    if (phase.apart_steps !== null) {
      const intervals = phase.apart_steps / o.logEvery;
      const together = intervals <= 2 ? 'together: the loss falls when, and because, the induction head forms' : 'not quite together: look at the scores chart for another head that formed first';
      print(`- Those half-way points are ${phase.apart_steps} steps apart (${intervals.toFixed(0)} log intervals): ${together}.`);
    }
    const order = p.at50 === null || s.at50 === null ? '' : p.at50 < s.at50 ? ', before the induction head' : p.at50 === s.at50 ? ', with the induction head' : ', after the induction head: it keeps sharpening once the induction head uses it';
    print(`- Its previous-token partner ${phase.previous_token_head} went from ${p.start.toFixed(2)} to ${p.end.toFixed(2)}, half-way by ${at(p.at50)}${order}.`);
  }
  if (json.interrupted) print(`- Stopped by Ctrl-C after ${last.step} of ${o.steps} steps; the log and the checkpoint are those of step ${last.step}.`);
  print(`- Processor time ${json.timing.cpu_s.toFixed(0)} s (wall ${json.timing.wall_s.toFixed(0)} s; a busy machine stretches the wall time, not the processor time).`);
}
