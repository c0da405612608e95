// Test helper (not a test file): where the fixtures are, the PyTorch reference files read once,
// and the one tolerance check every test uses, close(actual, expected, tol, what).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';
import { kernelThreadItems, kernelThreads, setKernelThreads, stopKernelThreads } from '../mingpt/kernels/simd/threads.ts';

/** The repository's root: the scripts run from here, and FIXTURE_ARG is relative to it. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The tiny random checkpoint with GPT-2's layout and its references (test/fixtures/README.md). */
export const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'gpt2-tiny');
/** FIXTURE as a user types it on a script's command line (relative to ROOT). */
export const FIXTURE_ARG = path.relative(ROOT, FIXTURE);
/** The IOI prompts of analysis.json's `group` and `knockout` entries, as a --prompts file. */
export const IOI_GROUP_FILE = path.join(ROOT, 'test', 'fixtures', 'ioi-group.json');

/** Temporary folders made by tempDir, removed together when the test process ends. */
const tempDirs: string[] = [];
/** A fresh temporary folder for one test file's outputs, removed at exit (one listener for all of them). */
export function tempDir(prefix: string): string {
  if (tempDirs.length === 0) process.on('exit', () => { for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true }); });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));
/** reference.json: an independent PyTorch (float32) GPT-2 on the fixture's two cases. */
export const REFERENCE = readJson(path.join(FIXTURE, 'reference.json'));
/** analysis.json: the interpretability instruments in PyTorch (definitions in test/fixtures/ANALYSIS.md). */
export const ANALYSIS = readJson(path.join(FIXTURE, 'analysis.json'));
/** gradients.json: the backward pass and the attributions built on it, by PyTorch autograd (test/fixtures/GRADIENTS.md). */
export const GRADIENTS = readJson(path.join(FIXTURE, 'gradients.json'));

/**
 * The tolerance against the float32 PyTorch fixtures (reference.json, analysis.json's activations,
 * patching, attribution, path patching and knockouts). The float32 forward pass agrees with them to
 * 2.3e-6 at worst (block 2's attention scores; most values to 1e-6, both kernels), so 1e-5 leaves
 * room for another summation order while any real mistake stays far outside it.
 */
export const FLOAT32_TOL = 1e-5;

/**
 * The error of `actual` against `expected`, |actual − expected| / max(1, |expected|): absolute for
 * values up to 1 in size, relative above, since float32 keeps about 7 significant digits at any size.
 */
function error(actual: number, expected: number): number {
  return Math.abs(actual - expected) / Math.max(1, Math.abs(expected));
}

/** Asserts that `actual` is within `tol` of `expected` (see error()); NaN never is. */
export function close(actual: number, expected: number, tol: number, what: string): void {
  const err = error(actual, expected);
  assert.ok(err <= tol, `${what}: ${actual} vs reference ${expected} (error ${err.toExponential(2)}, tolerance ${tol})`);
}

type List = ArrayLike<unknown>;
const isList = (x: unknown): x is List => Array.isArray(x) || (ArrayBuffer.isView(x) && !(x instanceof DataView));

/**
 * close() over nested arrays (plain or typed) of the same shape, reporting the worst entry. A null
 * in the reference stands for a masked entry (−∞, which JSON cannot hold): the actual entry must be
 * null or −∞ there.
 */
export function closeAll(actual: unknown, expected: unknown, tol: number, what: string): void {
  let worst = 0, where = '', got: unknown, want: unknown;
  const walk = (a: unknown, e: unknown, at: string): void => {
    if (isList(e)) {
      assert.ok(isList(a) && a.length === e.length, `${what}${at}: length ${isList(a) ? a.length : typeof a} vs ${e.length} in the reference`);
      for (let i = 0; i < e.length; i++) walk(a[i], e[i], `${at}[${i}]`);
      return;
    }
    if (e === null) {
      assert.ok(a === null || a === -Infinity, `${what}${at}: ${a}, where the reference is masked (−∞)`);
      return;
    }
    const err = typeof a === 'number' && typeof e === 'number' ? error(a, e) : NaN;
    if (!(err <= worst) && !Number.isNaN(worst)) [worst, where, got, want] = [err, at, a, e];
  };
  walk(actual, expected, '');
  assert.ok(worst <= tol, `${what}${where}: ${got} vs reference ${want} (error ${worst.toExponential(2)}, tolerance ${tol})`);
}

/**
 * run() with one kernel thread, then with two until a helper thread has taken items of the jobs
 * (helpers start in the background, so the first runs may have none): both results, to compare
 * bit for bit. Fails if no helper took part; leaves the thread setting as it was, helpers stopped.
 */
export async function oneThreadThenTwo<R>(run: () => R): Promise<[R, R]> {
  const saved = kernelThreads();
  try {
    setKernelThreads(1);
    const one = run();
    setKernelThreads(2);
    const before = kernelThreadItems().helpers;
    let two = run();
    for (let i = 0; i < 100 && kernelThreadItems().helpers === before; i++) {
      await new Promise((r) => setTimeout(r, 20));
      two = run();
    }
    assert.ok(kernelThreadItems().helpers > before, 'a helper thread took items');
    return [one, two];
  } finally {
    setKernelThreads(saved);
    await stopKernelThreads();
  }
}
