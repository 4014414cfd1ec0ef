"""tests/make_dpo_fixtures.py — reference values for tests/test_dpo.c.

    .venv/bin/python tests/make_dpo_fixtures.py tests/fixtures

Writes dpo.json: a few batches of preference pairs given as per-token
log-probs of each completion, and for every case (loss type, beta, label
smoothing, rpo_alpha, simpo_gamma) the loss, its gradient with respect to each
pair's summed log-probs, and TRL's metrics. Everything is float64 torch, the
formulas are written out here from TRL's definitions (DPOTrainer.dpo_loss and
concatenated_forward in TRL 0.19, the ipo normalisation of TRL 1.x, SimPO from
CPOTrainer.cpo_loss), and gradients come from autograd with respect to the
per-token log-probs, so the C side's claim "every completion token's weight is
dL/d(its sequence's sum)" is checked too (asserted here, stored per pair).
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def make_batches():
    g = torch.Generator().manual_seed(1234)

    def tokens(n, lo, hi):
        return (torch.rand(n, generator=g) * (hi - lo) + lo).tolist()

    batches = []
    # moderate: typical sums of tens of tokens, reference close to the policy
    chosen, rejected, ref_c, ref_r = [], [], [], []
    for n_c, n_r in [(7, 5), (3, 11), (12, 12), (1, 4), (9, 2)]:
        c, r = tokens(n_c, -4.0, -0.01), tokens(n_r, -4.0, -0.01)
        chosen.append(c)
        rejected.append(r)
        ref_c.append(sum(c) + float(torch.randn(1, generator=g)) * 2)
        ref_r.append(sum(r) + float(torch.randn(1, generator=g)) * 2)
    batches.append(dict(name="moderate", chosen=chosen, rejected=rejected, ref_c=ref_c, ref_r=ref_r))

    # extreme: margins of hundreds of nats both ways (logsigmoid must not overflow)
    chosen = [tokens(40, -9.0, -6.0), tokens(30, -0.2, -0.001), tokens(25, -12.0, -10.0)]
    rejected = [tokens(35, -0.2, -0.001), tokens(50, -10.0, -8.0), tokens(20, -12.0, -10.0)]
    ref_c = [-5.0, -400.0, -250.0]
    ref_r = [-400.0, -3.0, -230.0]
    batches.append(dict(name="extreme", chosen=chosen, rejected=rejected, ref_c=ref_c, ref_r=ref_r))

    # exact: dyadic values, so sums are exact in any order: an exact reward tie
    # (accuracy counts it as wrong, chosen > rejected is strict), a pair with no
    # chosen target token (ipo/simpo divide by max(n, 1)), and equal sums.
    chosen = [[-0.5, -1.25, -2.0], [], [-1.0, -1.0], [-0.125]]
    rejected = [[-0.75, -0.5], [-2.5, -0.25, -1.0], [-1.0, -1.0], [-3.0, -0.5]]
    ref_c = [-3.5, -1.0, -2.0, -0.5]
    ref_r = [-1.0, -4.0, -2.0, -2.0]  # pair 0: both log-ratios are +0.25; pair 2: both 0
    batches.append(dict(name="exact", chosen=chosen, rejected=rejected, ref_c=ref_c, ref_r=ref_r))
    return batches


def log_ratio_terms(loss_type, beta, ls, gamma, pc, pr, rc, rr, n_c, n_r):
    """Per-pair losses, chosen/rejected rewards and logged logps, as TRL defines them."""
    if loss_type == "simpo":  # CPOTrainer: average log-probs, no reference
        avg_c, avg_r = pc / n_c.clamp(min=1), pr / n_r.clamp(min=1)
        logits = (avg_c - avg_r) - gamma / beta
        losses = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
        return losses, beta * avg_c, beta * avg_r, avg_c, avg_r
    logits = (pc - pr) - (rc - rr)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    elif loss_type == "robust":
        losses = (-F.logsigmoid(beta * logits) * (1 - ls) + F.logsigmoid(-beta * logits) * ls) / (1 - 2 * ls)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    elif loss_type == "ipo":
        delta = (pc - rc) / n_c.clamp(min=1) - (pr - rr) / n_r.clamp(min=1)
        losses = (delta - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(loss_type)
    return losses, beta * (pc - rc), beta * (pr - rr), pc, pr


def run_case(batch, loss_type, beta, ls, rpo_alpha, gamma):
    chosen = [torch.tensor(c, requires_grad=True) for c in batch["chosen"]]
    rejected = [torch.tensor(r, requires_grad=True) for r in batch["rejected"]]
    pc = torch.stack([c.sum() for c in chosen])
    pr = torch.stack([r.sum() for r in rejected])
    rc, rr = torch.tensor(batch["ref_c"]), torch.tensor(batch["ref_r"])
    n_c = torch.tensor([float(len(c)) for c in batch["chosen"]])
    n_r = torch.tensor([float(len(r)) for r in batch["rejected"]])

    losses, rew_c, rew_r, logp_c, logp_r = log_ratio_terms(loss_type, beta, ls, gamma, pc, pr, rc, rr, n_c, n_r)
    # RPO: token-mean NLL over every chosen completion token of the batch
    all_chosen = torch.cat(chosen)
    nll = -all_chosen.mean()
    loss = losses.mean()
    if rpo_alpha:
        loss = loss + rpo_alpha * nll
    loss.backward()

    def per_sequence(tensors):
        out = []
        for t in tensors:
            if t.numel() == 0:
                out.append(0.0)  # no token: any value works; the C side reports its sum gradient
                continue
            gr = t.grad
            assert torch.allclose(gr, gr[0].expand_as(gr), rtol=1e-14, atol=0), gr
            out.append(float(gr[0]))
        return out

    d_c, d_r = per_sequence(chosen), per_sequence(rejected)
    metrics = {
        "rewards/chosen": float(rew_c.detach().mean()),
        "rewards/rejected": float(rew_r.detach().mean()),
        "rewards/accuracies": float((rew_c > rew_r).double().mean()),
        "rewards/margins": float((rew_c - rew_r).detach().mean()),
        "logps/chosen": float(logp_c.detach().mean()),
        "logps/rejected": float(logp_r.detach().mean()),
        "nll_loss": float(nll.detach()),
    }
    return dict(loss=float(loss.detach()), dlogp_c=d_c, dlogp_r=d_r, metrics=metrics)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    batches = make_batches()
    settings = []
    for loss_type in ["sigmoid", "robust", "hinge", "ipo", "simpo"]:
        for beta in [0.1, 0.5, 2.0]:
            settings.append((loss_type, beta, 0.0, 0.0, 0.5))
    settings += [
        ("sigmoid", 0.1, 0.1, 0.0, 0.5),  # conservative DPO
        ("sigmoid", 2.0, 0.3, 0.0, 0.5),
        ("robust", 0.1, 0.1, 0.0, 0.5),
        ("robust", 0.5, 0.4, 0.0, 0.5),
        ("simpo", 2.0, 0.1, 0.0, 1.0),
        ("simpo", 0.5, 0.0, 0.0, 0.0),
        ("sigmoid", 0.1, 0.0, 1.0, 0.5),  # RPO
        ("sigmoid", 0.5, 0.1, 0.3, 0.5),
        ("ipo", 0.1, 0.0, 0.5, 0.5),
        ("hinge", 0.5, 0.0, 2.0, 0.5),
        ("robust", 2.0, 0.2, 0.7, 0.5),
        ("simpo", 2.0, 0.0, 0.25, 0.5),
    ]
    cases = []
    for b, batch in enumerate(batches):
        for loss_type, beta, ls, rpo, gamma in settings:
            case = dict(batch=b, loss_type=loss_type, beta=beta, label_smoothing=ls, rpo_alpha=rpo, simpo_gamma=gamma)
            case.update(run_case(batch, loss_type, beta, ls, rpo, gamma))
            assert math.isfinite(case["loss"]), case
            cases.append(case)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "dpo.json")
    with open(path, "w") as f:
        json.dump(dict(batches=batches, cases=cases), f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(batches)} batches, {len(cases)} cases")


if __name__ == "__main__":
    main()
