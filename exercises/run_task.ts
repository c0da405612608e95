/**
 * One task's checks, in a process of its own (./grade.ts starts it, with a time limit):
 *
 *   node --import tsx exercises/run_task.ts TASK RESULT_FILE [KEY_DIR]
 *
 * writes the task's result as JSON to RESULT_FILE. Whatever the student's code prints goes to
 * this process's own output, which the grader keeps apart from the result.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setKernels } from '../mingpt/kernels/index.ts';
import { taskById } from './catalogue.ts';
import { StubReached, TaskRun, describeError, stubTask, type TestOutcome } from './harness.ts';
import { loadReference } from './reference.ts';
import { makeContext, type TaskChecks } from './context.ts';

type TaskStatus = 'passed' | 'failed' | 'not done' | 'blocked' | 'timeout' | 'crashed';

export interface TaskResult {
  task: string;
  status: TaskStatus;
  tests: TestOutcome[];
  /** for not done, blocked, timeout and crashed: what happened */
  message?: string;
  seconds: number;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The checks of a task, from its experiment's module (imported only when that task runs). */
async function checksOf(id: string): Promise<TaskChecks> {
  const modules: Record<string, () => Promise<{ CHECKS: Record<string, TaskChecks> }>> = {
    'activation-patching': () => import('./checks/activation_patching.ts'),
    'induction-heads': () => import('./checks/induction_heads.ts'),
    ioi: () => import('./checks/ioi.ts'),
    circuits: () => import('./checks/circuits.ts'),
    model: () => import('./checks/model.ts'),
  };
  const checks = (await modules[taskById(id).experiment]()).CHECKS[id];
  if (!checks) throw new Error(`internal: no checks for task ${id}`);
  return checks;
}

async function runTask(id: string, keyDir: string | undefined): Promise<TaskResult> {
  const start = performance.now();
  const run = new TaskRun();
  const done = (status: TaskStatus, message?: string): TaskResult => ({ task: id, status, tests: run.outcomes, message, seconds: (performance.now() - start) / 1000 });
  // Each experiment's checks pick what they need; the model runs on the default kernels, which
  // the optional track's checks do not change (they call the readable kernels directly).
  setKernels('simd');
  const checks = await checksOf(id);
  const context = makeContext(loadReference(ROOT, keyDir));
  try {
    await checks(run, context);
  } catch (err) {
    const stub = err instanceof StubReached ? err.task : stubTask(err);
    if (stub !== null) {
      const message = (err as Error).message;
      return stub === id ? done('not done', message) : done('blocked', `needs task ${stub} first: ${message}`);
    }
    return done('crashed', describeError(err));
  }
  const passed = run.outcomes.length > 0 && run.outcomes.every((o) => o.status === 'passed');
  return done(passed ? 'passed' : 'failed');
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const [id, resultFile, keyDir] = process.argv.slice(2);
  const result = await runTask(id, keyDir || undefined);
  fs.writeFileSync(resultFile, JSON.stringify(result));
  // worker threads of the SIMD kernels must not keep the process alive
  process.exit(0);
}
