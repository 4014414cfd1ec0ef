#!/usr/bin/env python3
"""Make the byte-vocabulary Llama-family checkpoints that tests/test_cli_families.c
drives through the command line (data build, train, generate, stages, dpo).

tests/fixtures/families holds parity fixtures of 64-97 tokens, which no
tokenizer retort knows can feed text to. These are transformers models of 257
tokens (retort's built-in byte tokenizer: 256 bytes + EOS 256), so `retort
data build`, `retort generate --prompt TEXT` and every other command that reads
text run on them as they would on a Hub checkpoint:

  llama           GQA (4 query heads over 2 kv heads), untied head
  qwen3           q/k RMSNorm, head_dim 16 with hidden 32 (q is 64 wide), tied
  qwen2_teacher   q/k/v biases, 48 wide, 2 layers, tied
  qwen2_student   the same family, 24 wide, 1 layer: the distillation student
                  (untrained, no expected.json)

Each starts from transformers' init moved by N(0, 0.05^2) noise (norm gains
and biases off their trivial values); all but the student are then trained
with AdamW on the task the C test uses (reverse a word of a-f: "abc=" ->
"cba" then EOS), so their generations are text and distillation has
something to teach. Each directory holds what save_pretrained writes (fp32,
no generation_config.json) and, but for the student, expected.json: for PROMPTS, transformers'
greedy generate() continuation (max_new_tokens MAX_NEW, stopping at EOS) and
its 3-best beam search (num_beams 3, length_penalty 1, early_stopping False,
EOS on), as text and token ids with the beams' sequence scores. The script
refuses a model whose greedy step has a top-2 logit gap under 1e-4 or whose
beam scores lie within 1e-4 (a near tie the C model could break the other
way), or whose outputs are not ASCII (they are compared as JSON text).

Run with: make fixtures
  (or .venv/bin/python tests/make_cli_family_fixtures.py tests/fixtures/cli_families)
"""
import json
import os
import random
import shutil
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

V, EOS, CTX = 257, 256, 64
PROMPTS = ["abc=", "fed=", "cabd=", "eeaf=", "bdfa="]
MAX_NEW = 6

COMMON = dict(vocab_size=V, bos_token_id=EOS, eos_token_id=EOS, max_position_embeddings=CTX,
              hidden_act="silu", attention_dropout=0.0)
SPECS = [
    dict(name="llama", cls=LlamaConfig, seed=21, train_steps=800,
         cfg=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                  rope_parameters=dict(rope_type="default", rope_theta=10000.0),
                  tie_word_embeddings=False)),
    dict(name="qwen3", cls=Qwen3Config, seed=22, train_steps=800,
         cfg=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6,
                  rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
                  tie_word_embeddings=True)),
    dict(name="qwen2_teacher", cls=Qwen2Config, seed=23, train_steps=1200,
         cfg=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                  rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
                  tie_word_embeddings=True)),
    dict(name="qwen2_student", cls=Qwen2Config, seed=24, train_steps=0,
         cfg=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-6,
                  rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
                  tie_word_embeddings=True)),
]


def task_stream(rng, n):
    """n examples "abc=cba" + EOS, concatenated (byte ids)."""
    ids = []
    for _ in range(n):
        w = "".join(rng.choice("abcdef") for _ in range(rng.randint(3, 5)))
        ids += list((w + "=" + w[::-1]).encode()) + [EOS]
    return ids


def train(model, steps, seed):
    rng = random.Random(seed)
    stream = torch.tensor(task_stream(rng, 4000))
    T, B = 32, 16
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    loss = None
    for _ in range(steps):
        starts = torch.randint(0, stream.numel() - T - 1, (B,), generator=g)
        x = torch.stack([stream[s:s + T + 1] for s in starts.tolist()])
        logits = model(input_ids=x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return None if loss is None else loss.item()


def text_of(ids, name):
    assert all(t < 128 for t in ids), f"{name}: a generated token is not ASCII: {ids}"
    return bytes(ids).decode("ascii")


def check_greedy(model, prompt, new, name):
    """generate()'s greedy tokens are the argmax of full forwards, with no near tie."""
    seq = list(prompt)
    with torch.no_grad():
        for want in new:
            last = model(input_ids=torch.tensor([seq])).logits[0, -1]
            top = torch.topk(last, 2).values
            gap = float(top[0] - top[1])
            assert int(last.argmax()) == want, f"{name}: generate() greedy is not the argmax"
            assert gap > 1e-4, f"{name}: greedy step with top-2 gap {gap:.2g}: change the seed"
            seq.append(want)


def generations(model, name):
    out = []
    for p in PROMPTS:
        ids = list(p.encode())
        x = torch.tensor([ids])
        common = dict(attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=MAX_NEW,
                      pad_token_id=EOS, eos_token_id=EOS, use_cache=True)
        with torch.no_grad():
            greedy = model.generate(x, **common)[0, len(ids):].tolist()
            beam = model.generate(x, num_beams=3, num_return_sequences=3, length_penalty=1.0,
                                  early_stopping=False, output_scores=True,
                                  return_dict_in_generate=True, **common)
        check_greedy(model, ids, greedy, name)
        if greedy and greedy[-1] == EOS:
            greedy = greedy[:-1]
        beams, scores = [], beam.sequences_scores.tolist()
        for row in beam.sequences[:, len(ids):].tolist():
            while row and row[-1] == EOS:  # EOS, then the padding after a finished beam
                row.pop()
            beams.append(row)
        assert all(abs(scores[i] - scores[i + 1]) > 1e-4 for i in range(2)), \
            f"{name}: {p}: beam scores tie: {scores}"
        out.append(dict(prompt=p, greedy=text_of(greedy, name), greedy_ids=greedy,
                        beam3=[text_of(b, name) for b in beams], beam3_ids=beams,
                        beam3_scores=scores))
    return out


def make(spec, root):
    name = spec["name"]
    torch.manual_seed(spec["seed"])
    cfg = spec["cls"](**COMMON, **spec["cfg"])
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss = train(model, spec["train_steps"], spec["seed"])
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    model = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    n = sum(p.numel() for p in model.parameters())
    if not spec["train_steps"]:  # the untrained student babbles bytes: nothing to compare
        print(f"{d}: {n} parameters, untrained")
        return
    expected = dict(max_new_tokens=MAX_NEW, eos_id=EOS, torch=torch.__version__,
                    transformers=transformers.__version__, train_steps=spec["train_steps"],
                    generations=generations(model, name))
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    first = expected["generations"][0]
    print(f"{d}: {n} parameters, train loss {loss:.4f}, {first['prompt']} -> "
          f"{first['greedy']!r}, beams {first['beam3']}")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/cli_families"
    os.makedirs(root, exist_ok=True)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for spec in SPECS:
        make(spec, root)


if __name__ == "__main__":
    main()
