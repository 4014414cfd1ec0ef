#!/usr/bin/env python3
"""Beam search with an end-of-sequence token, from transformers, for
tests/test_model_hf.c: the trained weights of each hf_* fixture are loaded into
GPT2LMHeadModel and generate(num_beams=4, num_return_sequences=3) runs with an
EOS id picked so that some beams finish early (a token of the EOS-free 3-best).

Writes tests/fixtures/beam_eos.safetensors with, per fixture <name>:
  <name>.eos            (1,) int32 the EOS id used
  <name>.seqs           (3, new) int32 the 3-best continuations, EOS included,
                        padded with -1 after it
  <name>.scores         (3,) float32 sequences_scores
  <name>.length_penalty (1,) float32

Run with: make fixtures
"""
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

NAMES = ["hf_a", "hf_b", "hf_c"]
LENGTH_PENALTY = 0.7


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    torch.set_num_threads(1)
    out = {}
    for name in NAMES:
        fx = load_file(os.path.join(outdir, name + ".safetensors"))
        V, C = fx["trained.wte.weight"].shape
        T = fx["trained.wpe.weight"].shape[0]
        L = len({k.split(".")[2] for k in fx if k.startswith("trained.h.")})
        NH = {"hf_a": 2, "hf_b": 4, "hf_c": 1}[name]
        eps = 1e-6 if name == "hf_c" else 1e-5
        cfg = GPT2Config(n_layer=L, n_head=NH, n_embd=C, vocab_size=V, n_positions=T,
                         layer_norm_epsilon=eps, activation_function="gelu_new",
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         tie_word_embeddings=True)
        cfg._attn_implementation = "eager"
        model = GPT2LMHeadModel(cfg).float().eval()
        sd = {"transformer." + k[len("trained."):]: torch.from_numpy(v)
              for k, v in fx.items() if k.startswith("trained.")}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        assert not unexpected and all("lm_head" in m or "attn.bias" in m for m in missing), missing
        model.tie_weights()
        prompt = torch.from_numpy(fx["gen_prompt"].astype(np.int64))[None, :]
        eos = int(fx["gen_beam3"][1, 2])  # a token some beams emit early
        with torch.no_grad():
            beam = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                  num_beams=4, num_return_sequences=3,
                                  length_penalty=LENGTH_PENALTY, early_stopping=False,
                                  max_new_tokens=T - 3, pad_token_id=-1, eos_token_id=eos,
                                  use_cache=True, return_dict_in_generate=True,
                                  output_scores=True)
        seqs = beam.sequences[:, 3:].numpy().astype(np.int32)
        out[name + ".eos"] = np.array([eos], dtype=np.int32)
        out[name + ".seqs"] = np.ascontiguousarray(seqs)
        out[name + ".scores"] = beam.sequences_scores.numpy().astype(np.float32)
        out[name + ".length_penalty"] = np.array([LENGTH_PENALTY], dtype=np.float32)
        print(name, "eos", eos, "lengths", [int((s != -1).sum()) for s in seqs],
              "scores", beam.sequences_scores.numpy())
    import transformers
    save_file(out, os.path.join(outdir, "beam_eos.safetensors"),
              metadata={"torch": torch.__version__, "transformers": transformers.__version__})


if __name__ == "__main__":
    main()
