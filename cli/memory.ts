/**
 * Giving memory back between the steps of a long command (generate.ts): the tokenizer's
 * construction leaves tens of MB of garbage behind, and GPT-2's 500 MB of weights are not needed
 * any more once the sweep is done, while drawing the charts still allocates. V8 frees such memory
 * only when it decides to collect, which may be after the next peak; `collectGarbage()` asks for
 * a full collection now, so the peak stays near the weights' own size (see `npm run bench`).
 *
 * Node exposes `gc()` only with the --expose-gc flag. Setting that flag at run time is allowed
 * (v8.setFlagsFromString), and a fresh vm context then has the function. Where that fails,
 * collectGarbage() does nothing: the program works the same, with a higher peak.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | null | undefined; // undefined: not looked up yet; null: not available

/** A full garbage collection, now, if the runtime allows it; otherwise nothing. */
export function collectGarbage(): void {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      const fn: unknown = vm.runInNewContext('gc');
      gc = typeof fn === 'function' ? (fn as () => void) : null;
    } catch {
      gc = null;
    }
  }
  gc?.();
}
