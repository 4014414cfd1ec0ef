#!/usr/bin/env python3
"""Make the knowledge-distillation fixtures that tests/test_kd.c reads.

The reference is torch autograd (float64) of the generalized Jensen-Shannon
divergence as TRL's GKDTrainer.generalized_jsd_loss defines it (beta 0: forward
KL(t||s); beta 1: reverse KL(s||t); otherwise beta KL(t||m) + (1-beta) KL(s||m),
m = beta t + (1-beta) s, all on softmax(logits / T)), written out here on its own
so the C kernels are checked against an independent implementation.

Per fixture file, shared inputs (float32, which the float64 reference reads
exactly):
  logits (N,V), teacher_logits (N,V), targets (N) int32 (-1 = no target),
  g (N) dLoss/dlogp, w (N) KD weights (some zero)
and for each beta in BETAS and T in TEMPS, with tag "b{beta}_T{T}":
  kd.<tag>      (N) the per-row divergence (0 where target < 0)
  dlogits.<tag> (N,V) d/dlogits of sum_i g_i logp_i + w_i D_i, rows with
                target < 0 zero (what classifier_kd_backward writes)
  agree         (N) argmax(student) == argmax(teacher), 0 where target < 0
kd_topk.safetensors also has teacher_ids (N,K) int32 (the teacher's top K,
distinct) and teacher_logp (N,K) = log_softmax(teacher_logits) at those ids,
and kd.<tag>/dlogits.<tag> of the K+1 bucket divergence (the K tokens plus one
remainder bucket), see kernels/ops.h.

Run: .venv/bin/python tests/make_kd_fixtures.py tests/fixtures
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

BETAS = [0.0, 0.5, 1.0, 0.25]  # 0.25: 0.5 alone cannot tell beta from 1 - beta
TEMPS = [1.0, 2.0, 0.5]
N, V, K = 12, 37, 8


def tag(beta, T):
    return f"b{beta:g}_T{T:g}"


def kl(log_p, log_q):
    """KL(p || q) summed over the last dimension, 0 log 0 = 0."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(-1)


def generalized_jsd(log_s, log_t, beta):
    """Per-row divergence from student and teacher log-probs (TRL's definition)."""
    if beta == 0.0:
        return kl(log_t, log_s)
    if beta == 1.0:
        return kl(log_s, log_t)
    log_m = torch.logaddexp(log_t + np.log(beta), log_s + np.log1p(-beta))
    return beta * kl(log_t, log_m) + (1.0 - beta) * kl(log_s, log_m)


def make_inputs(seed):
    rng = np.random.default_rng(seed)
    logits = (2.0 * rng.standard_normal((N, V))).astype(np.float32)
    # a teacher related to the student, so the divergences are moderate
    teacher = (logits + 1.5 * rng.standard_normal((N, V))).astype(np.float32)
    targets = rng.integers(0, V, N).astype(np.int32)
    targets[[3, 9]] = -1
    g = (rng.uniform(-1.0, 1.0, N) / N).astype(np.float32)
    w = rng.uniform(0.2, 1.5, N).astype(np.float32)
    w[5] = 0.0      # CE only
    g[7] = 0.0      # KD only
    g[[3, 9]] = 0.0
    # row 2: the student's argmax equals the teacher's
    teacher[2, int(np.argmax(logits[2]))] = teacher[2].max() + 1.0
    return logits, teacher, targets, g, w


def reference(logits, targets, g, w, divergence):
    """kd (N) and d/dlogits of sum g logp + w D, rows with target < 0 zeroed."""
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    tg = torch.tensor(targets, dtype=torch.long)
    valid = tg >= 0
    logp = torch.log_softmax(z, -1).gather(-1, tg.clamp(min=0)[:, None])[:, 0]
    d = divergence(z)
    zero = torch.zeros_like(d)
    kd = torch.where(valid, d, zero)
    gt = torch.tensor(g, dtype=torch.float64)
    wt = torch.tensor(w, dtype=torch.float64)
    loss = (torch.where(valid, gt * logp, zero) + torch.where(valid, wt * d, zero)).sum()
    loss.backward()
    return kd.detach().numpy().astype(np.float32), z.grad.numpy().astype(np.float32)


def agree_of(logits, teacher_top, targets):
    a = (np.argmax(logits, -1) == teacher_top).astype(np.float32)
    a[targets < 0] = 0.0
    return a


def online(out_dir):
    logits, teacher, targets, g, w = make_inputs(11)
    out = dict(logits=logits, teacher_logits=teacher, targets=targets, g=g, w=w,
               agree=agree_of(logits, np.argmax(teacher, -1), targets))
    zt = torch.tensor(teacher, dtype=torch.float64)
    for beta in BETAS:
        for T in TEMPS:
            def div(z):
                return generalized_jsd(torch.log_softmax(z / T, -1),
                                       torch.log_softmax(zt / T, -1), beta)
            kd, dz = reference(logits, targets, g, w, div)
            out["kd." + tag(beta, T)] = kd
            out["dlogits." + tag(beta, T)] = dz
    save_file(out, os.path.join(out_dir, "kd_online.safetensors"))


def topk(out_dir):
    logits, teacher, targets, g, w = make_inputs(12)
    lp_full = torch.log_softmax(torch.tensor(teacher, dtype=torch.float64), -1)
    # store the ids in a shuffled order: the kernels must not assume sorted ids
    rng = np.random.default_rng(13)
    ids = np.argsort(-teacher, -1)[:, :K]
    ids = np.stack([row[rng.permutation(K)] for row in ids]).astype(np.int32)
    lp = lp_full.gather(-1, torch.tensor(ids, dtype=torch.long)).numpy().astype(np.float32)
    out = dict(logits=logits, teacher_logits=teacher, targets=targets, g=g, w=w,
               teacher_ids=ids, teacher_logp=lp,
               agree=agree_of(logits, np.argmax(teacher, -1), targets))
    idt = torch.tensor(ids, dtype=torch.long)
    support = torch.zeros(N, V, dtype=torch.bool)
    support.scatter_(1, idt, True)
    p = torch.tensor(lp, dtype=torch.float64).exp()
    r = (1.0 - p.sum(-1, keepdim=True)).clamp(min=0.0)
    for beta in BETAS:
        for T in TEMPS:
            q = torch.cat([p ** (1.0 / T), r ** (1.0 / T)], -1)
            log_q = (q / q.sum(-1, keepdim=True)).log()

            def div(z):
                s = torch.softmax(z / T, -1)
                s_sup = s.gather(-1, idt)
                s_rem = torch.where(support, torch.zeros_like(s), s).sum(-1, keepdim=True)
                log_s = torch.cat([s_sup, s_rem], -1).log()
                return generalized_jsd(log_s, log_q, beta)
            kd, dz = reference(logits, targets, g, w, div)
            out["kd." + tag(beta, T)] = kd
            out["dlogits." + tag(beta, T)] = dz
    save_file(out, os.path.join(out_dir, "kd_topk.safetensors"))


if __name__ == "__main__":
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    torch.set_default_dtype(torch.float64)
    online(out_dir)
    topk(out_dir)
