/**
 * generate.ts --method atp|both on the tiny checkpoint: the estimate it writes is the fixture's
 * attribution patching (test/fixtures/gpt2-tiny/gradients.json, `atp`), the exact matrix beside it
 * the fixture's patching (analysis.json), and `both` adds their comparison and the side-by-side chart.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runScript } from './run_script.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const G = JSON.parse(fs.readFileSync(path.join(here, 'fixtures', 'gpt2-tiny', 'gradients.json'), 'utf8'));
const A = JSON.parse(fs.readFileSync(path.join(here, 'fixtures', 'gpt2-tiny', 'analysis.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'generate-atp-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

const flat = (x: unknown): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x as number]);
function close(got: unknown, want: unknown, what: string, tol: number): void {
  const g = flat(got), w = flat(want);
  assert.is(g.length, w.length, `${what}: ${g.length} cells vs ${w.length}`);
  const worst = Math.max(...w.map((x, i) => Math.abs(g[i] - x) / Math.max(1, Math.abs(x))));
  assert.ok(worst <= tol, `${what}: worst error ${worst}`);
}

test('--method both --patch head: the exact matrix, the estimate, their comparison and the side-by-side chart', async () => {
  const out = path.join(tmp, 'both');
  const r = await runScript('generate.ts', ['--weights', 'test/fixtures/gpt2-tiny', '--out', out, '--method', 'both', '--patch', 'head']);
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'patching.json'), 'utf8'));
  close(j.matrix, A.patching.head_z, 'exact', 1e-4); // analysis.json's own tolerance is 1e-3; we achieve ~1e-6
  close(j.atp_matrix, G.atp.head_z, 'estimate', 1e-5);
  assert.type(j.comparison.correlation, 'number');
  assert.is(j.comparison.worst.length, 5);
  assert.ok(fs.existsSync(path.join(out, 'comparison.vl.json')) && fs.existsSync(path.join(out, 'comparison.svg')));
  assert.match(r.stdout, 'correlation over the cells');
});

test('--method atp --patch resid_pre: the estimate only, labelled as one', async () => {
  const out = path.join(tmp, 'atp');
  const r = await runScript('generate.ts', ['--weights', 'test/fixtures/gpt2-tiny', '--out', out, '--method', 'atp', '--patch', 'resid_pre']);
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'patching.json'), 'utf8'));
  close(j.matrix, G.atp.resid_pre, 'estimate', 1e-5);
  assert.is(j.engine, 'atp');
  assert.match(r.stdout, "attribution patching's estimate");
  assert.not.ok(fs.existsSync(path.join(out, 'comparison.vl.json')));
});

test.run();
