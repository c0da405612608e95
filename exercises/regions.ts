/**
 * Task regions in the source: a line `// BEGIN TASK <id>…` and a line `// END TASK <id>`, and
 * what the starter puts between them. Everything here reads text; nothing runs the code.
 *
 * Regions are found by scanning the source (not by where the catalogue says they are), so a region
 * that moved to another function or file is still found; test/exercises.test.ts checks that the
 * catalogue's file names still match.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TASK_NOT_DONE } from '../cli/command.ts';
import { InputError } from '../io/errors.ts';
import { taskById, type Task } from './catalogue.ts';

export interface Region {
  task: string;
  /** path relative to the repository root, with / separators */
  file: string;
  /** 0-based line numbers of the BEGIN and END lines */
  begin: number;
  end: number;
  /** the BEGIN line's indentation, used for the stub */
  indent: string;
  /** the lines strictly between BEGIN and END */
  body: string[];
}

const BEGIN = /^(\s*)\/\/\s*BEGIN TASK ([\w.]+)\b/;
const END = /^\s*\/\/\s*END TASK ([\w.]+)\b/;

/** A marker problem: names the file and line (an InputError, so the commands print it without a stack). */
export class RegionError extends InputError {
  constructor(message: string) {
    super(message);
    this.name = 'RegionError';
  }
}

/** The regions of one file's text, in order. Throws RegionError for unmatched or nested markers. */
export function parseRegions(file: string, text: string): Region[] {
  const lines = text.split('\n');
  const out: Region[] = [];
  let open: { task: string; begin: number; indent: string } | null = null;
  lines.forEach((line, i) => {
    const b = BEGIN.exec(line), e = END.exec(line);
    if (b) {
      if (open) throw new RegionError(`${file}:${i + 1}: BEGIN TASK ${b[2]} inside TASK ${open.task} (opened at line ${open.begin + 1}); regions do not nest`);
      open = { task: b[2], begin: i, indent: b[1] };
    } else if (e) {
      if (!open) throw new RegionError(`${file}:${i + 1}: END TASK ${e[1]} without a BEGIN TASK before it`);
      if (open.task !== e[1]) throw new RegionError(`${file}:${i + 1}: END TASK ${e[1]} closes TASK ${open.task} (opened at line ${open.begin + 1})`);
      out.push({ task: open.task, file, begin: open.begin, end: i, indent: open.indent, body: lines.slice(open.begin + 1, i) });
      open = null;
    }
  });
  if (open) {
    const o = open as { task: string; begin: number };
    throw new RegionError(`${file}:${o.begin + 1}: BEGIN TASK ${o.task} is never closed by an END TASK ${o.task} line`);
  }
  return out;
}

/** Folders that never hold task regions (tests, the exercises themselves, outputs, dependencies). */
const SKIP_DIRS = new Set(['node_modules', 'test', 'exercises', 'out', 'weights']);

/** The TypeScript source files that may hold regions, relative to root, with / separators. */
function sourceFiles(root: string, dir = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) {
      if (!e.name.startsWith('.') && !SKIP_DIRS.has(e.name)) out.push(...sourceFiles(root, rel));
    } else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out.sort();
}

/** Every region of the repository at `root`, with the tasks they belong to checked against the catalogue. */
export function findRegions(root: string): Region[] {
  const regions = sourceFiles(root).flatMap((f) => parseRegions(f, fs.readFileSync(path.join(root, f), 'utf8')));
  for (const r of regions) {
    try {
      taskById(r.task);
    } catch {
      throw new RegionError(`${r.file}:${r.begin + 1}: TASK ${r.task} is not in exercises/catalogue.ts`);
    }
  }
  return regions;
}

/** The regions of each task (a task may have more than one), in source order. */
export function regionsByTask(regions: readonly Region[]): Map<string, Region[]> {
  const m = new Map<string, Region[]>();
  for (const r of regions) m.set(r.task, [...(m.get(r.task) ?? []), r]);
  return m;
}

/** What a stub says: the task, where to write it, and where to read about it. */
function notDoneMessage(task: Task, file: string): string {
  const msg = `TASK ${task.id} not done: ${task.title}. Write it in ${file} (${task.where}), between the BEGIN and END TASK ${task.id} lines; exercises/README.md says what to read first.`;
  if (!TASK_NOT_DONE.test(msg)) throw new Error('internal: the stub message no longer matches cli/command.ts\'s TASK_NOT_DONE');
  return msg;
}

/** The lines a starter puts between a region's markers. */
export function stubLines(region: Region): string[] {
  const task = taskById(region.task);
  const msg = JSON.stringify(notDoneMessage(task, region.file));
  if (task.stub?.kind === 'unset') {
    // the value stays unset: reading it (not computing it) is what stops a script
    return [`${region.indent}${task.stub.target} = new Proxy(new Float32Array(0), { get() { throw new Error(${msg}); } });`];
  }
  return [`${region.indent}throw new Error(${msg});`];
}

/**
 * `text` (the file `file`) with each region's body replaced by `replace(region)`; a region for
 * which it returns null keeps its body. The marker lines stay.
 */
export function rewriteRegions(file: string, text: string, replace: (r: Region) => string[] | null): string {
  const regions = parseRegions(file, text);
  if (regions.length === 0) return text;
  const lines = text.split('\n');
  const out: string[] = [];
  let next = 0;
  for (const r of regions) {
    out.push(...lines.slice(next, r.begin + 1));
    out.push(...(replace(r) ?? r.body));
    next = r.end;
  }
  out.push(...lines.slice(next));
  return out.join('\n');
}
