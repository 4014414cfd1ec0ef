#!/usr/bin/env python3
"""Make the LoRA / PEFT fixtures of the Llama families that tests/test_lora_llama.c reads.

For two tiny random bases -- a llama with grouped-query attention (4 query
heads over 2 key/value heads) and an untied head, and a qwen2 (q/k/v biases,
tied head) -- this writes the base with save_pretrained, loads it back, wraps
it with peft's get_peft_model (LoRA r=4, lora_alpha=8, dropout 0), gives
lora_B random values (PEFT starts it at zero, a no-op adapter) and records
what PEFT computes. Three adapters:

  llama_all   target_modules q_proj, k_proj, v_proj, o_proj, gate_proj,
              up_proj, down_proj (every linear layer of every block)
  llama_sub   k_proj and up_proj of block 1 only (layers_to_transform [1],
              layers_pattern "layers" as PEFT's Llama adapters often have it):
              adapters on column slices of retort's fused q/k/v and gate/up
              GEMMs, and a block without any
  qwen2_all   the seven modules on the qwen2 base

into tests/fixtures/lora_llama/:

  llama/, qwen2/          the bases (config.json, model.safetensors; fp32)
  llama_bytes/            a base with the bytes tokenizer's 257 ids, no adapter:
                          what the CLI test fine-tunes with `retort train`
  NAME/                   PeftModel.save_pretrained (adapter_config.json,
                          adapter_model.safetensors)
  NAME.safetensors
      inputs, targets     (B,T) int32
      logits              (B,T,V) of base + adapter (eval mode)
      loss                mean cross-entropy of targets
      grad.<key>          d loss / d lora_A, lora_B under PEFT's saved key
                          ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
      merged.<name>       every weight merge_and_unload changed, under its
                          checkpoint key ("model.layers.0.self_attn.q_proj.weight")
      merged_logits       (B,T,V) of the merged model

Run with: .venv/bin/python tests/make_lora_llama_fixtures.py tests/fixtures/lora_llama
(needs torch, transformers, peft, safetensors; `make fixtures` runs it).
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0)

# hidden 16, 2 blocks, vocabulary 48-257: every fixture together stays near 250 KB
BASES = {
    "llama": (LlamaConfig, dict(vocab_size=48, hidden_size=16, intermediate_size=24,
                                num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=16,
                                rms_norm_eps=1e-5, tie_word_embeddings=False,
                                rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
              1),
    "qwen2": (Qwen2Config, dict(vocab_size=50, hidden_size=16, intermediate_size=24,
                                num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, max_position_embeddings=16,
                                rms_norm_eps=1e-6, tie_word_embeddings=True,
                                rope_parameters=dict(rope_type="default",
                                                     rope_theta=1000000.0)),
              2),
    # the base of `retort train` in tests/test_lora_llama.c: the vocabulary of
    # the built-in bytes tokenizer (256 bytes + EOS), multi-query attention
    "llama_bytes": (LlamaConfig, dict(vocab_size=257, hidden_size=16, intermediate_size=24,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=1, max_position_embeddings=32,
                                      rms_norm_eps=1e-5, tie_word_embeddings=True,
                                      rope_parameters=dict(rope_type="default",
                                                           rope_theta=10000.0)),
                    6),
}
ADAPTERS = [
    dict(name="llama_all", base="llama", seed=3, B=2, T=9, target_modules=ALL),
    dict(name="llama_sub", base="llama", seed=4, B=2, T=8, target_modules=["k_proj", "up_proj"],
         layers_to_transform=[1], layers_pattern="layers"),
    dict(name="qwen2_all", base="qwen2", seed=5, B=2, T=10, target_modules=ALL),
]


def make_base(name, root):
    cls, cfg, seed = BASES[name]
    torch.manual_seed(seed)
    V = cfg["vocab_size"]
    c = cls(hidden_act="silu", attention_dropout=0.0, bos_token_id=V - 1, eos_token_id=V - 1,
            **cfg)
    model = AutoModelForCausalLM.from_config(c, attn_implementation="eager").float()
    with torch.no_grad():  # norm gains and biases off their trivial init
        for _, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    return d


def load_base(d):
    return AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager",
                                                dtype=torch.float32)


def make_adapter(spec, root, base_dir):
    name = spec["name"]
    torch.manual_seed(spec["seed"])
    base = load_base(base_dir)
    V = base.config.vocab_size
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    kw = dict(LORA, target_modules=spec["target_modules"])
    for key in ("layers_to_transform", "layers_pattern"):
        if key in spec:
            kw[key] = spec[key]
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **kw))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn_like(p))
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    readme = os.path.join(d, "README.md")  # PEFT's model card: not needed
    if os.path.exists(readme):
        os.remove(readme)
    # PEFT keeps target_modules as a set: its order changes from run to run
    path = os.path.join(d, "adapter_config.json")
    with open(path) as f:
        saved = json.load(f)
    saved["target_modules"] = sorted(saved["target_modules"])
    with open(path, "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
        f.write("\n")

    g = torch.Generator().manual_seed(100 + spec["seed"])
    inputs = torch.randint(0, V, (spec["B"], spec["T"]), generator=g)
    targets = torch.randint(0, V, (spec["B"], spec["T"]), generator=g)
    model.eval()
    model.zero_grad()
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    out = {"inputs": inputs.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
           "logits": logits.detach().numpy().copy(),
           "loss": np.array([loss.item()], dtype=np.float32)}
    n_grads = 0
    for n, p in model.named_parameters():
        if "lora_" in n:
            out["grad." + n.replace(".default", "")] = p.grad.detach().numpy().copy()
            n_grads += 1
    merged = model.merge_and_unload()
    changed = 0
    for n, p in merged.named_parameters():
        if not torch.equal(p, before[n]):
            assert n.endswith("_proj.weight"), f"{name}: merge changed {n}"
            out["merged." + n] = p.detach().numpy().copy()
            changed += 1
    assert changed * 2 == n_grads, f"{name}: {changed} merged weights for {n_grads} adapters"
    with torch.no_grad():
        out["merged_logits"] = merged(input_ids=inputs).logits.numpy().copy()
    import peft
    import transformers
    meta = {"torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "B": str(spec["B"]), "T": str(spec["T"])}
    path = os.path.join(root, name + ".safetensors")
    save_file(out, path, metadata=meta)
    print(f"{path}: loss {loss.item():.6f}, {n_grads} adapter gradients, {changed} merged weights")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/lora_llama"
    torch.set_num_threads(1)
    os.makedirs(root, exist_ok=True)
    bases = {name: make_base(name, root) for name in BASES}
    for spec in ADAPTERS:
        make_adapter(spec, root, bases[spec["base"]])


if __name__ == "__main__":
    main()
