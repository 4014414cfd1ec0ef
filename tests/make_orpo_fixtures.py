"""tests/make_orpo_fixtures.py — reference values for tests/test_orpo.c.

    .venv/bin/python tests/make_orpo_fixtures.py tests/fixtures

Writes orpo.json: a few micro-batches of preference pairs given as per-token
log-probs (the chosen row's prompt tokens that have a predecessor, its
completion tokens, the rejected row's completion tokens), and for every case
(batch, beta) the ORPO loss, its gradient with respect to every one of those
per-token log-probs, and TRL's metrics.

The formulas are written out here from TRL's ORPOTrainer
(trl/experimental/orpo/orpo_trainer.py, TRL 1.x):
  concatenated_forward: chosen_nll_loss = CrossEntropyLoss (token mean) over
      the chosen half's input ids under the attention mask, shifted: every
      chosen token that has a predecessor, prompt and completion;
      policy_*_logps = get_batch_logps(average_log_prob=True): the mean
      log-prob of the completion tokens (labels != -100);
  odds_ratio_loss: log_odds = (c - r) - (log1mexp(c) - log1mexp(r)),
      ratio = logsigmoid(log_odds), losses = beta * ratio,
      rewards = beta * logps; returns mean(ratio), mean(log_odds);
  get_batch_loss_metrics: loss = nll - losses.mean(); the metrics below.
Everything is float64 torch (TRL casts the odds to float32; the C side works
in double). The per-token log-probs are float32 values, so the C test reads
them exactly as the model would hand them over. Gradients are autograd's.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def log1mexp(x):
    """log(1 - exp(x)) for x <= 0, as TRL's log1mexp (branch at -ln 2)."""
    t = -0.6931471805599453
    return torch.where(x < t, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def make_batches():
    g = torch.Generator().manual_seed(4321)

    def tokens(n, lo, hi):
        # float32 values: the C side gets them as the model's float log-probs
        return (torch.rand(n, generator=g) * (hi - lo) + lo).float().double().tolist()

    batches = []
    # moderate: typical completions of a few tokens, prompts of 0..4 scored tokens
    prompt, chosen, rejected = [], [], []
    for n_p, n_c, n_r in [(2, 7, 5), (0, 3, 11), (4, 12, 12), (1, 1, 4), (3, 9, 2)]:
        prompt.append(tokens(n_p, -6.0, -0.5))
        chosen.append(tokens(n_c, -4.0, -0.01))
        rejected.append(tokens(n_r, -4.0, -0.01))
    batches.append(dict(name="moderate", prompt=prompt, chosen=chosen, rejected=rejected))

    # near certain and very unlikely completions: average log-probs on both
    # sides of log1mexp's branch at -ln 2, log odds of tens both ways
    prompt = [tokens(3, -3.0, -1.0), tokens(2, -3.0, -1.0), tokens(1, -3.0, -1.0)]
    chosen = [tokens(6, -2e-4, -1e-6), tokens(5, -14.0, -11.0), tokens(4, -0.8, -0.6)]
    rejected = [tokens(5, -12.0, -9.0), tokens(7, -3e-5, -1e-7), tokens(3, -0.75, -0.65)]
    batches.append(dict(name="extreme", prompt=prompt, chosen=chosen, rejected=rejected))

    # exact: dyadic values; a tie (equal averages: accuracy counts it as wrong,
    # the comparison is strict) and a one-token pair
    prompt = [[-1.0, -0.5], [-2.0], []]
    chosen = [[-0.5, -1.5], [-0.25], [-2.0, -1.0, -3.0]]
    rejected = [[-1.0, -1.0], [-4.0], [-0.5, -0.5]]
    batches.append(dict(name="exact", prompt=prompt, chosen=chosen, rejected=rejected))
    return batches


def run_case(batch, beta):
    prompt = [torch.tensor(p, requires_grad=True) for p in batch["prompt"]]
    chosen = [torch.tensor(c, requires_grad=True) for c in batch["chosen"]]
    rejected = [torch.tensor(r, requires_grad=True) for r in batch["rejected"]]
    # chosen_nll_loss: token mean over every scored token of the chosen rows
    nll = -torch.cat([torch.cat([p, c]) for p, c in zip(prompt, chosen)]).mean()
    c = torch.stack([t.mean() for t in chosen])
    r = torch.stack([t.mean() for t in rejected])
    log_odds = (c - r) - (log1mexp(c) - log1mexp(r))
    ratio = F.logsigmoid(log_odds)
    losses = beta * ratio
    loss = nll - losses.mean()
    loss.backward()

    def grads(tensors):
        return [t.grad.tolist() if t.numel() else [] for t in tensors]

    rew_c, rew_r = beta * c.detach(), beta * r.detach()
    metrics = {
        "rewards/chosen": float(rew_c.mean()),
        "rewards/rejected": float(rew_r.mean()),
        "rewards/accuracies": float((rew_c > rew_r).double().mean()),
        "rewards/margins": float((rew_c - rew_r).mean()),
        "logps/chosen": float(c.detach().mean()),
        "logps/rejected": float(r.detach().mean()),
        "nll_loss": float(nll.detach()),
        "log_odds_ratio": float(ratio.detach().mean()),
        "log_odds_chosen": float(log_odds.detach().mean()),
    }
    return dict(loss=float(loss.detach()), grad_prompt=grads(prompt), grad_chosen=grads(chosen),
                grad_rejected=grads(rejected), metrics=metrics)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    batches = make_batches()
    cases = []
    for b, batch in enumerate(batches):
        for beta in [0.1, 0.5, 2.0]:
            case = dict(batch=b, beta=beta)
            case.update(run_case(batch, beta))
            assert math.isfinite(case["loss"]), case
            cases.append(case)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "orpo.json")
    with open(path, "w") as f:
        json.dump(dict(batches=batches, cases=cases), f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(batches)} batches, {len(cases)} cases")


if __name__ == "__main__":
    main()
