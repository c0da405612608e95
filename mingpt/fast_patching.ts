// Placeholder until the fast engine lands: gives the reference result.
import { referencePatchingSweep, type PatchingInput, type PatchingOptions, type PatchingResult } from './patching.ts';
import type { GPT } from './model.ts';
export async function fastPatchingSweep(model: GPT, input: PatchingInput, opts: PatchingOptions = {}): Promise<PatchingResult> {
  return referencePatchingSweep(model, input, opts);
}
