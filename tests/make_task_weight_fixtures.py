#!/usr/bin/env python3
"""Make the per-task loss weight fixture that tests/test_task_weights.c reads.

A tiny transformers GPT2LMHeadModel (the student) and a second one (the
teacher, for word-level KD), both with perturbed random weights, and a small
sft dataset of examples tagged with tasks. The step the C test runs (data in
file order, B rows per micro-batch, A micro-batches, one rank) is built here
the way data/h5data.h defines a row: inputs[j] = tokens[j] (EOS past the
example), targets[j] = tokens[j+1] where loss_mask[j+1] = 1 (else ignored),
examples cut to T+1 tokens. The reference loss is written out on its own in
torch (float64):

  lm: loss = sum_t w_t * (sum over task t's target tokens in the step of
      -log p(target)) / (task t's target tokens in the step)
  kd: the same with the per-token loss (1 - alpha) * CE + alpha * T^2 *
      KL(softmax(teacher / T) || softmax(student / T))   (beta 0, TRL's GKD
      forward KL)

and its gradients with respect to every student parameter by autograd.

Tensors (safetensors):
  param.<name>, teacher.<name>   the two models (HF names without "transformer.")
  tokens (n_tokens) int32, offsets (n+1) int32, loss_mask (n_tokens) int32,
  task (n) int32               the dataset; task names in metadata "tasks"
  lm.loss, kd.loss (1)         the weighted losses
  lm.task_loss, kd.task_loss (n_tasks)  each task's mean per-token loss (NaN: no tokens)
  lm.grad.<name>, kd.grad.<name>        d loss / d student parameter
Metadata: the model shape, B, T, A, the weights ("weights": "answer:0.7,..."),
kd_alpha, kd_temperature.

Run: .venv/bin/python tests/make_task_weight_fixtures.py tests/fixtures
"""
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2LMHeadModel

N_LAYER, N_HEAD, N_EMBD, V, N_POS = 2, 2, 16, 257, 16
B, T, A = 2, 12, 2
EOS = 256
TASKS = ["answer", "explanation", "other"]
WEIGHTS = [0.7, 0.3, 0.0]          # "other" weighted 0: its tokens train nothing
ALPHA, KD_T = 0.4, 2.0
N_EXAMPLES = 6


def gpt2(seed):
    torch.manual_seed(seed)
    hf = GPT2Config(n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, vocab_size=V,
                    n_positions=N_POS, layer_norm_epsilon=1e-5, activation_function="gelu_new",
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                    bos_token_id=EOS, eos_token_id=EOS)
    hf._attn_implementation = "eager"
    model = GPT2LMHeadModel(hf).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    # round to float32 values, which both sides then hold exactly
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.float().double())
    return model


def strip(name):
    return name[len("transformer."):] if name.startswith("transformer.") else name


def dataset(rng):
    """Examples of varied length (some past T+1, cut) and prompt/completion
    split; tasks chosen so the first step (A*B = 4 rows) holds all three."""
    tokens, offsets, mask, task = [], [0], [], []
    lengths = [9, 16, 7, 14, 11, 5]
    prompts = [3, 5, 2, 6, 4, 2]
    tags = [0, 1, 0, 2, 1, 0]
    for n, p, t in zip(lengths, prompts, tags):
        ids = rng.integers(0, 256, n - 1).tolist() + [EOS]
        tokens += ids
        mask += [0] * p + [1] * (n - p)
        offsets.append(len(tokens))
        task.append(t)
    return (np.array(tokens, np.int32), np.array(offsets, np.int32), np.array(mask, np.int32),
            np.array(task, np.int32))


def rows(tokens, offsets, mask, first, count):
    """(count, T) inputs and targets (-100 = none) as data/h5data.h cuts sft rows."""
    inputs = np.full((count, T), EOS, np.int64)
    targets = np.full((count, T), -100, np.int64)
    for r in range(count):
        s, e = offsets[first + r], offsets[first + r + 1]
        n = min(e - s, T + 1)
        for j in range(T):
            if j < n:
                inputs[r, j] = tokens[s + j]
            if j + 1 < n and mask[s + j + 1]:
                targets[r, j] = tokens[s + j + 1]
    return torch.tensor(inputs), torch.tensor(targets)


def step_loss(student, teacher, data, kd):
    tokens, offsets, mask, task = data
    inputs, targets = rows(tokens, offsets, mask, 0, A * B)   # the whole step, file order
    row_task = torch.tensor(task[:A * B], dtype=torch.long)
    logits = student(inputs).logits                           # (A*B, T, V)
    logp = torch.log_softmax(logits, -1)
    on = targets >= 0
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    per_token = nll
    if kd:
        with torch.no_grad():
            t_logits = teacher(inputs).logits
        log_t = torch.log_softmax(t_logits / KD_T, -1)
        log_s = torch.log_softmax(logits / KD_T, -1)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)          # KL(teacher || student)
        per_token = (1 - ALPHA) * nll + ALPHA * KD_T ** 2 * kl
    loss = torch.zeros((), dtype=torch.float64)
    task_loss = []
    for t, w in enumerate(WEIGHTS):
        sel = on & (row_task == t).unsqueeze(-1)
        count = int(sel.sum())
        mean = per_token[sel].sum() / count if count else torch.tensor(float("nan"))
        task_loss.append(float(mean.detach()))
        if count:
            loss = loss + w * mean
    student.zero_grad()
    loss.backward()
    grads = {strip(n): p.grad.detach().float().numpy().copy() for n, p in student.named_parameters()}
    return float(loss), np.array(task_loss, np.float32), grads


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    student, teacher = gpt2(11), gpt2(12)
    student.train()  # dropout 0: deterministic
    teacher.eval()
    data = dataset(np.random.default_rng(5))
    out = {"tokens": data[0], "offsets": data[1], "loss_mask": data[2], "task": data[3]}
    for n, p in student.named_parameters():
        out["param." + strip(n)] = p.detach().float().numpy().copy()
    for n, p in teacher.named_parameters():
        out["teacher." + strip(n)] = p.detach().float().numpy().copy()
    for tag, kd in (("lm", False), ("kd", True)):
        loss, task_loss, grads = step_loss(student, teacher, data, kd)
        out[tag + ".loss"] = np.array([loss], np.float32)
        out[tag + ".task_loss"] = task_loss
        for n, g in grads.items():
            out[f"{tag}.grad.{n}"] = g
        print(f"{tag}: loss {loss:.8f}, per task {task_loss}")
    meta = dict(n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, vocab_size=V, n_positions=N_POS,
                B=B, T=T, A=A, eos=EOS, tasks=",".join(TASKS),
                weights=", ".join(f"{n}: {w:g}" for n, w in zip(TASKS, WEIGHTS)),
                kd_alpha=ALPHA, kd_temperature=KD_T)
    path = os.path.join(out_dir, "task_weights.safetensors")
    save_file(out, path, metadata={k: str(v) for k, v in meta.items()})
    print("wrote", path)


if __name__ == "__main__":
    main()
