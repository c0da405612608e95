/**
 * Naming attention heads: "layer.head" (e.g. "9.9" is head 9 of layer 9), the way the
 * interpretability papers and TransformerLens's users write them. Used by path patching,
 * knockouts and the experiments that print or read lists of heads.
 */
import { quotedText } from '../io/show.ts';

/** One attention head: its layer and its index within the layer. */
export interface HeadRef {
  layer: number;
  head: number;
}

/** "layer.head" */
export function headName(h: HeadRef): string {
  return `${h.layer}.${h.head}`;
}

/**
 * "layer.head" -> HeadRef. Throws a RangeError naming the text when it is not of that form (the
 * scripts turn it into a message about the option or the file it came from).
 */
export function parseHead(text: string): HeadRef {
  const m = /^\s*(\d+)\.(\d+)\s*$/.exec(text);
  if (!m) throw new RangeError(`a head is written LAYER.HEAD, e.g. 9.9; got ${quotedText(text)}`);
  return { layer: Number(m[1]), head: Number(m[2]) };
}

/** Every head of a model with L layers of nh heads, layer by layer. */
export function allHeads(L: number, nh: number): HeadRef[] {
  const out: HeadRef[] = [];
  for (let l = 0; l < L; l++) for (let h = 0; h < nh; h++) out.push({ layer: l, head: h });
  return out;
}

/** Whether the head exists in a model with L layers of nh heads. */
export function headExists(h: HeadRef, L: number, nh: number): boolean {
  return Number.isInteger(h.layer) && Number.isInteger(h.head) && h.layer >= 0 && h.layer < L && h.head >= 0 && h.head < nh;
}
