/**
 * Loading a GPT-2-layout checkpoint into the model of ../mingpt/model.ts: the TypeScript half of
 * minGPT's `GPT.from_pretrained`, which builds the model and then copies each tensor of the Hugging
 * Face model into it by name, transposing the Conv1D weights. `GPT.from_pretrained('gpt2')` calls
 * `loadPretrained` here (lazily, as minGPT imports transformers inside that method).
 */
import { GPT } from '../mingpt/model.ts';
import { Checkpoint, CheckpointError } from './checkpoint.ts';
import path from 'node:path';
import { defaultWeightsDir, ensurePretrained } from './pretrained.ts';
import { quoted } from './show.ts';

/**
 * Load a GPT-2-layout checkpoint in the Hugging Face safetensors format: a directory with
 * model.safetensors and config.json, or the .safetensors file with config.json beside it.
 * `untie_lm_head`: give lm_head.weight a place of its own, a copy of wte.weight when the checkpoint
 * has none, as minGPT's from_pretrained does (training then updates the two apart; by default
 * they share one buffer, as GPT-2 ties them).
 */
export function loadGPT(fileOrDir: string, opts: { untie_lm_head?: boolean } = {}): GPT {
  const ckpt = Checkpoint.open(fileOrDir);
  try {
    const hp = ckpt.hparams;
    const config = GPT.get_default_config();
    config.model_type = null;
    config.merge_from_dict({
      n_layer: hp.n_layer, n_head: hp.n_head, n_embd: hp.n_embd,
      vocab_size: hp.vocab_size, block_size: hp.block_size, layer_norm_epsilon: hp.layer_norm_epsilon,
    });
    // GPT-2 ties lm_head to wte; a checkpoint that stores its own lm_head gets its own copy
    const ownHead = ckpt.has('lm_head.weight');
    const model = new GPT(config, { init: false, tie_lm_head: !ownHead && !opts.untie_lm_head });
    // the Conv1D-vs-Linear transpose, the "transformer." prefix and dtype conversion are the
    // checkpoint reader's job; here every parameter is asked for by name and shape
    for (const [name, view, shape] of model.named_parameters) {
      if (name === 'lm_head.weight' && !ownHead) view.set(model.transformer.wte); // untied: a copy
      else ckpt.readInto(name, view, shape);
    }
    // like minGPT's from_pretrained, insist that the two sets of names match exactly
    const unused = ckpt.unusedTensors();
    if (unused.length)
      throw new CheckpointError(`${ckpt.file}: tensors the GPT-2 layout has no place for: ${unused.slice(0, 5).map((k) => quoted(k)).join(', ')}${unused.length > 5 ? ` (and ${unused.length - 5} more)` : ''}`);
    model.source = { file: ckpt.file, raw_config: hp.raw };
    return model;
  } finally {
    ckpt.close();
  }
}

/** GPT-2 by name: found in weights/<name>/ or the Hugging Face cache, or downloaded (./pretrained.ts). */
export async function loadPretrained(model_type: string): Promise<GPT> {
  const dir = await ensurePretrained(model_type);
  let model: GPT;
  try {
    model = loadGPT(dir);
  } catch (err) {
    // a copy that was damaged after it was downloaded (or placed there by hand) fails every run: say how to start over
    if (err instanceof CheckpointError && path.resolve(dir).startsWith(defaultWeightsDir() + path.sep)) {
      throw new CheckpointError(`${err.message}\nThis is the copy of ${model_type} in ${dir}: delete that folder to download it again.`, { cause: err });
    }
    throw err;
  }
  model.config.model_type = model_type;
  return model;
}
