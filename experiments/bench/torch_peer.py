#!/usr/bin/env python3
"""PyTorch peer for `make bench`: trains transformers' GPT2LMHeadModel (or,
with --arch llama, LlamaForCausalLM) on the same shapes, data and thread count
as retort and prints tokens/s.

Also writes the random-token lm dataset both sides read (h5py, retort's
schema), so the comparison uses identical inputs.

  torch_peer.py make-data PATH VOCAB NTOKENS
  torch_peer.py train --layers L --heads H --embd C --vocab V --seq T --batch B
                      --steps S --threads N --data PATH
                      [--arch llama --kv-heads K --inter I --theta F --tied 0|1]
  torch_peer.py save-llama (the same options; --data is the directory to write)
"""
import argparse
import statistics
import sys
import time

import h5py
import numpy as np


def make_data(path, vocab, ntokens):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab, size=ntokens, dtype=np.int64)
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = np.bytes_("lm")
        f.attrs["version"] = np.int64(1)
        f.attrs["vocab_size"] = np.int64(vocab)
        f.attrs["eos_id"] = np.int64(vocab - 1)
        f.attrs["pad_id"] = np.int64(vocab - 1)
        f.attrs["tokenizer"] = np.bytes_("random")
        f.create_dataset("tokens", data=tokens.astype(np.uint16 if vocab <= 65536 else np.uint32))
        f.create_dataset("offsets", data=np.array([0, ntokens], dtype=np.int64))


def train(a):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.arch == "llama":
        from transformers import LlamaForCausalLM
        model = LlamaForCausalLM(llama_config(a)).float().train()
    else:
        cfg = GPT2Config(n_layer=a.layers, n_head=a.heads, n_embd=a.embd, vocab_size=a.vocab,
                         n_positions=max(a.seq, 64), resid_pdrop=0.0, embd_pdrop=0.0,
                         attn_pdrop=0.0, activation_function="gelu_new",
                         bos_token_id=a.vocab - 1, eos_token_id=a.vocab - 1)
        model = GPT2LMHeadModel(cfg).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    with h5py.File(a.data, "r") as f:
        tokens = torch.from_numpy(f["tokens"][:].astype(np.int64))
    B, T = a.batch, a.seq
    times = []
    pos = 0
    for step in range(a.steps):
        chunk = tokens[pos:pos + B * T + 1]
        if chunk.numel() < B * T + 1:
            pos, chunk = 0, tokens[:B * T + 1]
        pos += B * T
        x = chunk[:-1].view(B, T)
        y = chunk[1:].view(B, T)
        t0 = time.perf_counter()
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, a.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    steady = times[1:] if len(times) > 1 else times
    print(f"torch_tokens_per_s {B * T / statistics.median(steady):.1f}")
    print(f"torch_version {torch.__version__}", file=sys.stderr)


def llama_config(a):
    from transformers import LlamaConfig
    return LlamaConfig(num_hidden_layers=a.layers, num_attention_heads=a.heads,
                       num_key_value_heads=a.kv_heads, hidden_size=a.embd,
                       intermediate_size=a.inter, vocab_size=a.vocab,
                       max_position_embeddings=max(a.seq, 64), rope_theta=a.theta,
                       rms_norm_eps=1e-5, tie_word_embeddings=bool(a.tied),
                       attention_dropout=0.0, bos_token_id=a.vocab - 1, eos_token_id=a.vocab - 1)


def save_llama(a):
    """A random LlamaForCausalLM of the benchmark's shape, saved for retort's --init."""
    import torch
    from transformers import LlamaForCausalLM
    torch.manual_seed(0)
    LlamaForCausalLM(llama_config(a)).float().save_pretrained(a.data)


def main():
    if sys.argv[1] == "make-data":
        make_data(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    for k in ("layers", "heads", "embd", "vocab", "seq", "batch", "steps", "threads"):
        p.add_argument("--" + k, type=int, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--arch", default="gpt2", choices=["gpt2", "llama"])
    p.add_argument("--kv-heads", type=int, default=0)
    p.add_argument("--inter", type=int, default=0)
    p.add_argument("--theta", type=float, default=10000.0)
    p.add_argument("--tied", type=int, default=1)
    a = p.parse_args()
    save_llama(a) if a.cmd == "save-llama" else train(a)


if __name__ == "__main__":
    main()
