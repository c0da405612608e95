/**
 * Writing a run's results so that nobody ever sees half of them.
 *
 * - atomicWrite: one file, written under a temporary name beside the target, flushed to disk,
 *   then renamed over it: a reader sees the old file or the whole new one.
 * - OutputWriter: the set of files of one run (patching.json and its charts, say). They are kept
 *   in memory until commit(), which writes them all into a hidden staging folder next to the
 *   output folder, flushes them, and then
 *     - when the output folder is new: renames the staging folder to it, one rename, so the
 *       folder appears with every file in it or not at all;
 *     - when it exists (it may hold other runs' results, which must stay): renames the files
 *       into it one after the other, within one synchronous step.
 *   SIGINT / SIGTERM / SIGHUP (Ctrl-C, kill) are held while commit() runs: the set is finished,
 *   the staging folder removed, and then the signal ends the process as it would have.
 *   A staging folder left by a process that died harder (kill -9, power loss) is removed by the
 *   next commit next to it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from './errors.ts';

let tmpCounter = 0;
/** A temporary name beside `target`, ending in .partial (ignored by git). */
function tmpNameFor(target: string): string {
  const dir = path.dirname(target);
  return path.join(dir, `.${path.basename(target)}.${process.pid}.${tmpCounter++}.partial`);
}

/**
 * mkdir -p, one level at a time, returning the first folder created (to remove on failure).
 * Not fs.mkdirSync(dir, { recursive: true }): on Node 20 that never returns for a path under
 * /proc, and its errors name no folder. Failures become an InputError that says which one.
 */
function makeDirs(dir: string, shownAs = dir): string | undefined {
  const missing: string[] = [];
  for (let p = path.resolve(dir); !fs.existsSync(p); p = path.dirname(p)) {
    missing.unshift(p);
    if (path.dirname(p) === p) break;
  }
  for (const p of missing) {
    try {
      fs.mkdirSync(p);
    } catch (err) {
      if (missing[0] !== p) fs.rmSync(missing[0], { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new InputError(`cannot create the output folder ${shownAs} (${p}: ${code})`);
    }
  }
  return missing[0];
}

function removeQuietly(file: string): void {
  try {
    fs.rmSync(file, { recursive: true, force: true });
  } catch {
    // nothing more we can do; the .partial / .staging name makes the leftover recognisable
  }
}

/** Flushes a file or a folder (its list of names) to disk; a folder that cannot be synced is left as is. */
export function fsyncPath(p: string): void {
  let fd: number;
  try {
    fd = fs.openSync(p, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on a folder; the renames are atomic all the same
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` to a new file and flushes it before returning. */
function writeDurably(file: string, data: string | Uint8Array): void {
  const fd = fs.openSync(file, 'wx');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Write `data` to `target` so that readers see either the old file or the complete new one:
 * write a temporary file in the same folder, flush it, then rename it over the target.
 * The folder must exist.
 */
export function atomicWrite(target: string, data: string | Uint8Array): void {
  const tmp = tmpNameFor(target);
  try {
    writeDurably(tmp, data);
    fs.renameSync(tmp, target);
  } catch (err) {
    removeQuietly(tmp);
    throw err;
  }
  fsyncPath(path.dirname(target));
}

// -----------------------------------------------------------------------------------------------
// signals: finish the set, clean up, then die of the signal as usual

/** Staging folders that exist right now, removed if a signal ends the process. */
const staging = new Set<string>();
let signalsHeld = false;

/**
 * Once a listener is attached, Node delivers the signal to JavaScript between two pieces of work
 * instead of killing the process wherever it is, so a synchronous commit() always finishes.
 * Our listener then removes what is left of staging and raises the signal again with its default
 * action (unless the program has listeners of its own, which then decide).
 */
function holdSignals(): void {
  if (signalsHeld) return;
  signalsHeld = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      for (const dir of staging) removeQuietly(dir);
      staging.clear();
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** `.<name>.<pid>.<n>.partial`: a staging folder or an atomicWrite temporary (git ignores *.partial). */
const STAGING = /^\.(.+)\.(\d+)\.\d+\.partial$/;

/** Staging folders and temporaries in `parent` left by processes that no longer run. */
function removeStaleStaging(parent: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    const m = name.match(STAGING);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') removeQuietly(path.join(parent, name));
    }
  }
}

/**
 * Collects the files of one run and writes them together at the end.
 *
 *   const out = new OutputWriter('out/');
 *   out.add('patching.json', json);      // nothing touches the disk yet
 *   out.add('heatmap.svg', svg);
 *   const written = out.commit();          // now: stage every file next to out/, flush,
 *                                          // then one rename (or one quick series of them)
 *
 * If the run fails before commit(), the output folder is not even created. If writing fails
 * during commit(), the staging folder is removed, and so are the folders commit made.
 */
export class OutputWriter {
  readonly dir: string;
  private files = new Map<string, string | Uint8Array>();

  /** Refuses an empty folder name at once: `--out ''` must not quietly mean the current folder. */
  constructor(dir: string) {
    if (typeof dir !== 'string' || dir.trim() === '') {
      throw new InputError(`the output folder name is empty (--out ${JSON.stringify(dir)}): name a folder, e.g. --out out/ (or --out . for the current one)`);
    }
    this.dir = dir;
    holdSignals(); // from now on a Ctrl-C waits for a commit under way (and is otherwise as before)
  }

  add(name: string, data: string | Uint8Array): void {
    if (name.includes('/') || name.includes('\\') || name.startsWith('.') || name === '') {
      throw new Error(`OutputWriter.add: "${name}" must be a plain file name`);
    }
    this.files.set(name, data);
  }

  names(): string[] {
    return [...this.files.keys()];
  }

  /**
   * Whether the folder can be written, checked without writing anything: it is a folder, or the
   * nearest part of its path that exists is a writable folder. Throws InputError otherwise.
   * Call it before long work, so that a typo in --out does not cost the whole run.
   */
  check(): void {
    let p = path.resolve(this.dir);
    while (!fs.existsSync(p)) {
      const up = path.dirname(p);
      if (up === p) break;
      p = up;
    }
    if (!fs.statSync(p).isDirectory()) {
      throw new InputError(p === path.resolve(this.dir)
        ? `the output path ${this.dir} exists and is not a folder`
        : `cannot create the output folder ${this.dir}: ${p} is a file, so no folder can be made there`);
    }
    try {
      fs.accessSync(p, fs.constants.W_OK);
    } catch {
      throw new InputError(`cannot write to the output folder ${this.dir}: ${p} is not writable`);
    }
  }

  /** Write everything; returns the paths written, in the order they were added. */
  commit(): string[] {
    this.check();
    const target = path.resolve(this.dir);
    const existed = fs.existsSync(target);
    for (const name of this.files.keys()) {
      const file = path.join(target, name);
      if (fs.existsSync(file) && !fs.statSync(file).isFile()) {
        throw new InputError(`cannot write ${path.join(this.dir, name)}: something that is not a file is in the way`);
      }
    }
    // the staging folder sits next to the target, on the same filesystem, so renames are atomic
    const parent = existed ? target : path.dirname(target);
    const created = existed ? undefined : makeDirs(parent, this.dir);
    removeStaleStaging(parent);
    holdSignals();
    const stage = path.join(parent, `.${path.basename(target) || 'out'}.${process.pid}.${tmpCounter++}.partial`);
    staging.add(stage);
    try {
      fs.mkdirSync(stage);
      for (const [name, data] of this.files) writeDurably(path.join(stage, name), data);
      fsyncPath(stage);
      if (!existed) {
        fs.renameSync(stage, target); // the folder appears with every file in it
        fsyncPath(parent);
      } else {
        for (const name of this.files.keys()) fs.renameSync(path.join(stage, name), path.join(target, name));
        fsyncPath(target);
        fs.rmdirSync(stage);
      }
      staging.delete(stage);
    } catch (err) {
      removeQuietly(stage);
      staging.delete(stage);
      if (created) removeQuietly(created);
      const code = (err as NodeJS.ErrnoException).code;
      if (code) throw new InputError(`cannot write the results into ${this.dir} (${code}: ${(err as Error).message}); nothing was written`);
      throw err;
    }
    return this.names().map((name) => path.join(this.dir, name));
  }
}
