#!/usr/bin/env python3
"""Make the Llama-family parity fixtures that tests/test_families.c reads.

For small random configurations of each family that retort loads from a
Hugging Face directory (llama, mistral, qwen2, qwen3, and GPT-2 with the two
attention-scale options of its config audit) this builds the transformers
model (eager attention, no dropout, fp32), perturbs every parameter so norm
gains and biases are not at their trivial init, writes the directory with
save_pretrained, loads it back with from_pretrained, and records what that
reloaded model computes in tests/fixtures/families/NAME/:

  config.json, model.safetensors   the checkpoint the C test loads (fp32)
  expected.safetensors
    inputs, targets     (B,T) int32 token ids; targets_masked has -100 at ignored spots
    logits              (B,T,V) forward output
    loss, loss_masked   mean cross-entropy over the (un-ignored) targets
    grad.<name>         d loss / d param for `targets`, under the checkpoint's
                        key ("model.layers.0.self_attn.q_proj.weight",
                        "transformer.h.0.attn.c_attn.weight"); a tied head is
                        listed once, as the embedding
    adamw_losses        10 AdamW steps (decay on 2-D weights only: embeddings
                        and linear weights, not norms or biases; global-norm clip)
    trained.<name>      the weights after those AdamW steps
    gen_prompt          (3,) int32 prompt; gen_greedy: transformers' greedy
                        generate() continuation to max_position_embeddings, from trained.*
    gen_beam3           (3, new) the 3-best of beam search (num_beams=3, no EOS,
                        length_penalty 1); gen_beam3_scores their sequence scores
    rope_inv_freq       (HS/2) the inverse frequencies transformers' rotary
                        embedding uses, rope_attention_scaling (1,) the factor on
                        its cos and sin (YaRN) -- Llama families only

Some config.json files are rewritten in the spelling of checkpoints written by
transformers 4 (top-level rope_theta and rope_scaling, torch_dtype, no
head_dim), as most checkpoints on the Hub are; the rest keep the spelling of
the transformers that made them (rope_parameters, dtype). Either way the
expected values come from transformers loading the file as written, and the
rotary tables of the reloaded model are checked against the intended ones.

Three more directories copy llama_gqa2_untied: llama_bf16 (bf16 tensors, one
file) and llama_fp16 (fp16) with their own expected logits and loss -- those
transformers computes in fp32 from the rounded weights -- and
llama_bf16_sharded (the bf16 weights in several shards with
model.safetensors.index.json, no expected file: it must load to llama_bf16's
weights exactly).

Run with: make fixtures  (or .venv/bin/python tests/make_family_fixtures.py tests/fixtures/families)
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from transformers import (AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig,
                          Qwen2Config, Qwen3Config)

ADAMW = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, steps=10)

# Every fixture is tiny (hidden 16-32, 1-3 layers, vocabulary 64-97, T <= 16)
# so that all of them with their gradients and trained weights stay under 2 MB.
# legacy: rewrite config.json as transformers 4 wrote it.
CONFIGS = [
    # grouped-query ratio 1 (plain multi-head), tied head, default rope
    dict(name="llama_mha", family="llama", seed=1, B=2, T=12, legacy=True,
         cfg=dict(vocab_size=64, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=16,
                  rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True)),
    # ratio 2, untied head (the source of the bf16 / fp16 / sharded copies)
    dict(name="llama_gqa2_untied", family="llama", seed=2, B=2, T=10, legacy=False,
         cfg=dict(vocab_size=67, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                  rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False)),
    # ratio 4, and a head_dim of 8 with hidden 16 and 8 heads (q is 64 wide)
    dict(name="llama_gqa4_headdim", family="llama", seed=3, B=2, T=9, legacy=True,
         cfg=dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=8,
                  max_position_embeddings=12, rms_norm_eps=1e-6, rope_theta=10000.0,
                  tie_word_embeddings=True)),
    # multi-query (one kv head), attention_bias (q, k, v and o) and mlp_bias, untied
    dict(name="llama_mqa_bias", family="llama", seed=4, B=3, T=8, legacy=False,
         cfg=dict(vocab_size=64, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=12,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                  attention_bias=True, mlp_bias=True)),
    # rope_scaling linear, in the oldest spelling ("type": "linear")
    dict(name="llama_rope_linear", family="llama", seed=5, B=2, T=12, legacy=True,
         rope=dict(type="linear", factor=2.0),
         cfg=dict(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)),
    # rope_scaling llama3 (as Llama 3.1/3.2): head_dim 16 and theta 10^4 put one
    # frequency in each regime, wavelength 6.3 < 8 kept, 19.9 in (8, 32)
    # smoothed, 63 and up divided by the factor
    dict(name="llama_rope_llama3", family="llama", seed=6, B=2, T=16, legacy=True,
         rope=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=32),
         cfg=dict(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)),
    # rope_scaling yarn (as Qwen2.5 long-context configs), attention factor
    # 0.1 ln 4 + 1 on cos and sin; written as transformers 5 spells it
    dict(name="llama_rope_yarn", family="llama", seed=7, B=2, T=16, legacy=False,
         rope=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=4),
         cfg=dict(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)),
    # yarn with truncate false, explicit beta_fast / beta_slow and attention_factor
    dict(name="llama_rope_yarn_notrunc", family="llama", seed=8, B=2, T=16, legacy=False,
         rope=dict(rope_type="yarn", factor=2.0, original_max_position_embeddings=8,
                   beta_fast=16.0, beta_slow=2.0, attention_factor=1.25, truncate=False),
         cfg=dict(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)),
    # Mistral: sliding_window 32 > max_position_embeddings 16, so exact without a window
    dict(name="mistral", family="mistral", seed=9, B=2, T=12, legacy=True,
         cfg=dict(vocab_size=80, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                  rms_norm_eps=1e-5, rope_theta=1000000.0, sliding_window=32,
                  tie_word_embeddings=False)),
    # Qwen2: q/k/v biases (no o_proj bias), tied head, theta 10^6
    dict(name="qwen2", family="qwen2", seed=10, B=2, T=12, legacy=True,
         cfg=dict(vocab_size=64, hidden_size=24, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                  rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True)),
    # Qwen3: head_dim 8 with hidden 16 and 4 heads (q is 32 wide), q/k RMSNorm, tied
    dict(name="qwen3", family="qwen3", seed=11, B=2, T=12, legacy=False,
         cfg=dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                  max_position_embeddings=16, rms_norm_eps=1e-6, rope_theta=1000000.0,
                  tie_word_embeddings=True)),
    # Qwen3 without grouping, untied, head_dim 16 with hidden 16 and 2 heads
    dict(name="qwen3_untied", family="qwen3", seed=12, B=1, T=16, legacy=True,
         cfg=dict(vocab_size=97, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=16, rms_norm_eps=1e-6, rope_theta=10000.0,
                  tie_word_embeddings=False)),
    # GPT-2 config audit: scale_attn_weights false (scores not divided by sqrt(HS))
    dict(name="gpt2_noscale", family="gpt2", seed=13, B=2, T=12,
         cfg=dict(n_layer=2, n_head=2, n_embd=16, vocab_size=64, n_positions=16,
                  scale_attn_weights=False)),
    # scale_attn_by_inverse_layer_idx true (layer l's scores further / (l + 1))
    dict(name="gpt2_invlayer", family="gpt2", seed=14, B=2, T=12,
         cfg=dict(n_layer=3, n_head=2, n_embd=16, vocab_size=64, n_positions=16,
                  scale_attn_by_inverse_layer_idx=True)),
]
COPIES_OF = "llama_gqa2_untied"

CONFIG_CLASSES = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config,
                  "qwen3": Qwen3Config}


def hf_config(spec):
    cfg = dict(spec["cfg"])
    V = cfg["vocab_size"]
    if spec["family"] == "gpt2":
        c = GPT2Config(layer_norm_epsilon=1e-5, activation_function="gelu_new", resid_pdrop=0.0,
                       embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                       bos_token_id=V - 1, eos_token_id=V - 1, **cfg)
    else:
        theta = cfg.pop("rope_theta")
        rope = dict(spec.get("rope") or {})
        if "type" in rope:  # the oldest spelling; transformers 5 reads it as rope_type
            rope["rope_type"] = rope.pop("type")
        rope.setdefault("rope_type", "default")
        rope["rope_theta"] = theta
        c = CONFIG_CLASSES[spec["family"]](rope_parameters=rope, hidden_act="silu",
                                            attention_dropout=0.0, bos_token_id=V - 1,
                                            eos_token_id=V - 1, **cfg)
    c._attn_implementation = "eager"
    return c


def legacy_config(path, spec):
    """Rewrites config.json as transformers 4 saved it (most Hub checkpoints)."""
    with open(path) as f:
        c = json.load(f)
    rope = c.pop("rope_parameters")
    c["rope_theta"] = rope.pop("rope_theta")
    scaling = spec.get("rope")
    c["rope_scaling"] = dict(scaling) if scaling else None
    if "dtype" in c:
        c["torch_dtype"] = c.pop("dtype")
    if c.get("head_dim") == c["hidden_size"] // c["num_attention_heads"] and spec["family"] != "qwen3":
        del c["head_dim"]  # TinyLlama, SmolLM and Mistral 7B v0.1 configs have none
    c["transformers_version"] = "4.46.0"
    with open(path, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)


def perturbed(spec):
    torch.manual_seed(spec["seed"])
    cfg = hf_config(spec)
    if spec["family"] == "gpt2":
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel(cfg)
    else:
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model = model.float()
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def reload(d):
    m = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
    m.train()  # dropout is 0 so train mode is deterministic
    return m


def save_dir(model, d, **kw):
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True, **kw)
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)


def rotary(model):
    for mod in model.modules():
        if hasattr(mod, "inv_freq") and hasattr(mod, "attention_scaling"):
            return mod.inv_freq.detach().clone(), float(mod.attention_scaling)
    return None


def loss_of(model, inputs, targets):
    logits = model(input_ids=inputs).logits
    V = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1),
                                             ignore_index=-100)
    return logits, loss


def batch(spec, V):
    g = torch.Generator().manual_seed(100 + spec["seed"])
    B, T = spec["B"], spec["T"]
    inputs = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    masked = targets.clone()
    drop = torch.rand((B, T), generator=g) < 0.4
    drop[0, 0] = False  # keep at least one target
    drop[0, 1] = True   # and mask at least one
    masked[drop] = -100
    return inputs, targets, masked


def check_greedy(model, prompt, gen, ctx, name):
    """generate()'s greedy tokens are the argmax of full forwards, and no step
    is a near tie the C model could break the other way."""
    seq = prompt[0].tolist()
    worst = math.inf
    with torch.no_grad():
        while len(seq) < ctx:
            last = model(input_ids=torch.tensor([seq])).logits[0, -1]
            top = torch.topk(last, 2).values
            worst = min(worst, float(top[0] - top[1]))
            seq.append(int(last.argmax()))
    assert seq[3:] == gen, f"{name}: generate() greedy differs from stepwise argmax"
    assert worst > 1e-4, f"{name}: greedy step with top-2 logit gap {worst:.2g}: pick another seed"


def make(spec, root):
    name = spec["name"]
    d = os.path.join(root, name)
    built = perturbed(spec)
    save_dir(built, d)
    if spec.get("legacy"):
        legacy_config(os.path.join(d, "config.json"), spec)
    model = reload(d)
    # what was written is what was built: weights and rotary tables
    want = dict(built.named_parameters())
    for n, p in model.named_parameters():
        assert torch.equal(p, want[n]), f"{name}: {n} changed in the round trip"
    rot = rotary(model)
    if rot is not None:
        ref = rotary(built)
        assert torch.equal(rot[0], ref[0]) and rot[1] == ref[1], f"{name}: rope changed on reload"
    if spec.get("rope"):
        assert rot[0].tolist() != (1.0 / (spec["cfg"]["rope_theta"] ** (
            torch.arange(0, rot[0].numel() * 2, 2, dtype=torch.float) / (rot[0].numel() * 2)))
        ).tolist() or rot[1] != 1.0, f"{name}: rope scaling had no effect"

    V = model.config.vocab_size
    inputs, targets, masked = batch(spec, V)
    params = list(model.named_parameters())
    out = {"inputs": inputs.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
           "targets_masked": masked.numpy().astype(np.int32)}
    if rot is not None:
        out["rope_inv_freq"] = rot[0].numpy().astype(np.float32)
        out["rope_attention_scaling"] = np.array([rot[1]], dtype=np.float32)

    model.zero_grad()
    logits, loss = loss_of(model, inputs, targets)
    loss.backward()
    out["logits"] = logits.detach().numpy().copy()
    out["loss"] = np.array([loss.item()], dtype=np.float32)
    for n, p in params:
        out["grad." + n] = p.grad.detach().numpy().copy()
    with torch.no_grad():
        _, lossm = loss_of(model, inputs, masked)
    out["loss_masked"] = np.array([lossm.item()], dtype=np.float32)

    # ten AdamW steps on the same batch, as tests/make_hf_fixtures.py
    decay = [p for _, p in params if p.dim() >= 2]
    no_decay = [p for _, p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]),
                            eps=ADAMW["eps"], foreach=False, fused=False)
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad()
        _, l = loss_of(model, inputs, targets)
        l.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), ADAMW["clip"])
        opt.step()
        losses.append(l.item())
    out["adamw_losses"] = np.array(losses, dtype=np.float32)
    for n, p in params:
        out["trained." + n] = p.detach().numpy().copy()

    # generation from the trained weights (which have partly memorised the
    # batch, so the continuation is not degenerate), to the end of the context
    ctx = model.config.max_position_embeddings if spec["family"] != "gpt2" else model.config.n_positions
    new = ctx - 3
    prompt = inputs[:1, :3]
    model.eval()
    common = dict(attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=new,
                  min_new_tokens=new, pad_token_id=0, eos_token_id=None, use_cache=True)
    with torch.no_grad():
        gen = model.generate(prompt, **common)
        beam = model.generate(prompt, num_beams=3, num_return_sequences=3, length_penalty=1.0,
                              early_stopping=False, output_scores=True,
                              return_dict_in_generate=True, **common)
    check_greedy(model, prompt, gen[0, 3:].tolist(), ctx, name)
    out["gen_prompt"] = prompt[0].numpy().astype(np.int32)
    out["gen_greedy"] = gen[0, 3:].numpy().astype(np.int32)
    out["gen_beam3"] = beam.sequences[:, 3:].numpy().astype(np.int32)
    out["gen_beam3_scores"] = beam.sequences_scores.numpy().astype(np.float32)
    s = out["gen_beam3_scores"]
    assert all(abs(s[i] - s[i + 1]) > 1e-5 for i in range(2)), f"{name}: beam scores tie: {s}"

    meta = {"family": spec["family"], "seed": str(spec["seed"]), "B": str(spec["B"]),
            "T": str(spec["T"]), "legacy_config": str(bool(spec.get("legacy")))}
    meta.update({"adamw_" + k: repr(v) for k, v in ADAMW.items()})
    meta["torch"] = torch.__version__
    meta["transformers"] = transformers.__version__
    save_file(out, os.path.join(d, "expected.safetensors"), metadata=meta)
    print(f"{d}: loss {loss.item():.6f}  masked {lossm.item():.6f}  "
          f"adamw {losses[0]:.4f} -> {losses[-1]:.4f}  beam {s[0]:.4f}")


def make_copies(root):
    """bf16, fp16 and sharded bf16 copies of COPIES_OF, with the logits
    transformers computes in fp32 from the rounded weights."""
    spec = next(s for s in CONFIGS if s["name"] == COPIES_OF)
    src = reload(os.path.join(root, COPIES_OF))
    V = src.config.vocab_size
    inputs, targets, _ = batch(spec, V)
    for name, dtype, kw in [("llama_bf16", torch.bfloat16, {}),
                            ("llama_fp16", torch.float16, {}),
                            ("llama_bf16_sharded", torch.bfloat16, {"max_shard_size": "8KB"})]:
        d = os.path.join(root, name)
        low = reload(os.path.join(root, COPIES_OF)).to(dtype)
        save_dir(low, d, **kw)
        if kw:
            assert os.path.exists(os.path.join(d, "model.safetensors.index.json")), name
            assert not os.path.exists(os.path.join(d, "model.safetensors")), name
            continue  # the test compares it with llama_bf16
        model = reload(d)  # upcast to fp32 on load
        for (n, p), (_, q) in zip(model.named_parameters(), src.named_parameters()):
            assert torch.equal(p, q.to(dtype).float()), f"{name}: {n} is not the rounded source"
        with torch.no_grad():
            logits, loss = loss_of(model, inputs, targets)
        out = {"inputs": inputs.numpy().astype(np.int32),
               "targets": targets.numpy().astype(np.int32),
               "logits": logits.numpy().copy(), "loss": np.array([loss.item()], dtype=np.float32)}
        meta = {"family": "llama", "source": COPIES_OF, "dtype": str(dtype),
                "torch": torch.__version__, "transformers": transformers.__version__}
        save_file(out, os.path.join(d, "expected.safetensors"), metadata=meta)
        print(f"{d}: loss {loss.item():.6f} ({dtype} weights)")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/families"
    os.makedirs(root, exist_ok=True)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for spec in CONFIGS:
        make(spec, root)
    make_copies(root)


if __name__ == "__main__":
    main()
