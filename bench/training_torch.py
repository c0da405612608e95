"""PyTorch's side of bench/training.ts: training steps of minGPT's loop on a GPT-2-layout model
(random weights), timed, so that our tokens per second stand beside PyTorch's on this machine.

    /usr/bin/python3 bench/training_torch.py '{"n_layer": 2, ..., "batch": 16, "T": 100, "steps": 5}'

The argument is the shape and batch as JSON (bench/training.ts writes it): n_layer, n_head, n_embd,
vocab_size, block_size, mlp ("train" or "frozen": GELU MLPs with weights zero and
requires_grad=False, the attention-only model of assignments/induction-formation/), batch, T,
steps, threads. Prints one JSON line: the median wall and processor seconds of a step.

Each step is minGPT's: forward with targets, zero_grad, backward, clip_grad_norm_(1.0), AdamW
(lr 3e-4, betas (0.9, 0.95), weight decay 0.1 on the Linear weights), on random token ids.
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(0)
C, nh = a["n_embd"], a["n_head"]


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.register_buffer("mask", torch.tril(torch.ones(a["block_size"], a["block_size"])).bool())

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // nh)
        att = att.masked_fill(~self.mask[:T, :T], float("-inf")).softmax(dim=-1)
        x = x + self.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(a["vocab_size"], C), nn.Embedding(a["block_size"], C)
        self.h = nn.ModuleList(Block() for _ in range(a["n_layer"]))
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, a["vocab_size"], bias=False)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


model = GPT()
if a["mlp"] == "frozen":
    for block in model.h:
        for p in (*block.c_fc.parameters(), *block.mlp_proj.parameters()):
            nn.init.zeros_(p)
            p.requires_grad_(False)
linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW([
    {"params": [p for p in params if id(p) in linear], "weight_decay": 0.1},
    {"params": [p for p in params if id(p) not in linear], "weight_decay": 0.0},
], lr=3e-4, betas=(0.9, 0.95))
x = torch.randint(0, a["vocab_size"], (a["batch"], a["T"]))
y = torch.randint(0, a["vocab_size"], (a["batch"], a["T"]))


def step():
    loss = model(x, y)
    model.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()


step()  # warm-up
wall, cpu = [], []
for _ in range(a["steps"]):
    w0, c0 = time.perf_counter(), time.process_time()
    step()
    wall.append(time.perf_counter() - w0)
    cpu.append(time.process_time() - c0)
median = lambda xs: sorted(xs)[len(xs) // 2]
print(json.dumps({"wall_s": median(wall), "cpu_s": median(cpu), "torch": torch.__version__, "threads": torch.get_num_threads()}))
