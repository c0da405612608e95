/**
 * The teacher's key: `npm run grade -- --make-key --weights DIR [--cases FILE] [--prompts FILE] --out KEY`,
 * run in the solution. It computes, with the solution's own instruments, every number the checks
 * compare, for another checkpoint and for texts the students never saw, and writes them in the
 * fixtures' formats (./reference.ts): numbers only, and the checkpoint they belong to. No code.
 *
 * The key is written under a temporary name beside KEY and renamed at the end, so a failure
 * leaves nothing behind.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { NdArray } from 'ndarray';
import { BPETokenizer } from '../mingpt/bpe.ts';
import type { GPT } from '../mingpt/model.ts';
import { loadGPT } from '../io/load.ts';
import { InputError } from '../io/errors.ts';
import { run_with_cache } from '../lens/activation_cache.ts';
import { get_act_patch_attn_head_out_all_pos, get_act_patch_resid_post, get_act_patch_resid_pre, logitDiffMetric, type PatchResult } from '../lens/patching.ts';
import { pathPatch } from '../lens/path_patching.ts';
import { Knockout, evaluateCircuit } from '../lens/knockout.ts';
import { headName, parseHead, type HeadRef } from '../lens/heads.ts';
import { Weights } from '../lens/weights.ts';
import { compositionScores, copyingScores, positionalQK } from '../lens/circuits.ts';
import { tokenizeInputs } from '../assignments/activation-patching/experiment.ts';
import { loadPromptsFile, tokenizePrompts, type PromptGroup } from '../assignments/ioi/dataset.ts';
import { readPromptsExtras } from '../assignments/ioi/ioi.ts';
import { detectHeads, repeatedTokens, stripeOf, stripeScore } from '../assignments/induction-heads/scores.ts';
import { KEY_FILES, type AnalysisJson, type Case, type GroupJson, type KeyExtra, type ReferenceJson } from './reference.ts';

interface MakeKeyOptions {
  /** the repository (for the default cases and prompts: the fixtures') */
  root: string;
  weights: string;
  out: string;
  cases?: string;
  prompts?: string;
}

interface CaseText { clean: string; corrupt: string; clean_token: string; corrupt_token: string }

const GPT2_VOCAB = 50257;

/** An activation (batch row 0 kept as a batch of one) as nested arrays, −∞ as null. */
function nestedOf(a: NdArray<Float32Array>): unknown {
  const build = (dim: number, offset: number): unknown => {
    if (dim === a.shape.length) { const v = a.data[offset]; return v === -Infinity ? null : v; }
    return Array.from({ length: dim === 0 ? 1 : a.shape[dim] }, (_, i) => build(dim + 1, offset + i * a.stride[dim]));
  };
  return build(0, a.offset);
}

const grid = (r: PatchResult, cols: number): number[][] => Array.from({ length: r.shape[0] }, (_, l) => r.data.slice(l * cols, (l + 1) * cols));
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function readCases(file: string): CaseText[] {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InputError(`--cases ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid JSON (${(err as Error).message})`}`);
  }
  if (!Array.isArray(json) || json.length === 0) throw new InputError(`--cases ${file}: expected a list of {clean, corrupt, clean_token, corrupt_token}, like test/fixtures/gpt2-tiny/cases.json`);
  return json.map((c, i) => {
    for (const f of ['clean', 'corrupt', 'clean_token', 'corrupt_token']) {
      if (typeof (c as Record<string, unknown>)?.[f] !== 'string') throw new InputError(`--cases ${file}: case ${i} has no "${f}" text`);
    }
    return c as CaseText;
  });
}

/** A case's numbers in reference.json's format; the patch matrix by the generic patch (resid_post). */
function caseNumbers(model: GPT, bpe: BPETokenizer, c: CaseText, where: string): Case {
  const t = tokenizeInputs(bpe, { clean: c.clean, corrupt: c.corrupt, cleanToken: c.clean_token, corruptToken: c.corrupt_token });
  const T = t.clean_ids.length, V = model.config.vocab_size;
  if (T > model.block_size) throw new InputError(`${where}: ${T} tokens, more than the checkpoint's context of ${model.block_size}`);
  const clean = run_with_cache(model, t.clean_ids, { names: (n) => n.endsWith('hook_resid_post') });
  const last = clean.logits.data.slice((T - 1) * V, T * V);
  const corruptLast = model.forward(t.corrupt_ids, { logits_at: [T - 1] }).logits.data;
  const metric = logitDiffMetric(t.corrupt_token_id, t.clean_token_id);
  let sum = 0;
  for (let i = 0; i < V; i++) sum += last[i];
  return {
    ...c, clean_ids: t.clean_ids, corrupt_ids: t.corrupt_ids, clean_token_id: t.clean_token_id, corrupt_token_id: t.corrupt_token_id,
    clean_logit_diff: last[t.corrupt_token_id] - last[t.clean_token_id],
    corrupt_logit_diff: corruptLast[t.corrupt_token_id] - corruptLast[t.clean_token_id],
    clean_last_logits_sum: sum,
    clean_last_logits_first8: Array.from(last.subarray(0, 8)),
    patch_matrix: grid(get_act_patch_resid_post(model, t.corrupt_ids, clean.cache, metric), T),
  };
}

/** The hook points the checks read: every block's input and output, and block 0's insides. */
function keyHooks(L: number): string[] {
  const names: string[] = [];
  for (let l = 0; l < L; l++) names.push(`blocks.${l}.hook_resid_pre`, `blocks.${l}.hook_resid_post`);
  for (const n of ['ln1.hook_scale', 'ln1.hook_normalized', 'attn.hook_q', 'attn.hook_k', 'attn.hook_v', 'attn.hook_attn_scores', 'attn.hook_z',
    'ln2.hook_normalized', 'mlp.hook_pre', 'mlp.hook_post', 'hook_mlp_out']) names.push(`blocks.0.${n}`);
  return names;
}

/** The heads of a list, checked against the model. */
function headList(names: readonly string[], L: number, nh: number, what: string): HeadRef[] {
  return names.map((n) => {
    const h = parseHead(n);
    if (!(h.layer < L && h.head < nh)) throw new InputError(`${what}: head ${n} does not exist in a model of ${L} layers × ${nh} heads`);
    return h;
  });
}

/** The IOI group: the largest group of one token length, with the circuit, the completeness sets and the name movers. */
function chooseGroup(model: GPT, bpe: BPETokenizer, file: string): { g: PromptGroup; extras: ReturnType<typeof readPromptsExtras> } {
  const groups = tokenizePrompts(loadPromptsFile(file), bpe);
  const g = [...groups].sort((a, b) => b.prompts.length - a.prompts.length)[0];
  if (g.prompts.length < 2) throw new InputError(`--prompts ${file}: no two prompts have one token length; knockouts need a group of at least 2`);
  if (g.T > model.block_size) throw new InputError(`--prompts ${file}: the prompts are ${g.T} tokens, more than the checkpoint's context of ${model.block_size}`);
  return { g, extras: readPromptsExtras(file) };
}

export async function makeKey(o: MakeKeyOptions): Promise<{ dir: string; files: string[]; seconds: number }> {
  const start = performance.now();
  const out = path.resolve(o.out);
  if (fs.existsSync(out)) throw new InputError(`--out ${o.out} already exists; give a folder that does not exist yet`);
  if (!fs.existsSync(path.dirname(out))) throw new InputError(`--out ${o.out}: the folder ${path.dirname(out)} does not exist`);
  const model = loadGPT(o.weights);
  const { n_layer: L, n_head: nh, n_embd: C, vocab_size: V, block_size } = model.config;
  if (V !== GPT2_VOCAB) throw new InputError(`--weights ${o.weights}: a vocabulary of ${V}; the exercises use GPT-2's tokenizer (${GPT2_VOCAB} tokens)`);
  const bpe = new BPETokenizer();
  const casesFile = o.cases ?? path.join(o.root, 'test', 'fixtures', 'gpt2-tiny', 'cases.json');
  const cases = readCases(casesFile).map((c, i) => caseNumbers(model, bpe, c, `${o.cases ? '--cases ' + o.cases : 'the fixtures\' cases'}: case ${i}`));
  const k = cases[0], T = k.clean_ids.length;

  // analysis.json: the first case
  const hooks = run_with_cache(model, k.clean_ids, { names: keyHooks(L) });
  const corruptRun = model.forward(k.corrupt_ids, { logits_at: [T - 1] }).logits.data;
  const metric = logitDiffMetric(k.corrupt_token_id, k.clean_token_id);
  const full = run_with_cache(model, k.clean_ids, { names: (n) => n.endsWith('hook_resid_pre') || n.endsWith('hook_resid_post') || n.endsWith('attn.hook_z') }).cache;
  const pair = { orig: [k.clean_ids], new: [k.corrupt_ids], token: [k.corrupt_token_id], other: [k.clean_token_id] };
  const toLogits = pathPatch(model, pair);
  const toQ = pathPatch(model, pair, { receivers: Array.from({ length: nh }, (_, h) => ({ layer: L - 1, head: h })), receiverPositions: 'all' });

  // the IOI group
  const promptsFile = o.prompts ?? path.join(o.root, 'test', 'fixtures', 'ioi-group.json');
  const { g, extras } = chooseGroup(model, bpe, promptsFile);
  const where = o.prompts ? `--prompts ${o.prompts}` : 'the fixtures\' ioi-group.json';
  const circuit = headList(extras.circuit ?? [`0.0`, `${L - 1}.${nh - 1}`, ...(L > 1 ? [`${Math.floor(L / 2)}.${Math.min(1, nh - 1)}`] : [])], L, nh, `${where}: circuit`);
  const uniq = [...new Map(circuit.map((h) => [headName(h), h])).values()];
  const sets = (extras.completeness_sets ?? uniq.map((h) => [headName(h)])).map((s) => headList(s, L, nh, `${where}: completeness_sets`));
  const movers = headList(extras.name_movers ?? Array.from({ length: Math.min(2, nh) }, (_, h) => `${L - 1}.${h}`), L, nh, `${where}: name_movers`);
  const clean = g.prompts.map((p) => p.clean_ids), corrupt = g.prompts.map((p) => p.corrupt_ids);
  const io = g.prompts.map((p) => p.io_id), s = g.prompts.map((p) => p.s_id);
  const ko = new Knockout(model, [{ clean, corrupt, token: io, other: s }]);
  const ev = evaluateCircuit(ko, uniq, { completeness_sets: sets });
  const gCache = run_with_cache(model, clean, { names: (n) => n.endsWith('attn.hook_z') }).cache;
  const gLogits = model.forward(clean, { logits_at: [g.T - 1] }).logits.data;
  const gPath = pathPatch(model, { orig: clean, new: corrupt, token: io, other: s }, { receivers: movers, receiverPositions: 'end' });

  // the weight circuits
  const w = new Weights(model, true);
  const comp = compositionScores(w);

  const analysis: AnalysisJson = {
    case: { clean: k.clean, corrupt: k.corrupt, clean_token: k.clean_token, corrupt_token: k.corrupt_token, clean_ids: k.clean_ids, corrupt_ids: k.corrupt_ids, clean_token_id: k.clean_token_id, corrupt_token_id: k.corrupt_token_id },
    hooks: Object.fromEntries(keyHooks(L).map((n) => [n, nestedOf(hooks.cache.get(n))])),
    metric: { clean: k.clean_logit_diff, corrupt: corruptRun[k.corrupt_token_id] - corruptRun[k.clean_token_id] },
    patching: {
      resid_pre: grid(get_act_patch_resid_pre(model, k.corrupt_ids, full, metric), T),
      resid_post: k.patch_matrix,
      head_z: grid(get_act_patch_attn_head_out_all_pos(model, k.corrupt_ids, full, metric), nh),
    },
    path_patching: {
      to_logits: toLogits.to_logits.map((row) => row.map((v) => v[0])),
      to_q_last_layer: toQ.to_receivers!.map((row) => row.map((v) => (v === null ? null : v[0]))),
    },
    knockout: {
      group_ids: g.prompts.map((p) => [p.clean_ids, p.corrupt_ids] as [number[], number[]]), io_ids: io, s_ids: s, circuit: ev.circuit,
      F_model: ev.F_model, F_circuit: ev.F_circuit, F_empty: ev.F_empty, faithfulness: ev.faithfulness, completeness: ev.completeness, minimality: ev.minimality,
    },
    circuits: {
      copying_score: copyingScores(w),
      composition: comp as AnalysisJson['circuits']['composition'],
      positional_qk: Array.from({ length: L }, (_, l) => Array.from({ length: nh }, (_, h) => positionalQK(w, l, h))),
    },
    group: {
      F_model: mean(g.prompts.map((_, b) => gLogits[b * V + io[b]] - gLogits[b * V + s[b]])),
      patching: { head_z: grid(get_act_patch_attn_head_out_all_pos(model, corrupt, gCache, logitDiffMetric(io, s)), nh) },
      name_movers: movers.map(headName),
      path_patching: {
        to_logits: gPath.to_logits.map((row) => row.map(mean)),
        to_name_movers: gPath.to_receivers!.map((row) => row.map((v) => (v === null ? null : mean(v)))),
      },
    },
  };

  // the induction heads: repeated random tokens of the key's model, their stripes and scores
  const n = Math.min(20, Math.floor((block_size - 1) / 2));
  const tokens = repeatedTokens({ batch: 4, seqLen: n, lo: 256, hi: 50256, bos: 50256, seed: 20250126 });
  const patterns = run_with_cache(model, tokens, { names: (x) => x.endsWith('attn.hook_pattern'), logits_at: [2 * n] }).cache;
  const stripes = Object.fromEntries((['induction', 'previous_token'] as const).map((kind) => {
    const st = stripeOf(kind, n);
    return [kind, { ...st, scores: Array.from({ length: L }, (_, l) => stripeScore(patterns.get('pattern', l).data, tokens.length, nh, 2 * n + 1, st.from, st.to, st.offset)) }];
  })) as KeyExtra['induction']['stripes'];
  const d = detectHeads(stripes.induction.scores, 1, 0);
  const extra: KeyExtra & { made: Record<string, string> } = {
    made: { by: 'npm run grade -- --make-key', weights: path.resolve(o.weights), cases: casesFile, prompts: promptsFile, date: new Date().toISOString() },
    induction: { tokens, n, stripes, detection: { k: d.k, min_score: d.min_score, threshold: d.threshold, heads: d.heads } },
  };
  const reference: ReferenceJson = { config: { n_layer: L, n_head: nh, n_embd: C, vocab_size: V, block_size }, cases };
  const group: GroupJson = {
    prompts: g.prompts.map((p) => ({ clean: p.prompt.clean, corrupt: p.prompt.corrupt, io: p.prompt.io, s: p.prompt.s })),
    circuit: ev.circuit, completeness_sets: sets.map((x) => x.map(headName)), name_movers: movers.map(headName),
  };

  // everything at once, under a temporary name first
  const partial = path.join(path.dirname(out), `.${path.basename(out)}.${process.pid}.partial`);
  try {
    fs.mkdirSync(partial);
    const src = model.source!.file, srcDir = path.dirname(src);
    for (const [from, to] of [[src, 'model.safetensors'], [path.join(srcDir, 'config.json'), 'config.json']]) {
      try {
        fs.linkSync(from, path.join(partial, to)); // the same bytes without a copy where the file system allows
      } catch {
        fs.copyFileSync(from, path.join(partial, to));
      }
    }
    fs.writeFileSync(path.join(partial, KEY_FILES.reference), JSON.stringify(reference) + '\n');
    fs.writeFileSync(path.join(partial, KEY_FILES.analysis), JSON.stringify(analysis) + '\n');
    fs.writeFileSync(path.join(partial, KEY_FILES.group), JSON.stringify(group, null, 1) + '\n');
    fs.writeFileSync(path.join(partial, KEY_FILES.extra), JSON.stringify(extra) + '\n');
    fs.renameSync(partial, out);
  } catch (err) {
    fs.rmSync(partial, { recursive: true, force: true });
    throw err;
  }
  return { dir: out, files: fs.readdirSync(out).sort(), seconds: (performance.now() - start) / 1000 };
}
