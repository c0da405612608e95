/**
 * The WebAssembly module of the SIMD kernels: every kernel, written with the little assembler
 * in ./wasm.ts, importing one shared memory of up to 4 GiB.
 *
 *   ./wasm_matmul.ts     matmul                      (Linear layers, the vocabulary projection)
 *   ./wasm_attention.ts  attention, attention_scores, softmax, attention_values, split_heads, merge_heads
 *   ./wasm_rows.ts       gelu, gelu_backward, residual, layernorm_scale, layernorm_apply and their backward twins
 *   ./backward_wasm.ts   matmul_acc                  (the backward's products: out += a · b)
 *
 * and, for the big ones, a `<kernel>_job(args, item, thread)` twin that reads its arguments from
 * memory and does one item of the work (./threads.ts shares the items among threads).
 *
 * `relaxed`: multiply-adds are f32x4.relaxed_madd (one fused instruction where the CPU has FMA);
 * otherwise f32x4.mul then f32x4.add. Either way every kernel in the module uses the same one.
 */
import { Code, wasmModule } from './wasm.ts';
import { matmul, matmulJob } from './wasm_matmul.ts';
import {
  attention, attentionJob, attentionScores, attentionScoresJob, attentionValues, attentionValuesJob, softmax, softmaxJob, splitHeads,
} from './wasm_attention.ts';
import { gelu, geluBackward, geluBackwardJob, geluJob, layernormApply, layernormApplyBackward, layernormScale, layernormScaleBackward, residual } from './wasm_rows.ts';
import { matmulAcc, matmulAccJob } from './backward_wasm.ts';

/** How much memory the module may be given, in 64 KiB pages: up to 4 GiB. */
export const MAX_PAGES = 65536;

/** The jobs, in the order of their numbers in ./threads.ts's control words. */
export const JOBS = ['matmul_job', 'attention_job', 'attention_scores_job', 'attention_values_job', 'softmax_job', 'gelu_job', 'matmul_acc_job', 'gelu_backward_job'] as const;
export type JobName = (typeof JOBS)[number];

/** The module's bytes. */
export function kernelModuleBytes(relaxed: boolean): Uint8Array {
  const funcs: Code[] = [
    matmul(relaxed), attention(relaxed), attentionScores(relaxed), attentionValues(relaxed), softmax(relaxed), splitHeads(false), splitHeads(true), gelu(),
    residual(), layernormScale(), layernormApply(), matmulAcc(relaxed), geluBackward(), layernormApplyBackward(), layernormScaleBackward(),
  ];
  const at = (name: string) => funcs.findIndex((c) => c.name === name);
  const jobs: Record<JobName, Code> = {
    matmul_job: matmulJob(at('matmul')),
    attention_job: attentionJob(at('attention')),
    attention_scores_job: attentionScoresJob(at('attention_scores')),
    attention_values_job: attentionValuesJob(at('attention_values')),
    softmax_job: softmaxJob(at('softmax')),
    gelu_job: geluJob(at('gelu')),
    matmul_acc_job: matmulAccJob(at('matmul_acc')),
    gelu_backward_job: geluBackwardJob(at('gelu_backward')),
  };
  return wasmModule([...funcs, ...JOBS.map((j) => jobs[j])], { minPages: 0, maxPages: MAX_PAGES });
}
