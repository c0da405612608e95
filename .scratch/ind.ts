import { DEFAULT_RANGE, buildHandmade } from '../assignments/induction-heads/handmade.ts';
import { atp_runs, get_atp_attn_head_out_all_pos } from '../lens/attribution_patching.ts';
import { get_act_patch_attn_head_out_all_pos, logitDiffMetric } from '../lens/patching.ts';
import { run_with_cache } from '../lens/activation_cache.ts';
import { RNG } from '../mingpt/utils.ts';
const [LO, HI] = DEFAULT_RANGE;
const model = buildHandmade({ lo: LO, hi: HI, seed: 0 }).model;
const rng = new RNG(7);
const pick = (n: number) => Array.from({ length: n }, () => LO + Math.floor(rng.random() * (HI - LO)));
const a = pick(20);
const clean = [HI, ...a, ...a.slice(0, 10)];
const corrupt = clean.slice(); corrupt[1 + 15] = a[9]; // a second a_9 in the first half, followed by a_16
const m = logitDiffMetric(a[10], a[16]);
const r = get_atp_attn_head_out_all_pos(atp_runs(model, clean, corrupt, m, ['z']));
console.log(r.corrupted, r.clean, r.data.map((x) => (x - r.corrupted).toFixed(3)).join(' '));
const { cache } = run_with_cache(model, clean);
const ex = get_act_patch_attn_head_out_all_pos(model, corrupt, cache, m);
console.log('exact', ex.data.map((x) => (x - ex.corrupted).toFixed(3)).join(' '));
