#!/usr/bin/env python3
"""Make the TRL 1.x reference that tests/test_trl_dpo.c checks retort against:
preference data through TRL's DPOTrainer and retort's `data build --schema
pref` + `train` with objective dpo, on the same pairs, tokenizer and models.

    .venv/bin/python tests/make_trl_dpo_fixtures.py tests/fixtures/trl_dpo

Writes into the directory:
  tokenizer.json   a byte-level BPE (GPT-2 structure: ByteLevel pre-tokenizer
                   and decoder, "<|endoftext|>" special) trained with Hugging
                   Face `tokenizers` on the start of Moby-Dick
                   (../shared/data/text/moby-dick.txt), VOCAB tokens
  policy/, reference/   two tiny GPT2LMHeadModel checkpoints (save_pretrained,
                   fp32) with that tokenizer beside them
  pairs.jsonl      {prompt, chosen, rejected} lines (standard text format):
                   prompts ending in a space ("Answer: " + "the sea", where
                   BPE merges " the" across the boundary), an empty prompt, prompts
                   of exactly MAX_LENGTH - 1 and MAX_LENGTH tokens (kept with one
                   completion token / dropped), a longer one, a completion cut by
                   max_length, non-ASCII text
  expected.json    from TRL (its version recorded):
                   "tokens": per pair, DPOTrainer's prompt_ids / chosen_ids /
                   rejected_ids with max_length=None (nothing dropped);
                   "kept": the pairs DPOTrainer keeps at max_length MAX_LENGTH;
                   "steps": DPOTrainer's logged loss and metrics of two
                   optimizer steps (beta BETA, lr LR, linear schedule, no
                   warmup, AdamW, weight decay 0, clipping at 1.0) on one batch
                   of all kept pairs, the reference model given;
                   "train": those settings as retort config keys.
  schedules.json   transformers' learning-rate schedules (cosine, linear,
                   constant with warmup; cosine with min_lr): the rate each
                   optimizer step 1..N uses, for optim.schedule_convention hf.

Everything runs on the CPU in fp32 (bf16=False, use_cpu=True). TRL pads with
eos (the tokenizer has no pad token) and right-pads; GPT-2's positions do not
depend on the attention mask, so padding changes no real token's log-prob.
"""
import json
import os
import shutil
import sys

import torch
import transformers
import trl
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from trl import DPOConfig, DPOTrainer

SHARED = "../shared/data"
VOCAB = 400
MAX_LENGTH = 24           # TRL's max_length = retort's data.seq_len + 1
BETA, LR, STEPS = 0.5, 2e-3, 2
EOS = "<|endoftext|>"


def make_tokenizer(out_dir):
    text = open(os.path.join(SHARED, "text/moby-dick.txt"), encoding="utf-8").read()[:200000]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text.split("\n\n"), trainer=trainer)
    path = os.path.join(out_dir, "tokenizer.json")
    tok.save(path)
    return PreTrainedTokenizerFast(tokenizer_file=path, eos_token=EOS)


def exact_length_prompt(hf, text, n):
    """The shortest prefix of text that encodes to n tokens."""
    for k in range(1, len(text) + 1):
        if len(hf(text[:k])["input_ids"]) == n:
            return text[:k]
    sys.exit(f"no prefix of the text encodes to exactly {n} tokens; change the text")


def make_pairs(hf):
    text = ("It is not down on any map; true places never are. Whenever I find myself growing "
            "grim about the mouth, whenever it is a damp, drizzly November in my soul")
    pairs = [
        dict(prompt="Answer: ", chosen="the sea", rejected="and so"),
        dict(prompt="Call me", chosen=" Ishmael.", rejected=" Ahab, the captain."),
        dict(prompt="Q: how many whales? A: ", chosen="Three whales.", rejected="None"),
        dict(prompt="", chosen="The sea.", rejected="A ship!"),
        dict(prompt="The whale is", chosen=" white, and very large, and it swims in the deep "
             "sea all the day long without rest.", rejected=" small."),
        dict(prompt="Caf\u00e9 au lait, na\u00efve ", chosen="fa\u00e7ade \u65e5\u672c",
             rejected="\U0001F40B whale"),
        dict(prompt=exact_length_prompt(hf, text, MAX_LENGTH - 1), chosen=" And so on.",
             rejected=" The end."),
        dict(prompt=exact_length_prompt(hf, text, MAX_LENGTH), chosen=" And so on.",
             rejected=" The end."),
        dict(prompt=text, chosen=" Then I go.", rejected=" I stay."),
        dict(prompt="Ahab said:  ", chosen="  hoist the sails", rejected="  lower them"),
    ]
    return pairs


def make_model(seed, V, eos_id):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=V, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.2,
                     bos_token_id=eos_id, eos_token_id=eos_id)
    return GPT2LMHeadModel(cfg).float()


def dpo_args(out, max_length, steps, batch):
    return DPOConfig(output_dir=out, max_length=max_length, beta=BETA, learning_rate=LR,
                     lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                     max_grad_norm=1.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                     per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                     max_steps=steps, logging_steps=1, save_strategy="no", report_to=[],
                     bf16=False, fp16=False, use_cpu=True, seed=0, dataloader_drop_last=False,
                     loss_type=["sigmoid"], label_smoothing=0.0)


def tokenized(trainer):
    return [dict(prompt_ids=list(r["prompt_ids"]), chosen_ids=list(r["chosen_ids"]),
                 rejected_ids=list(r["rejected_ids"])) for r in trainer.train_dataset]


def schedules():
    """transformers' LambdaLR schedules: the lr optimizer step s (1-based) uses."""
    out = []
    cases = [("cosine", 3, 10, 0.0), ("cosine", 0, 7, 0.0), ("linear", 4, 9, 0.0),
             ("linear", 0, 5, 0.0), ("constant", 5, 8, 0.0), ("cosine", 2, 12, 0.1)]
    for kind, warmup, total, min_rate in cases:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        if kind == "cosine" and min_rate > 0:
            sched = transformers.get_cosine_with_min_lr_schedule_with_warmup(
                opt, warmup, total, min_lr_rate=min_rate)
        elif kind == "cosine":
            sched = transformers.get_cosine_schedule_with_warmup(opt, warmup, total)
        elif kind == "linear":
            sched = transformers.get_linear_schedule_with_warmup(opt, warmup, total)
        else:
            sched = transformers.get_constant_schedule_with_warmup(opt, warmup)
        lrs = []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        out.append(dict(schedule=kind, warmup_steps=warmup, total_steps=total, lr=0.01,
                        min_lr=0.01 * min_rate, lrs=lrs))
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/trl_dpo"
    os.makedirs(out_dir, exist_ok=True)
    hf = make_tokenizer(out_dir)
    V = len(hf)
    pairs = make_pairs(hf)
    with open(os.path.join(out_dir, "pairs.jsonl"), "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")

    dirs = {}
    for name, seed in [("policy", 1), ("reference", 2)]:
        d = os.path.join(out_dir, name)
        shutil.rmtree(d, ignore_errors=True)
        make_model(seed, V, hf.eos_token_id).save_pretrained(d, safe_serialization=True)
        hf.save_pretrained(d)
        dirs[name] = d

    ds = Dataset.from_list(pairs)
    tmp = os.path.join(out_dir, ".trl_tmp")
    # 1. every pair tokenized, nothing dropped
    policy = GPT2LMHeadModel.from_pretrained(dirs["policy"]).float()
    reference = GPT2LMHeadModel.from_pretrained(dirs["reference"]).float()
    t_all = DPOTrainer(model=policy, ref_model=reference, args=dpo_args(tmp, None, 1, 1),
                       train_dataset=ds, processing_class=hf)
    tokens = tokenized(t_all)
    assert len(tokens) == len(pairs)
    # 2. max_length: pairs whose prompt fills it are dropped; two steps on one batch of the rest
    kept = [i for i, t in enumerate(tokens) if len(t["prompt_ids"]) < MAX_LENGTH]
    policy = GPT2LMHeadModel.from_pretrained(dirs["policy"]).float()
    reference = GPT2LMHeadModel.from_pretrained(dirs["reference"]).float()
    trainer = DPOTrainer(model=policy, ref_model=reference,
                         args=dpo_args(tmp, MAX_LENGTH, STEPS, len(kept)), train_dataset=ds,
                         processing_class=hf)
    if tokenized(trainer) != [tokens[i] for i in kept]:
        sys.exit("DPOTrainer kept other pairs than those whose prompt is under max_length")
    trainer.train()
    shutil.rmtree(tmp, ignore_errors=True)
    keys = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
            "logps/chosen", "logps/rejected"]
    steps = [{k: h[k] for k in keys} | {"step": h["step"], "learning_rate": h["learning_rate"]}
             for h in trainer.state.log_history if "rewards/chosen" in h]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1)), steps
    # pairs whose prompt encoding is not a prefix of prompt + completion
    mismatch = []
    for i, p in enumerate(pairs):
        alone = hf(p["prompt"])["input_ids"]
        if len(tokens[i]["prompt_ids"]) < len(alone):
            mismatch.append(i)
    assert 0 in mismatch and 7 not in kept and 6 in kept, (mismatch, kept)
    expected = dict(
        reference=f"TRL {trl.__version__} DPOTrainer, transformers {transformers.__version__}, "
                  f"torch {torch.__version__}",
        max_length=MAX_LENGTH, tokens=tokens, kept=kept, prompt_not_prefix=mismatch, steps=steps,
        train=dict(beta=BETA, lr=LR, steps=STEPS, batch_size=len(kept), seq_len=MAX_LENGTH - 1,
                   schedule="linear", warmup_steps=0, weight_decay=0.0, grad_clip=1.0))
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    with open(os.path.join(out_dir, "schedules.json"), "w") as f:
        json.dump(dict(reference=f"transformers {transformers.__version__}",
                       schedules=schedules()), f, indent=1)
    print(f"wrote {out_dir}: {len(pairs)} pairs, {len(kept)} kept at max_length {MAX_LENGTH}, "
          f"prompt not a prefix in {mismatch}; steps: {steps}")


if __name__ == "__main__":
    main()
