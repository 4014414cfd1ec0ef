#!/usr/bin/env python3
"""Checks that a retort checkpoint loads in transformers as is and that
GPT2LMHeadModel gives the logits retort's own `generate` path would see.

  .venv/bin/python tests/check_hf_load.py CHECKPOINT_DIR

Loads with GPT2LMHeadModel.from_pretrained(dir), runs one forward pass, and
compares with a forward pass done by numpy from the raw safetensors weights
(an independent re-implementation), to 1e-4 relative. Exits non-zero on any
mismatch or warning about missing/unexpected keys."""
import sys
import warnings

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import GPT2LMHeadModel


def numpy_gpt2(w, cfg, ids):
    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg.layer_norm_epsilon) * g + b

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    p = lambda n: w["transformer." + n].astype(np.float64)
    T = len(ids)
    C, H = cfg.n_embd, cfg.n_head
    x = p("wte.weight")[ids] + p("wpe.weight")[:T]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg.n_layer):
        h = ln(x, p(f"h.{l}.ln_1.weight"), p(f"h.{l}.ln_1.bias"))
        qkv = h @ p(f"h.{l}.attn.c_attn.weight") + p(f"h.{l}.attn.c_attn.bias")
        q, k, v = np.split(qkv, 3, axis=-1)
        heads = []
        for i in range(H):
            s = slice(i * C // H, (i + 1) * C // H)
            a = q[:, s] @ k[:, s].T / np.sqrt(C // H) + mask
            a = np.exp(a - a.max(-1, keepdims=True))
            heads.append((a / a.sum(-1, keepdims=True)) @ v[:, s])
        x = x + np.concatenate(heads, -1) @ p(f"h.{l}.attn.c_proj.weight") + p(f"h.{l}.attn.c_proj.bias")
        h = ln(x, p(f"h.{l}.ln_2.weight"), p(f"h.{l}.ln_2.bias"))
        h = gelu(h @ p(f"h.{l}.mlp.c_fc.weight") + p(f"h.{l}.mlp.c_fc.bias"))
        x = x + h @ p(f"h.{l}.mlp.c_proj.weight") + p(f"h.{l}.mlp.c_proj.bias")
    x = ln(x, p("ln_f.weight"), p("ln_f.bias"))
    return x @ p("wte.weight").T


def main():
    d = sys.argv[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = GPT2LMHeadModel.from_pretrained(d, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k != "mismatched_keys" or (k == "mismatched_keys" and v)}
    if bad:
        sys.exit(f"loading info reports problems: {bad}")
    cfg = model.config
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=min(24, cfg.n_positions))
    with torch.no_grad():
        hf = model(torch.tensor(ids)[None]).logits[0].double().numpy()
    ref = numpy_gpt2(load_file(d + "/model.safetensors"), cfg, ids)
    err = np.linalg.norm(hf - ref) / np.linalg.norm(ref)
    print(f"{d}: transformers loads it; logits vs numpy reference: relative error {err:.2e}")
    sys.exit(0 if err < 1e-4 else 1)


if __name__ == "__main__":
    main()
