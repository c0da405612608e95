/**
 * The assignment's block-output sweep with a choice of engine: `reference` (./sweep.ts, one full
 * forward per cell, the readable algorithm) or `fast` (./fast.ts, the same matrix for a fraction
 * of the work). generate.ts calls this.
 */
import type { GPT } from '../mingpt/model.ts';
import { checkPatchingInput, referencePatchingSweep, type PatchingInput, type PatchingOptions, type PatchingResult } from './sweep.ts';
import { fastPatchingSweep } from './fast.ts';

export async function patchingSweep(model: GPT, input: PatchingInput, opts: PatchingOptions = {}): Promise<PatchingResult> {
  checkPatchingInput(model, input);
  return (opts.engine ?? 'reference') === 'fast' ? fastPatchingSweep(model, input, opts) : referencePatchingSweep(model, input, opts);
}
