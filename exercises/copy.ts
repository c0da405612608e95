/**
 * Writing a copy of the repository with its task regions rewritten: the student's starter
 * (./starter.ts), and the throwaway variants the checks grade (./verify.ts: one region restored,
 * a mutant, an endless loop).
 *
 * What is copied: every file but version control, dependencies, outputs and downloaded weights.
 * A starter also leaves out the teacher's files (TEACHER_FILES), which hold solution code.
 * A throwaway copy links node_modules and the test fixtures instead of copying them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseRegions, rewriteRegions, type Region } from './regions.ts';

/** Never copied: version control, dependencies (installed or linked), outputs, caches. */
const SKIP = new Set(['.git', 'node_modules', 'out', '.bench']);

/**
 * The teacher's side, left out of a starter: the mutants (solution code, slightly wrong), the checks
 * that use them, and the solution's CI (it checks the solution, not a student's copy).
 */
export const TEACHER_FILES = ['exercises/mutants.ts', 'exercises/verify.ts', 'test/exercises.test.ts', '.ci'];

interface CopyOptions {
  /** the lines to put in a region instead of its body (null: keep the body) */
  region?: (r: Region) => string[] | null;
  /** leave out TEACHER_FILES */
  student?: boolean;
  /** link node_modules and test/fixtures/ to the originals instead of copying (throwaway copies) */
  link?: boolean;
}

function skipped(rel: string, o: CopyOptions): boolean {
  const top = rel.split('/')[0];
  if (SKIP.has(top) || rel.endsWith('.partial')) return true;
  // downloaded weights stay behind; the folder's README comes along
  if (top === 'weights' && rel !== 'weights' && rel !== 'weights/README.md') return true;
  if (o.link && rel === 'test/fixtures') return true;
  return !!o.student && TEACHER_FILES.includes(rel);
}

/** Copies `root` into `dest` (which must not exist), rewriting the regions of .ts files. Returns the files written. */
export function writeCopy(root: string, dest: string, o: CopyOptions = {}): string[] {
  if (fs.existsSync(dest)) throw new Error(`${dest} already exists`);
  const written: string[] = [];
  const walk = (rel: string) => {
    const src = path.join(root, rel);
    for (const e of fs.readdirSync(src, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skipped(r, o)) continue;
      const from = path.join(root, r), to = path.join(dest, r);
      if (e.isDirectory()) {
        fs.mkdirSync(to, { recursive: true });
        walk(r);
      } else if (e.isFile()) {
        if (e.name.endsWith('.ts') && o.region) {
          const text = fs.readFileSync(from, 'utf8');
          fs.writeFileSync(to, parseRegions(r, text).length ? rewriteRegions(r, text, o.region) : text);
        } else {
          fs.copyFileSync(from, to);
        }
        written.push(r);
      }
    }
  };
  fs.mkdirSync(dest, { recursive: true });
  walk('');
  if (o.link) {
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(dest, 'node_modules'), 'dir');
    fs.mkdirSync(path.join(dest, 'test'), { recursive: true });
    fs.symlinkSync(path.join(root, 'test', 'fixtures'), path.join(dest, 'test', 'fixtures'), 'dir');
  }
  return written;
}
