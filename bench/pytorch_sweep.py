"""PyTorch's time for the activation-patching sweep bench/bench.ts times, done the way a PyTorch
user would do it well: GPT-2 small's shape, float32, no gradients; the clean and corrupted runs
keep every block's output; then for each layer l, the T patched runs (position p of block l's
output taken from the clean run) go through blocks l+1 … L-1 as one batch of T sequences, and
only the last position goes through the final layer norm and the vocabulary projection.

    /usr/bin/python3 bench/pytorch_sweep.py --clean 1,2,3 --corrupt 1,4,3 --tokens 4,2 [--weights DIR] [--runs 1] [--threads 1,2]

--tokens is the corrupt token then the clean one: each cell is logit(corrupt) − logit(clean).
With --weights (a directory holding model.safetensors in the layout bench/bench.ts writes) the
model has the same weights as ours and the matrix can be compared cell by cell; without, random
weights of the same shape (the time depends on the shape only).

The work grows with T³ (T runs of T positions through up to L blocks): 113 GFLOP at 11 tokens,
about 2 TFLOP at 46, a minute on two cores. So one run by default, after a warm-up of one forward
pass only, on all cores (--threads to try others). Prints one JSON object per line:
{"threads", "wall_s", "cpu_s"} (medians of the runs) for each thread count, then
{"matrix": [[…], …], "torch": version}.
"""
import argparse
import json
import os
import statistics
import struct
import time

import torch

from pytorch_forward import GPT, N_LAYER

# GPT-2's Conv1D layers store their weights [in, out]; nn.Linear keeps [out, in]
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def load_safetensors(path):
    """The F32 tensors of a .safetensors file: an 8-byte header length, a JSON header, the data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {key} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[key] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(info["shape"])
    return out


def load_weights(model, directory):
    """Our checkpoint's tensors into pytorch_forward.py's GPT (whose MLP layers sit in the block)."""
    state = {}
    for key, t in load_safetensors(os.path.join(directory, "model.safetensors")).items():
        if key.endswith(".attn.bias"):
            continue  # the causal mask: the module makes its own
        name = key.replace(".mlp.", ".")
        state[name] = t.t().contiguous() if key.endswith(CONV1D) else t
    state["lm_head.weight"] = state["wte.weight"]
    missing = set(model.state_dict()) - set(state) - {f"h.{i}.attn.bias" for i in range(N_LAYER)}
    if missing:
        raise SystemExit(f"{directory}: no tensor for {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)


def resid_posts(model, idx):
    """Every block's output (L tensors (1, T, C)) and the logits at the last position (V)."""
    pos = torch.arange(0, idx.size(1), dtype=torch.long).unsqueeze(0)
    x = model.wte(idx) + model.wpe(pos)
    outs = []
    for block in model.h:
        x = block(x)
        outs.append(x)
    return outs, model.lm_head(model.ln_f(x[0, -1]))


def sweep(model, clean, corrupt, corrupt_tok, clean_tok):
    """The layer × position matrix of logit differences at the last position."""
    clean_res, _ = resid_posts(model, clean)
    corrupt_res, _ = resid_posts(model, corrupt)
    T = clean.size(1)
    p = torch.arange(T)
    matrix = torch.empty(N_LAYER, T)
    for l in range(N_LAYER):
        x = corrupt_res[l].expand(T, -1, -1).clone()  # (T runs, T, C): run p patches position p
        x[p, p] = clean_res[l][0, p]
        for block in model.h[l + 1 :]:
            x = block(x)
        logits = model.lm_head(model.ln_f(x[:, -1]))  # (T, V): the last position of each run
        matrix[l] = logits[:, corrupt_tok] - logits[:, clean_tok]
    return matrix


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clean", required=True, help="the clean text's token ids, comma-separated")
    ap.add_argument("--corrupt", required=True, help="the corrupted text's token ids, comma-separated")
    ap.add_argument("--tokens", required=True, help="corrupt_token,clean_token")
    ap.add_argument("--weights", help="a directory with model.safetensors (bench/bench.ts's random checkpoint)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--threads", default=str(os.cpu_count() or 1), help="thread counts to time, comma-separated (default: all cores)")
    a = ap.parse_args()
    ids = lambda s: torch.tensor([[int(x) for x in s.split(",")]])
    clean, corrupt = ids(a.clean), ids(a.corrupt)
    if clean.size(1) != corrupt.size(1):
        raise SystemExit(f"the texts must have one length: {clean.size(1)} and {corrupt.size(1)} tokens")
    corrupt_tok, clean_tok = (int(x) for x in a.tokens.split(","))
    torch.manual_seed(1337)
    model = GPT().eval()
    if a.weights:
        load_weights(model, a.weights)
    matrix = None
    for threads in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(threads)
        walls, cpus = [], []
        with torch.inference_mode():
            resid_posts(model, clean)  # warm-up
            for _ in range(a.runs):
                w0, c0 = time.perf_counter(), time.process_time()
                matrix = sweep(model, clean, corrupt, corrupt_tok, clean_tok)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
        print(json.dumps({"threads": threads, "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}), flush=True)
    print(json.dumps({"matrix": matrix.tolist(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
