/**
 * generate.ts --method atp|both on the tiny checkpoint: the estimate it writes is the fixture's
 * attribution patching (test/fixtures/gpt2-tiny/gradients.json, `atp`), the exact matrix beside it
 * the fixture's patching (analysis.json), and `both` adds their comparison and the side-by-side chart.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { runScript } from './run_script.ts';
import { ANALYSIS as A, FIXTURE_ARG, FLOAT32_TOL, GRADIENTS as G, closeAll, tempDir } from './helpers.ts';

const tmp = tempDir('generate-atp-');

test('--method both --patch head: the exact matrix, the estimate, their comparison and the side-by-side chart', async () => {
  const out = path.join(tmp, 'both');
  const r = await runScript('generate.ts', ['--weights', FIXTURE_ARG, '--out', out, '--method', 'both', '--patch', 'head']);
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'patching.json'), 'utf8'));
  closeAll(j.matrix, A.patching.head_z, FLOAT32_TOL, 'exact');
  closeAll(j.atp_matrix, G.atp.head_z, FLOAT32_TOL, 'estimate');
  assert.type(j.comparison.correlation, 'number');
  assert.is(j.comparison.worst.length, 5);
  assert.ok(fs.existsSync(path.join(out, 'comparison.vl.json')) && fs.existsSync(path.join(out, 'comparison.svg')));
  assert.match(r.stdout, 'correlation over the cells');
});

test('--method atp --patch resid_pre: the estimate only, labelled as one', async () => {
  const out = path.join(tmp, 'atp');
  const r = await runScript('generate.ts', ['--weights', FIXTURE_ARG, '--out', out, '--method', 'atp', '--patch', 'resid_pre']);
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'patching.json'), 'utf8'));
  closeAll(j.matrix, G.atp.resid_pre, FLOAT32_TOL, 'estimate');
  assert.is(j.engine, 'atp');
  assert.match(r.stdout, "attribution patching's estimate");
  assert.not.ok(fs.existsSync(path.join(out, 'comparison.vl.json')));
});

test.run();
