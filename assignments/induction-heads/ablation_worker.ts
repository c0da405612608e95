/**
 * A worker thread for the MLP ablations (started by ./ablation_pool.ts). It loads the same
 * checkpoint, then takes ablations from the shared list (an Atomics counter) until none is left,
 * writing each result straight into the shared result array. The main thread takes ablations
 * from the same list meanwhile, so the two finish at about the same time.
 */
import { parentPort } from 'node:worker_threads';
import { setKernels } from '../../mingpt/kernels/index.ts';
import { mlpAblation } from './circuit.ts';
import type { AblationJob, AblationReply } from './ablation_pool.ts';
import { loadGPT } from '../../io/load.ts';

if (!parentPort) throw new Error('assignments/induction-heads/ablation_worker.ts is a worker thread entry, not a script');
const port = parentPort;
const reply = (m: AblationReply) => port.postMessage(m);

port.on('message', (job: AblationJob) => {
  try {
    setKernels(job.kernels); // the main thread's choice: the same numbers on every thread
    const model = loadGPT(job.file);
    for (;;) {
      const i = Atomics.add(job.next, 0, 1);
      if (i >= job.tasks.length) break;
      const { layer, mode } = job.tasks[i];
      const r = mlpAblation(model, job.run, layer, mode, () => reply({ type: 'block' }));
      job.results[2 * i] = r.second_half_logprob;
      job.results[2 * i + 1] = r.second_half_accuracy;
    }
    reply({ type: 'done' });
  } catch (err) {
    Atomics.store(job.next, 0, job.tasks.length); // nobody takes more work
    const e = err instanceof Error ? err : new Error(String(err));
    reply({ type: 'error', message: e.message, stack: e.stack });
  }
});
