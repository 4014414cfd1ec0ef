#!/usr/bin/env python3
"""PyTorch peers for `make bench-gpu` (run on the GPU machine).

  torch_gpu_peer.py sdpa            flash SDPA forward+backward TFLOP/s at the shapes
                                    bench_kernels times (same causal FLOP count)
  torch_gpu_peer.py train B T STEPS GPT-2 124M, bf16 autocast, fused AdamW,
                                    torch.compile; prints median tokens/s and MFU

The model is a plain nanoGPT-style GPT-2 written here (not imported), so the
peer is what a researcher would write with PyTorch today.
"""
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def sdpa():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for name, B, NH, T, HS in [("gpt2-124m", 8, 12, 1024, 64), ("gpt2-350m", 8, 16, 1024, 64),
                               ("hs128", 8, 16, 1024, 128)]:
        qs = [torch.randn(B, NH, T, HS, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
        do = torch.randn(B, NH, T, HS, device="cuda", dtype=torch.bfloat16)
        times = []
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            for i in range(23):
                q = qs[i % 3]
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                o = F.scaled_dot_product_attention(q, q, q, is_causal=True)
                o.backward(do)
                e.record()
                torch.cuda.synchronize()
                if i >= 3:
                    times.append(s.elapsed_time(e))
        ms = statistics.median(times)
        flops = 7.0 * 2.0 * B * NH * T * T * HS / 2.0
        print(f"torch sdpa_flash_fwd_bwd {name} B={B} NH={NH} T={T} HS={HS} {ms:.3f} ms "
              f"{flops / (ms * 1e-3) / 1e12:.1f} TFLOP/s")


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.NH = NH

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L=12, C=768, NH=12, V=50257, maxT=1024):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(maxT, C)
        self.blocks = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def train(B, T, steps):
    torch.manual_seed(0)
    model = GPT().cuda()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step = torch.compile(model)
    data = torch.randint(0, 50257, (steps + 1, B, T + 1), device="cuda")
    times = []
    for i in range(steps):
        x, y = data[i, :, :-1], data[i, :, 1:]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times[5:])
    tok_s = B * T / ms
    # 6N per token plus attention 12*L*T*C (the PaLM appendix B count), bf16 peak 989 TFLOP/s (H100 SXM dense)
    flops_tok = 6 * n_params + 12 * 12 * T * 768
    print(f"torch train gpt2-124m B={B} T={T} {tok_s:.0f} tok/s MFU {100 * tok_s * flops_tok / 989e12:.1f}%")


if __name__ == "__main__":
    if sys.argv[1] == "sdpa":
        sdpa()
    else:
        train(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
