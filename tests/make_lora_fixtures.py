#!/usr/bin/env python3
"""Make the LoRA / PEFT fixtures that tests/test_lora.c reads.

Builds a tiny transformers GPT2LMHeadModel from fixed (seeded) weights, wraps it
with peft's get_peft_model (LoRA r=4, lora_alpha=8, target_modules
["c_attn", "c_proj"], which for GPT-2 adapts attn.c_attn, attn.c_proj and
mlp.c_proj; "c_proj" matches both projections by suffix), sets lora_B to
random values (PEFT initialises it to zero, which would make the adapter a
no-op), and writes:

  tests/fixtures/lora_base/            GPT2LMHeadModel.save_pretrained (base weights)
  tests/fixtures/lora_adapter/         PeftModel.save_pretrained (the adapter)
  tests/fixtures/lora_expected.safetensors
      inputs, targets   (B,T) int32
      logits            (B,T,V) of base + adapter in eval mode (no dropout)
      loss              mean cross-entropy of targets
      grad.<name>       d loss / d lora_A, lora_B, under the PEFT key names
                        ("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight")

Run with: .venv/bin/python tests/make_lora_fixtures.py tests/fixtures
(needs torch, transformers, peft, safetensors).
"""
import os
import shutil
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2LMHeadModel

CFG = dict(n_layer=2, n_head=2, n_embd=16, vocab_size=37, n_positions=8, B=2, T=7, seed=11)
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["c_attn", "c_proj"])


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    torch.manual_seed(CFG["seed"])
    torch.set_num_threads(1)
    V = CFG["vocab_size"]
    hf = GPT2Config(n_layer=CFG["n_layer"], n_head=CFG["n_head"], n_embd=CFG["n_embd"],
                    vocab_size=V, n_positions=CFG["n_positions"], layer_norm_epsilon=1e-5,
                    activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                    attn_pdrop=0.0, tie_word_embeddings=True, bos_token_id=V - 1, eos_token_id=V - 1)
    hf._attn_implementation = "eager"
    base = GPT2LMHeadModel(hf).float()
    with torch.no_grad():
        for _, p in base.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    base_dir = os.path.join(outdir, "lora_base")
    adapter_dir = os.path.join(outdir, "lora_adapter")
    for d in (base_dir, adapter_dir):
        shutil.rmtree(d, ignore_errors=True)
    base.save_pretrained(base_dir, safe_serialization=True)
    gen = os.path.join(base_dir, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)

    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", fan_in_fan_out=True, **LORA))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn_like(p))
    model.save_pretrained(adapter_dir)
    readme = os.path.join(adapter_dir, "README.md")  # PEFT's model card: not needed
    if os.path.exists(readme):
        os.remove(readme)

    g = torch.Generator().manual_seed(5)
    inputs = torch.randint(0, V, (CFG["B"], CFG["T"]), generator=g)
    targets = torch.randint(0, V, (CFG["B"], CFG["T"]), generator=g)
    model.eval()  # lora dropout off
    model.zero_grad()
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    out = {"inputs": inputs.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
           "logits": logits.detach().numpy().copy(),
           "loss": np.array([loss.item()], dtype=np.float32)}
    for n, p in model.named_parameters():
        if "lora_" in n:
            out["grad." + n.replace(".default", "")] = p.grad.detach().numpy().copy()
    import peft
    import transformers
    meta = {"torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "B": str(CFG["B"]), "T": str(CFG["T"])}
    path = os.path.join(outdir, "lora_expected.safetensors")
    save_file(out, path, metadata=meta)
    print(f"{path}: loss {loss.item():.6f}, {len(out) - 4} adapter gradients")


if __name__ == "__main__":
    main()
