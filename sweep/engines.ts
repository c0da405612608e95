/**
 * The assignment's block-output sweep with a choice of engine: `reference` (./sweep.ts, one full
 * forward per cell, the readable algorithm) or `fast` (./fast_patching.ts, the same matrix for a
 * fraction of the work). generate.ts calls these.
 */
import type { GPT } from '../mingpt/model.ts';
import { checkPatchingInput, referencePatchingSweep, type PatchingInput, type PatchingOptions, type PatchingResult } from './sweep.ts';
import { endFastSweeps, fastPatchingSweep, prepareFastSweep } from './fast.ts';

export async function patchingSweep(model: GPT, input: PatchingInput, opts: PatchingOptions = {}): Promise<PatchingResult> {
  checkPatchingInput(model, input);
  return (opts.engine ?? 'reference') === 'fast' ? fastPatchingSweep(model, input, opts) : referencePatchingSweep(model, input, opts);
}

/**
 * Optional, before a sweep: lets the engine start what it needs in the background (the fast
 * engine's worker threads) while the caller does other work. The result is the same without it.
 */
export async function prepareSweep(model: GPT, input: PatchingInput, opts: PatchingOptions = {}): Promise<void> {
  if ((opts.engine ?? 'reference') === 'fast') prepareFastSweep(model, input, opts);
}

/** Optional, after the last sweep: ends the fast engine's idle worker threads, freeing their memory. */
export async function endSweeps(): Promise<void> {
  await endFastSweeps();
}
