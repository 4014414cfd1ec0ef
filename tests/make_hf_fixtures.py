#!/usr/bin/env python3
"""Make the Hugging Face parity fixtures that tests/test_model_hf.c reads.

For a few small random GPT-2 configurations this builds a transformers
GPT2LMHeadModel (eager attention, no dropout, fp32), perturbs every parameter so
that biases and layernorm gains are not at their trivial init, and records:

  param.<name>        the weights, HF names without the "transformer." prefix
  inputs, targets     (B,T) int32 token ids; targets_masked has -100 at ignored spots
  logits              (B,T,V) forward output
  loss, loss_masked   mean cross-entropy over the (un-ignored) targets
  grad.<name>         d loss / d param for `targets`
  gradm.<name>        d loss_masked / d param for `targets_masked`
  adamw_losses        10 AdamW steps (decay on 2-D weights only, global-norm clip)
  trained.<name>      the weights after those AdamW steps
  gen_prompt          (3,) int32 prompt; gen_greedy: transformers' greedy
                      generate() continuation to n_positions, from trained.*
  gen_beam3           (3, new) the 3-best of beam search (num_beams=3, no EOS,
                      length_penalty 1); gen_beam3_scores their sequence scores

Run with: make fixtures   (needs torch and transformers; see the Makefile)
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2LMHeadModel

CONFIGS = [
    dict(name="hf_a", n_layer=2, n_head=2, n_embd=32, vocab_size=67, n_positions=16, B=2, T=8, eps=1e-5, seed=1),
    dict(name="hf_b", n_layer=1, n_head=4, n_embd=48, vocab_size=101, n_positions=24, B=3, T=13, eps=1e-5, seed=2),
    dict(name="hf_c", n_layer=3, n_head=1, n_embd=16, vocab_size=50, n_positions=8, B=1, T=8, eps=1e-6, seed=3),
]
ADAMW = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, steps=10)


def strip(name):
    return name[len("transformer."):] if name.startswith("transformer.") else name


def build(cfg):
    torch.manual_seed(cfg["seed"])
    hf = GPT2Config(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                    vocab_size=cfg["vocab_size"], n_positions=cfg["n_positions"],
                    layer_norm_epsilon=cfg["eps"], activation_function="gelu_new",
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                    bos_token_id=cfg["vocab_size"] - 1, eos_token_id=cfg["vocab_size"] - 1)
    hf._attn_implementation = "eager"
    model = GPT2LMHeadModel(hf).float()
    model.train()  # dropout is 0 so train mode is deterministic
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def loss_of(model, inputs, targets):
    logits = model(input_ids=inputs).logits
    V = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    return logits, loss


def params(model):
    # named_parameters() lists the tied wte once (as transformer.wte.weight)
    return [(strip(n), p) for n, p in model.named_parameters()]


def make(cfg, outdir):
    model = build(cfg)
    g = torch.Generator().manual_seed(100 + cfg["seed"])
    B, T, V = cfg["B"], cfg["T"], cfg["vocab_size"]
    inputs = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    masked = targets.clone()
    drop = torch.rand((B, T), generator=g) < 0.4
    drop[0, 0] = False  # keep at least one target
    masked[drop] = -100

    out = {}
    for n, p in params(model):
        out["param." + n] = p.detach().numpy().copy()
    out["inputs"] = inputs.numpy().astype(np.int32)
    out["targets"] = targets.numpy().astype(np.int32)
    out["targets_masked"] = masked.numpy().astype(np.int32)

    model.zero_grad()
    logits, loss = loss_of(model, inputs, targets)
    loss.backward()
    out["logits"] = logits.detach().numpy().copy()
    out["loss"] = np.array([loss.item()], dtype=np.float32)
    for n, p in params(model):
        out["grad." + n] = p.grad.detach().numpy().copy()

    model.zero_grad()
    _, lossm = loss_of(model, inputs, masked)
    lossm.backward()
    out["loss_masked"] = np.array([lossm.item()], dtype=np.float32)
    for n, p in params(model):
        out["gradm." + n] = p.grad.detach().numpy().copy()

    # ten AdamW steps on the same batch
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"],
                            foreach=False, fused=False)
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad()
        _, l = loss_of(model, inputs, targets)
        l.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), ADAMW["clip"])
        opt.step()
        losses.append(l.item())
    out["adamw_losses"] = np.array(losses, dtype=np.float32)

    # greedy generation with transformers from the trained weights (which have
    # partly memorised the batch, so the continuation is not degenerate)
    for n, p in params(model):
        out["trained." + n] = p.detach().numpy().copy()
    prompt = inputs[:1, :3]
    model.eval()
    with torch.no_grad():
        gen = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=cfg["n_positions"] - 3,
                             min_new_tokens=cfg["n_positions"] - 3, pad_token_id=0,
                             eos_token_id=None, use_cache=True)
    out["gen_prompt"] = prompt[0].numpy().astype(np.int32)
    out["gen_greedy"] = gen[0, 3:].numpy().astype(np.int32)
    with torch.no_grad():
        beam = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                              num_beams=3, num_return_sequences=3, length_penalty=1.0,
                              early_stopping=False, max_new_tokens=cfg["n_positions"] - 3,
                              min_new_tokens=cfg["n_positions"] - 3, pad_token_id=0,
                              eos_token_id=None, use_cache=True, output_scores=True,
                              return_dict_in_generate=True)
    out["gen_beam3"] = beam.sequences[:, 3:].numpy().astype(np.int32)
    out["gen_beam3_scores"] = beam.sequences_scores.numpy().astype(np.float32)

    meta = {k: str(v) for k, v in cfg.items()}
    meta.update({"adamw_" + k: repr(v) for k, v in ADAMW.items()})
    meta["torch"] = torch.__version__
    import transformers
    meta["transformers"] = transformers.__version__
    path = os.path.join(outdir, cfg["name"] + ".safetensors")
    save_file(out, path, metadata=meta)
    print(f"{path}: loss {loss.item():.6f}  masked {lossm.item():.6f}  adamw {losses[0]:.4f} -> {losses[-1]:.4f}")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    for cfg in CONFIGS:
        make(cfg, outdir)


if __name__ == "__main__":
    main()
