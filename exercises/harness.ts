/**
 * What a task's checks are written with: a run that records each test's outcome, a mismatch that
 * carries what was expected, what came out and a hint, and the comparisons the checks share.
 *
 * A task passes when every one of its tests passes (a mutant must earn nothing). A test that
 * meets a stub ("TASK x not done") ends the task: not done when it is the task's own stub,
 * blocked when it is another task's (a task of the optional model track, say).
 */
import { TASK_NOT_DONE } from '../cli/command.ts';

type TestStatus = 'passed' | 'failed' | 'error';

export interface TestOutcome {
  name: string;
  status: TestStatus;
  expected?: string;
  got?: string;
  hint?: string;
}

/** A wrong answer: what the reference says, what the student's code gave, and what may be wrong. */
export class Mismatch extends Error {
  constructor(readonly expected: string, readonly got: string, readonly hint: string) {
    super(`expected ${expected}, got ${got}`);
    this.name = 'Mismatch';
  }
}

/** The stub a test ran into, if the error is one: the task id. */
export function stubTask(err: unknown): string | null {
  return err instanceof Error ? (TASK_NOT_DONE.exec(err.message)?.[1] ?? null) : null;
}

/** Thrown out of a task when a test runs into a stub: ends the task. */
export class StubReached extends Error {
  constructor(readonly task: string, message: string) {
    super(message);
    this.name = 'StubReached';
  }
}

export class TaskRun {
  readonly outcomes: TestOutcome[] = [];

  /** Runs one test; records its outcome. A stub ends the whole task (StubReached). */
  async test(name: string, body: () => unknown): Promise<void> {
    try {
      await body();
      this.outcomes.push({ name, status: 'passed' });
    } catch (err) {
      const stub = stubTask(err);
      if (stub !== null) throw new StubReached(stub, (err as Error).message);
      if (err instanceof Mismatch) this.outcomes.push({ name, status: 'failed', expected: err.expected, got: err.got, hint: err.hint });
      else this.outcomes.push({ name, status: 'error', got: `an error: ${describeError(err)}`, hint: 'your code threw where the test expected a result; the message and the first lines of the stack say where' });
    }
  }
}

/** An error as one short text: its message and the first stack frames outside node_modules. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const frames = (err.stack ?? '').split('\n').slice(1).map((l) => l.trim()).filter((l) => l.startsWith('at ') && !l.includes('node_modules') && !l.includes('node:')).slice(0, 3);
  return `${err.name}: ${err.message}${frames.length ? ` (${frames.join('; ')})` : ''}`;
}

// -----------------------------------------------------------------------------------------------
// comparisons

/** |got − want| ≤ tol · max(1, |want|): the fixtures' tolerance rule (ANALYSIS.md). */
export function near(got: number, want: number, tol: number): boolean {
  return Number.isFinite(got) && Math.abs(got - want) <= tol * Math.max(1, Math.abs(want));
}

export const fmt = (x: number | null | undefined): string =>
  x === null || x === undefined ? String(x) : Number.isInteger(x) ? String(x) : Number.isFinite(x) ? x.toPrecision(6) : String(x);

/** Fails with a Mismatch unless `got` is near `want`. */
export function expectNear(what: string, got: number, want: number, tol: number, hint: string): void {
  if (!near(got, want, tol)) throw new Mismatch(`${what} = ${fmt(want)}`, `${fmt(got)}`, hint);
}

/** The first index where two arrays disagree (lengths first), or −1. */
export function firstDiff(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): number {
  if (got.length !== want.length) return Math.min(got.length, want.length);
  for (let i = 0; i < want.length; i++) if (!near(got[i], want[i], tol)) return i;
  return -1;
}

/** Fails with a Mismatch naming the first entry that differs. */
export function expectArrayNear(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, hint: string): void {
  if (got.length !== want.length) throw new Mismatch(`${what}: ${want.length} numbers`, `${got.length}`, hint);
  const i = firstDiff(got, want, tol);
  if (i >= 0) throw new Mismatch(`${what}[${i}] = ${fmt(want[i])}`, fmt(got[i]), hint);
}

/** A grid (nested arrays) flattened, with nulls kept as NaN. */
function flat(grid: unknown): number[] {
  return (Array.isArray(grid) ? grid.flat(Infinity) : [grid]).map((x) => (x === null ? NaN : Number(x)));
}

/**
 * Which of several known wrong answers `got` is, if any: the first alternative that agrees with
 * `got` wherever both are defined (at least one place) and where `want` differs from it somewhere.
 */
export function recognise(got: readonly number[], want: readonly number[], alternatives: readonly Alternative[], tol: number): string | undefined {
  for (const a of alternatives) {
    let compared = 0, agrees = true, differsFromWant = false;
    for (let i = 0; i < got.length && i < a.values.length; i++) {
      if (!Number.isFinite(got[i]) || !Number.isFinite(a.values[i])) continue;
      compared++;
      if (!near(got[i], a.values[i], tol)) { agrees = false; break; }
      if (i < want.length && !near(want[i], a.values[i], tol)) differsFromWant = true;
    }
    if (agrees && compared > 0 && differsFromWant) return a.hint;
  }
  return undefined;
}

export interface Alternative {
  /** the wrong answer, flattened like the grid (NaN where it has no value) */
  values: readonly number[];
  /** what that mistake is */
  hint: string;
}

/**
 * Fails with a Mismatch if two grids differ: the first cell that does, with the hint of a
 * recognised mistake (`alternatives`, computed only when needed) or `hint`. `errors` holds, per
 * flat index, the error a cell's computation threw (the cell is NaN then).
 */
export function expectGridNear(what: string, got: unknown, want: unknown, tol: number, hint: string,
  alternatives: () => readonly Alternative[] = () => [], errors: ReadonlyMap<number, string> = new Map()): void {
  const g = flat(got), w = flat(want);
  const shape = (x: unknown): string => (Array.isArray(x) ? `${x.length}${Array.isArray(x[0]) ? ' × ' + shape(x[0]) : ''}` : 'a number');
  if (g.length !== w.length) throw new Mismatch(`${what}: ${shape(want)}`, shape(got), hint);
  for (let i = 0; i < w.length; i++) {
    if (Number.isNaN(w[i]) && Number.isNaN(g[i])) continue;
    if (!near(g[i], w[i], tol)) {
      const at = indexIn(want, i);
      const thrown = errors.get(i);
      throw new Mismatch(`${what}${at} = ${fmt(w[i])}`, thrown ? `an error: ${thrown}` : fmt(g[i]), recognise(g, w, alternatives(), tol) ?? hint);
    }
  }
}

/** Runs `f`; a stub's error goes on (it ends the task), any other error gives NaN and is noted under `index`. */
export function attempt(f: () => number, errors: Map<number, string>, index: number): number {
  try {
    return f();
  } catch (err) {
    if (stubTask(err) !== null) throw err;
    errors.set(index, describeError(err));
    return NaN;
  }
}

/** "[l][h]" for the flat index i of a nested array. */
function indexIn(grid: unknown, i: number): string {
  const dims: number[] = [];
  for (let x = grid; Array.isArray(x); x = x[0]) dims.push(x.length);
  const idx: number[] = [];
  for (let d = dims.length - 1; d >= 0; d--) { idx.unshift(i % dims[d]); i = Math.floor(i / dims[d]); }
  return idx.map((k) => `[${k}]`).join('');
}
