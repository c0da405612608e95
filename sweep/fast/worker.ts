/**
 * A worker thread of the fast patching engine (started by ./pool.ts). For each job: build views
 * of the shared weights, take a base run if one is still unclaimed, wait until both are done,
 * then take batches of patched runs from the shared list until it is empty, writing each cell
 * straight into the shared result.
 */
import { parentPort } from 'node:worker_threads';
import { FastGPT } from './engine.ts';
import { attachParams, detachParams, setKernels } from '../../mingpt/kernels/index.ts';
import { SYNC_ABORT, SYNC_NEXT, abortJob, takeBaseRuns, waitForBaseRuns, type SweepJob, type WorkerReply } from './protocol.ts';

if (!parentPort) throw new Error('sweep/fast/worker.ts is a worker thread entry, not a script');
const port = parentPort;
const reply = (m: WorkerReply) => port.postMessage(m);

port.on('message', (job: SweepJob) => {
  const { sync, ctx } = job;
  let params: Float32Array | null = null;
  try {
    setKernels(job.kernels);
    params = attachParams(job.params, job.memory); // the same weights, as this thread's view of the Memory
    const engine = new FastGPT(params, job.spec);
    // the main thread starts with the clean run: take the corrupted one if it is still free
    if (takeBaseRuns(engine, job, ['corrupt', 'clean']) > 0) reply({ type: 'base' });
    waitForBaseRuns(sync);
    const T = ctx.T;
    while (!Atomics.load(sync, SYNC_ABORT)) {
      const i = Atomics.add(sync, SYNC_NEXT, 1);
      if (i >= job.units.length) break;
      const unit = job.units[i];
      const d = engine.runUnit(unit, ctx);
      for (let j = 0; j < d.length; j++) job.diffs[unit.layer * T + unit.positions[j]] = d[j];
      reply({ type: 'unit', runs: d.length });
    }
    reply({ type: 'done' });
  } catch (err) {
    abortJob(sync);
    const e = err instanceof Error ? err : new Error(String(err));
    reply({ type: 'error', message: e.message, stack: e.stack });
  } finally {
    if (params) detachParams(params); // its scratch area in the Memory, for the next thread
  }
});

reply({ type: 'ready' });
