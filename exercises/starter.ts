/**
 * `npm run starter -- DIR`: write a student's copy of this repository into DIR, every task region
 * replaced by its stub (exercises/README.md, "For teachers").
 *
 *   npm run starter -- ../starter                 # the four experiments
 *   npm run starter -- ../starter --tracks all    # and the optional track that rebuilds the model
 *
 * The copy is written beside DIR under a temporary name and renamed into place at the end, so a
 * failure leaves nothing behind. It leaves out the teacher's files (the mutants and their checks).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { helpText, parseArgs, type CommandSpec } from '../cli/args.ts';
import { runCli } from '../cli/command.ts';
import { InputError, UsageError } from '../io/errors.ts';
import { TASKS, tracksFrom, type ExperimentId } from './catalogue.ts';
import { writeCopy } from './copy.ts';
import { findRegions, regionsByTask, stubLines, type Region } from './regions.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const COMMAND: CommandSpec = {
  usage: 'npm run starter -- DIR',
  description: `
Writes a student's copy of the repository into DIR (which must not exist yet): every task region
(the lines between "// BEGIN TASK <id>" and "// END TASK <id>") holds a stub that stops with
"TASK <id> not done" instead of the solution. npm install and npx tsc --noEmit work there; every
script runs up to the first task it needs that is not written, and npm run grade grades it.`,
  options: {
    tracks: {
      type: 'string', default: 'required', metavar: 'LIST',
      help: "which experiments to stub: 'required' (activation-patching, induction-heads, ioi, circuits), 'all' (also the optional track 'model', which rebuilds layer norm, attention and the MLP: everything else then waits for it), or a comma-separated list",
    },
  },
  epilog: `
examples:
  npm run starter -- ../starter
  npm run starter -- ../starter-model --tracks all`,
};

interface StarterResult {
  dir: string;
  stubbed: string[];
  worked: string[];
  files: number;
}

/** Writes the starter for `tracks` into `dest` from the repository at `root`. */
function makeStarter(root: string, dest: string, tracks: readonly ExperimentId[]): StarterResult {
  const regions = findRegions(root);
  const byTask = regionsByTask(regions);
  const chosen = TASKS.filter((t) => tracks.includes(t.experiment));
  const missing = chosen.filter((t) => !byTask.has(t.id)).map((t) => t.id);
  if (missing.length) throw new InputError(`no region in the source for task${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: were the BEGIN/END TASK lines removed?`);
  const stub = new Set(chosen.filter((t) => !t.worked).map((t) => t.id));
  const target = path.resolve(dest);
  if (fs.existsSync(target)) throw new UsageError(`${dest} already exists; give a folder that does not exist yet`);
  const parent = path.dirname(target);
  if (!fs.existsSync(parent)) throw new UsageError(`the folder ${parent} does not exist`);
  const partial = path.join(parent, `.${path.basename(target)}.${process.pid}.partial`);
  try {
    const files = writeCopy(root, partial, { student: true, region: (r: Region) => (stub.has(r.task) ? stubLines(r) : null) });
    pinTracks(partial, tracks);
    fs.renameSync(partial, target);
    return { dir: target, stubbed: [...stub], worked: chosen.filter((t) => t.worked).map((t) => t.id), files: files.length };
  } catch (err) {
    fs.rmSync(partial, { recursive: true, force: true });
    throw err;
  }
}

/** A copy made for other tracks than the default grades them by default: `npm run grade` there passes --tracks. */
function pinTracks(dir: string, tracks: readonly ExperimentId[]): void {
  const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));
  if (same(tracks, tracksFrom(undefined))) return;
  const file = path.join(dir, 'package.json');
  const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { scripts: Record<string, string> };
  pkg.scripts.grade = `${pkg.scripts.grade} --tracks ${tracks.join(',')}`;
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + '\n');
}

async function main(argv: string[]): Promise<void> {
  const dirs = argv.filter((a, i) => !a.startsWith('-') && !(i > 0 && argv[i - 1] === '--tracks'));
  const a = parseArgs(argv.filter((x) => !dirs.includes(x)), COMMAND);
  if (a.help) {
    process.stdout.write(helpText(COMMAND));
    return;
  }
  if (dirs.length !== 1) throw new UsageError(dirs.length ? `one folder, please (got ${dirs.join(', ')})` : 'give the folder to write the starter into, e.g. npm run starter -- ../starter');
  let tracks: ExperimentId[];
  try {
    tracks = tracksFrom(a.tracks as string);
  } catch (err) {
    throw new UsageError(`--tracks: ${(err as Error).message}`);
  }
  const r = makeStarter(ROOT, dirs[0], tracks);
  process.stdout.write(`wrote the starter into ${r.dir} (${r.files} files): ${r.stubbed.length} tasks to write (${r.stubbed.join(', ')})` +
    (r.worked.length ? `, worked examples ${r.worked.join(', ')}` : '') +
    `\nnext: cd ${path.relative(process.cwd(), r.dir) || '.'} && npm install && npx tsc --noEmit && npm run grade\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await runCli(main, 'npm run starter --');
}
