"""PyTorch's time for the forward pass bench/bench.ts times: GPT-2 small's shape, random weights,
float32, one sequence, logits at every position, no gradients. minGPT's model (the one this
project ports), written out here so that nothing but torch is needed.

    python3 bench/pytorch_forward.py --lengths 11,128,512,1024 --runs 9,5,3,2

Prints one JSON object per line: {"T", "threads", "wall_s", "cpu_s"} (medians of the runs, after a
warm-up run) for each length and each thread count tried (1 and all cores: the best setting
differs with the length), then {"torch": version}.
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

N_LAYER, N_HEAD, N_EMBD, VOCAB, BLOCK = 12, 12, 768, 50257, 1024


class NewGELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD)
        self.c_proj = nn.Linear(N_EMBD, N_EMBD)
        self.register_buffer("bias", torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(N_EMBD, dim=2)
        k = k.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2)
        q = q.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2)
        v = v.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(N_EMBD)
        self.attn = CausalSelfAttention()
        self.ln_2 = nn.LayerNorm(N_EMBD)
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD)
        self.c_proj = nn.Linear(4 * N_EMBD, N_EMBD)
        self.act = NewGELU()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(self.act(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, N_EMBD)
        self.wpe = nn.Embedding(BLOCK, N_EMBD)
        self.h = nn.ModuleList([Block() for _ in range(N_LAYER)])
        self.ln_f = nn.LayerNorm(N_EMBD)
        self.lm_head = nn.Linear(N_EMBD, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT-2

    def forward(self, idx):
        pos = torch.arange(0, idx.size(1), dtype=torch.long).unsqueeze(0)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="11,128,512,1024")
    ap.add_argument("--runs", default="9,5,3,2")
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    runs = [int(x) for x in a.runs.split(",")]
    torch.manual_seed(1337)
    model = GPT().eval()
    cores = os.cpu_count() or 1
    for T, n in zip(lengths, runs):
        idx = torch.randint(0, VOCAB, (1, T))
        for threads in sorted({1, cores}):
            torch.set_num_threads(threads)
            walls, cpus = [], []
            with torch.inference_mode():
                model(idx)  # warm-up
                for _ in range(n):
                    w0, c0 = time.perf_counter(), time.process_time()
                    model(idx)
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.process_time() - c0)
            print(json.dumps({"T": T, "threads": threads, "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}), flush=True)
    print(json.dumps({"torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
