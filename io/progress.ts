/**
 * A small progress bar for downloads and long sweeps, on stderr:
 *
 *   model.safetensors [########............]  41%  215.4 MiB / 522.7 MiB  38.2 MiB/s  ETA 8s
 *
 * On a terminal it redraws one line in place (`\r`), at most ~10 times a second. When stderr is
 * not a terminal (CI, a pipe, a log file) it prints a plain line every ~10% instead, so logs stay
 * short. Silent when MINGPT_QUIET is set (or with `quiet: true`).
 */

export interface ProgressOptions {
  /** the amount that means "finished"; 0 or NaN when unknown (then no percent or ETA is shown) */
  total: number;
  label: string;
  /** 'B' shows amounts as bytes (KiB, MiB, GiB); '' (default) as plain counts */
  unit?: 'B' | '';
  quiet?: boolean;
  /** where to draw (default process.stderr); tests pass a fake */
  stream?: { write(s: string): unknown; isTTY?: boolean };
  /** environment read for MINGPT_QUIET (default process.env) */
  env?: NodeJS.ProcessEnv;
  /** the clock, in milliseconds (default Date.now); tests pass a fake */
  now?: () => number;
  /**
   * The share of the whole work (0 … 1) that `done` units are, when units cost unequal time (a
   * patch in layer 0 recomputes every block, one in the last layer one block): the ETA follows it
   * instead of assuming every unit costs the same. Default done / total.
   */
  workDone?: (done: number) => number;
}

const BAR_WIDTH = 20;
const REDRAW_MS = 100;

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export class ProgressBar {
  readonly total: number;
  readonly label: string;
  private readonly unit: 'B' | '';
  private readonly silent: boolean;
  private readonly stream: { write(s: string): unknown; isTTY?: boolean };
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly workDone?: (done: number) => number;
  private readonly start: number;
  private doneCount = 0;
  private lastDraw = 0;
  private lastDecile = -1;
  private finished = false;

  constructor(opts: ProgressOptions) {
    this.total = opts.total;
    this.label = opts.label;
    this.unit = opts.unit ?? '';
    this.stream = opts.stream ?? process.stderr;
    this.now = opts.now ?? Date.now;
    this.workDone = opts.workDone;
    this.start = this.now();
    this.tty = !!this.stream.isTTY;
    this.silent = !!opts.quiet || !!(opts.env ?? process.env).MINGPT_QUIET;
  }

  /** Adds n to the amount done. */
  tick(n = 1): void {
    this.update(this.doneCount + n);
  }

  /** Sets the amount done. */
  update(done: number): void {
    if (this.finished) return;
    this.doneCount = done;
    if (this.silent) return;
    const known = this.total > 0;
    if (this.tty) {
      const now = this.now();
      if (now - this.lastDraw >= REDRAW_MS || (known && done >= this.total)) {
        this.lastDraw = now;
        this.stream.write(`\r${this.line()}\x1b[K`);
      }
    } else if (known) {
      const decile = Math.min(10, Math.floor((10 * done) / this.total));
      if (decile > this.lastDecile && decile < 10) { // the 100% line is printed by done()
        this.lastDecile = decile;
        this.stream.write(this.line() + '\n');
      }
    }
  }

  /** Draws the final state and ends the line. */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.silent) return;
    this.stream.write(this.tty ? `\r${this.line()}\x1b[K\n` : this.line() + '\n');
  }

  private amount(n: number): string {
    return this.unit === 'B' ? formatBytes(n) : String(n);
  }

  /** "38.2 MiB/s", "12/s", "2.5/s", or, slower than one a second, "3.1s each". */
  private rateText(rate: number): string {
    if (this.unit === 'B') return `${formatBytes(Math.round(rate))}/s`;
    if (rate >= 10) return `${Math.round(rate)}/s`;
    if (rate >= 1) return `${rate.toFixed(1)}/s`;
    const each = 1 / rate;
    return `${each < 10 ? `${each.toFixed(1)}s` : formatDuration(each)} each`;
  }

  private line(): string {
    const elapsed = (this.now() - this.start) / 1000;
    const rate = elapsed > 0 ? this.doneCount / elapsed : NaN;
    const rateStr = Number.isFinite(rate) && rate > 0 ? this.rateText(rate) : '';
    const parts = [this.label];
    if (this.total > 0) {
      const frac = Math.min(1, this.doneCount / this.total);
      const filled = Math.round(frac * BAR_WIDTH);
      parts.push(`[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`);
      parts.push(`${String(Math.floor(frac * 100)).padStart(3)}%`);
      parts.push(`${this.amount(this.doneCount)} / ${this.amount(this.total)}`);
      if (rateStr) parts.push(rateStr);
      if (this.finished) parts.push(`in ${formatDuration(elapsed)}`);
      else if (rate > 0) {
        const share = this.workDone ? this.workDone(this.doneCount) : this.doneCount / this.total;
        if (share > 0) parts.push(`ETA ${formatDuration((elapsed * (1 - share)) / share)}`);
      }
    } else {
      parts.push(this.amount(this.doneCount));
      if (rateStr) parts.push(rateStr);
      if (this.finished) parts.push(`in ${formatDuration(elapsed)}`);
    }
    return parts.join('  ');
  }
}
