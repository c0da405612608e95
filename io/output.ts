/**
 * Writing a run's results so that nobody ever sees half of them, and no file is lost.
 *
 * - atomicWrite: one file, written under a temporary name beside the target, flushed to disk,
 *   then renamed over it: a reader sees the old file or the whole new one.
 * - OutputWriter: the set of files of one run (patching.json and its charts, say). They are kept
 *   in memory until commit(), which writes them all into a hidden staging folder next to the
 *   output folder, flushes them, and then
 *     - when the output folder is new: renames the staging folder to it, one rename, so the
 *       folder appears with every file in it or not at all;
 *     - when it exists (it may hold other runs' results, which must stay): moves the old files
 *       of the set aside into the staging folder, then the new ones in; if any move fails, every
 *       move is undone, so the folder holds the whole old set or the whole new one, never a mix.
 *   check() (called at the start of a run, and by commit) says at once whether the folder can be
 *   written, and takes a lock on it: a second run into the same folder is refused at its start
 *   instead of losing its results, or the first one's, at the end.
 * - temporaryFor / installTemporary: a large file written early (the activation cache) under a
 *   temporary name, renamed into place at the end.
 *
 * Every temporary name is `.<name>.<pid>.<n>.partial`. They are removed when the process ends
 * before renaming them: on exit, and on SIGINT / SIGTERM / SIGHUP (Ctrl-C, kill), which are held
 * while a commit runs so that the set is finished first, then end the process as they would
 * have. One left by a process that died harder (kill -9, power loss) is recognised by its pid
 * and removed the next time a temporary is made in its folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from './errors.ts';
import { tryLock } from './lock.ts';
import { shown } from './show.ts';

/** The longest file name (in bytes) the usual file systems allow. */
const NAME_MAX = 255;

let tmpCounter = 0;

/** `name` cut (at a character) to at most `bytes` bytes of UTF-8, so that a temporary name built on it stays under NAME_MAX. */
function shortName(name: string, bytes = 128): string {
  if (Buffer.byteLength(name) <= bytes) return name;
  const chars = Array.from(name);
  while (Buffer.byteLength(chars.join('')) > bytes) chars.pop();
  return chars.join('');
}

/** A temporary name in `dir` for `target`: `.<name>.<pid>.<n>.partial` (ignored by git). */
function tmpNameFor(target: string, dir = path.dirname(target)): string {
  return path.join(dir, `.${shortName(path.basename(target) || 'out')}.${process.pid}.${tmpCounter++}.partial`);
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
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && fs.statSync(p).isDirectory()) continue; // made by someone else meanwhile
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
  const tmp = temporaryFor(target);
  try {
    writeDurably(tmp, data);
  } catch (err) {
    discardTemporary(tmp);
    throw err;
  }
  installTemporary(tmp, target);
}

// -----------------------------------------------------------------------------------------------
// temporaries, locks and signals: whatever the process leaves behind goes when it ends

/** Temporary files and staging folders of this process that exist right now. */
const temporaries = new Set<string>();
/** Lock files this process holds (output folders being written). */
const locks = new Map<string, string>(); // lock file -> the output folder it reserves
let signalsHeld = false;

function cleanUp(): void {
  for (const t of temporaries) removeQuietly(t);
  temporaries.clear();
  for (const l of locks.keys()) removeQuietly(l);
  locks.clear();
}

/**
 * Once a listener is attached, Node delivers the signal to JavaScript between two pieces of work
 * instead of killing the process wherever it is, so a synchronous commit() always finishes.
 * Our listener then removes the temporaries and locks and raises the signal again with its
 * default action (unless the program has listeners of its own, which then decide).
 */
function holdSignals(): void {
  if (signalsHeld) return;
  signalsHeld = true;
  process.on('exit', cleanUp);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      cleanUp();
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** `.<name>.<pid>.<n>.partial`: a staging folder or a temporary file (git ignores *.partial). */
const TEMPORARY = /^\.(.+)\.(\d+)\.\d+\.partial$/;

/** Staging folders and temporaries in `dir` left by processes that no longer run. */
function removeStale(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = name.match(TEMPORARY);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') removeQuietly(path.join(dir, name));
    }
  }
}

/**
 * A temporary name for `target`, in `dir` (default: beside it), which is removed if the process
 * ends before installTemporary() renames it into place. Stale temporaries of dead processes in
 * that folder are removed now.
 */
export function temporaryFor(target: string, dir = path.dirname(target)): string {
  holdSignals();
  removeStale(dir);
  const tmp = tmpNameFor(target, dir);
  temporaries.add(tmp);
  return tmp;
}

/** Renames the finished temporary to `target` (creating the folders it needs) and flushes it. */
export function installTemporary(tmp: string, target: string): void {
  try {
    makeDirs(path.dirname(target));
    fs.renameSync(tmp, target);
  } catch (err) {
    discardTemporary(tmp);
    throw err;
  }
  temporaries.delete(tmp);
  fsyncPath(path.dirname(target));
}

/** Removes a temporary that will not be installed (its writing failed). */
export function discardTemporary(tmp: string): void {
  removeQuietly(tmp);
  temporaries.delete(tmp);
}

// -----------------------------------------------------------------------------------------------
// the output folder

const code = (err: unknown) => (err as NodeJS.ErrnoException).code ?? String(err);

/**
 * The nearest part of `target` that exists (target itself, or a folder above it). A symbolic
 * link on the way that points nowhere is refused: creating the folder there would fail at the
 * end of the run, after all the work.
 */
function nearestExisting(target: string, shownAs: string): string {
  for (let p = target; ; p = path.dirname(p)) {
    try {
      fs.statSync(p);
      return p;
    } catch (err) {
      const c = code(err);
      if (c !== 'ENOENT' && c !== 'ENOTDIR') throw new InputError(`cannot use the output folder ${shownAs}: ${p} cannot be examined (${c})`);
      let link: string | null = null;
      try {
        if (fs.lstatSync(p).isSymbolicLink()) link = fs.readlinkSync(p);
      } catch { /* not there at all */ }
      if (link !== null) throw new InputError(`cannot use the output folder ${shownAs}: ${p} is a symbolic link to ${link}, which does not exist (remove the link, or create what it points to)`);
    }
    if (path.dirname(p) === p) return p;
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
   * Whether the folder can be written, and the folder reserved for this run. Checks that it is a
   * folder (or that the nearest part of its path that exists is one), that no name in its path is
   * too long, that a folder can really be made where commit() will stage the files (a quick mkdir
   * and rmdir: this catches /proc, read-only file systems and names too long for the staging
   * folder), and takes the folder's lock: a second run into it is refused here, at its start.
   * Throws InputError otherwise. Call it before long work, so that a typo in --out does not cost
   * the whole run. The lock is released at the end of commit(), or when the process ends.
   */
  check(): void {
    const target = path.resolve(this.dir);
    const name = shown(this.dir);
    const long = target.split(path.sep).find((part) => Buffer.byteLength(part) > NAME_MAX);
    if (long !== undefined) {
      throw new InputError(`cannot use the output folder ${name}: the name ${shown(long, 40)} is ${Buffer.byteLength(long)} bytes long, more than the ${NAME_MAX} a file system allows`);
    }
    const p = nearestExisting(target, name);
    if (!fs.statSync(p).isDirectory()) {
      throw new InputError(p === target
        ? `the output path ${name} exists and is not a folder`
        : `cannot create the output folder ${name}: ${p} is a file, so no folder can be made there`);
    }
    try {
      fs.accessSync(p, fs.constants.W_OK);
    } catch {
      throw new InputError(`cannot write to the output folder ${name}: ${p} is not writable`);
    }
    const probe = tmpNameFor(target, p);
    try {
      fs.mkdirSync(probe);
      fs.rmdirSync(probe);
    } catch (err) {
      throw new InputError(`cannot write to the output folder ${name}: making a folder in ${p} failed (${code(err)})`);
    }
    this.lock(target, p);
  }

  /** Takes the lock of output folder `target`, whose nearest existing part is `existing`. */
  private lock(target: string, existing: string): void {
    // inside the folder when it exists; else in the nearest folder above, named after the first missing part
    const file = existing === target
      ? path.join(target, '.writing.lock')
      : path.join(existing, `.${shortName(path.relative(existing, target).split(path.sep)[0])}.writing.lock`);
    if (locks.has(file)) return; // this process holds it already
    let holder: number | null;
    try {
      holder = tryLock(file);
    } catch (err) {
      throw new InputError(`cannot write to the output folder ${shown(this.dir)}: its lock ${file} cannot be made (${code(err)})`);
    }
    if (holder !== null) {
      throw new InputError(`another run (process ${holder}) is writing into the output folder ${shown(this.dir)}: wait until it has finished, `
        + `or choose another folder with --out (if no such run exists, delete ${file})`);
    }
    locks.set(file, target);
  }

  /** Write everything; returns the paths written, in the order they were added. */
  commit(): string[] {
    this.check();
    const target = path.resolve(this.dir);
    try {
      this.writeSet(target);
    } finally {
      for (const [file, t] of locks) {
        if (t !== target) continue;
        removeQuietly(file);
        locks.delete(file);
      }
    }
    return this.names().map((name) => path.join(this.dir, name));
  }

  private writeSet(target: string): void {
    let existed = fs.existsSync(target);
    for (const name of this.files.keys()) {
      const file = path.join(target, name);
      if (fs.existsSync(file) && !fs.statSync(file).isFile()) {
        throw new InputError(`cannot write ${path.join(shown(this.dir), name)}: something that is not a file is in the way`);
      }
    }
    // the staging folder sits next to the target, on the same filesystem, so renames are atomic
    const parent = existed ? target : path.dirname(target);
    const created = existed ? undefined : makeDirs(parent, this.dir);
    const stage = temporaryFor(target, parent);
    try {
      fs.mkdirSync(stage);
      for (const [name, data] of this.files) writeDurably(path.join(stage, name), data);
      fsyncPath(stage);
      if (!existed) {
        try {
          fs.renameSync(stage, target); // the folder appears with every file in it
          fsyncPath(parent);
        } catch (err) {
          // made meanwhile by someone else: then our files go into it like into any existing folder
          if (!['ENOTEMPTY', 'EEXIST'].includes(code(err))) throw err;
          existed = true;
        }
      }
      if (existed) {
        replaceAll(stage, target, this.names(), shown(this.dir));
        fsyncPath(target);
      }
    } catch (err) {
      if (err instanceof MixedSetError) {
        temporaries.delete(stage); // it holds the old files now: never removed automatically
      } else {
        discardTemporary(stage);
        if (created) removeQuietly(created);
      }
      if (err instanceof InputError) throw err;
      const c = (err as NodeJS.ErrnoException).code;
      if (c) throw new InputError(`cannot write the results into ${shown(this.dir)} (${c}: ${(err as Error).message}); nothing was written`);
      throw err;
    }
    discardTemporary(stage); // empty by now, or holding the replaced files
  }
}

/** A set that could not be put back as it was: the message says where the old files are. */
class MixedSetError extends InputError {}

/**
 * Moves the files `names` of `stage` into `target`, replacing the files of those names there,
 * all or none. First every old file is moved aside (into stage/.old), then every new one in; the
 * first move that fails (a file owned by someone else in a sticky folder, an immutable file)
 * undoes all the moves before it. Renames within one file system: nothing is copied.
 */
function replaceAll(stage: string, target: string, names: string[], shownAs: string): void {
  const aside = path.join(stage, '.old');
  fs.mkdirSync(aside);
  const movedAside: string[] = [];
  const movedIn: string[] = [];
  let failed = '';
  try {
    for (const name of names) {
      failed = path.join(target, name);
      if (exists(failed)) {
        fs.renameSync(failed, path.join(aside, name));
        movedAside.push(name);
      }
    }
    for (const name of names) {
      failed = path.join(target, name);
      fs.renameSync(path.join(stage, name), failed);
      movedIn.push(name);
    }
  } catch (err) {
    const stuck: string[] = [];
    const back = (from: string, to: string, name: string) => {
      try {
        fs.renameSync(from, to);
      } catch {
        stuck.push(name);
      }
    };
    // an old file moved back replaces the new one; a new file without an old one is moved out
    for (const name of movedIn) if (!movedAside.includes(name)) back(path.join(target, name), path.join(stage, name), name);
    for (const name of movedAside) back(path.join(aside, name), path.join(target, name), name);
    const why = `cannot replace ${failed} (${code(err)})`;
    if (stuck.length === 0) {
      throw new InputError(`${why}, so the results were not written: ${shownAs} holds the same files as before the run, none of this run's`);
    }
    throw new MixedSetError(`${why}, and putting the folder back as it was failed too (for ${stuck.join(', ')}): ${shownAs} now holds a mix of old and new files; `
      + `the old files are in ${aside}`);
  }
}

/** Whether anything, even a symbolic link that points nowhere, has this name. */
function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
