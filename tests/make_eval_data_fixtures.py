#!/usr/bin/env python3
"""tests/make_eval_data_fixtures.py OUT_DIR — the fixtures of `retort eval
--data` (tests/test_cli_eval.c): a tiny GPT-2 (byte vocabulary, 16
positions, weights drawn wide so the next-token distributions are far from
uniform) saved by transformers, three small HDF5 splits in retort's schemas
(lm, sft with loss masks, kd), and the mean NLL per target token that
transformers' model gives on them.

The scored tokens, as eval/data_nll.h defines them: a sequence (the lm file's
whole token stream, or one sft/kd example) is cut into windows of T+1 tokens
starting at multiples of T (the last one shorter); a window's tokens 1..T are
targets, each predicted from the window before it; an sft/kd target counts
where its loss_mask is 1. Each window goes through GPT2LMHeadModel alone
(its logits, torch's log_softmax), and the sum is checked against
transformers' own loss (labels, -100 for the rest) window by window.
Run once: the outputs are committed in tests/fixtures/eval_data/."""
import json
import math
import os
import sys

import h5py
import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

V, EOS, CTX = 257, 256, 16


def root_attrs(f, schema):
    f.attrs["schema"] = np.bytes_(schema)
    f.attrs["version"] = np.int64(1)
    f.attrs["vocab_size"] = np.int64(V)
    f.attrs["eos_id"] = np.int64(EOS)
    f.attrs["pad_id"] = np.int64(EOS)
    f.attrs["tokenizer"] = np.bytes_("bytes")


def write_split(path, schema, docs, masks=None):
    with h5py.File(path, "w") as f:
        root_attrs(f, schema)
        tokens = np.concatenate([np.asarray(d, np.uint16) for d in docs])
        offsets = np.cumsum([0] + [len(d) for d in docs]).astype(np.int64)
        f.create_dataset("tokens", data=tokens)
        f.create_dataset("offsets", data=offsets)
        if masks is not None:
            f.create_dataset("loss_mask", data=np.concatenate(
                [np.asarray(m, np.uint8) for m in masks]))


def text(s):
    return list(s.encode()) + [EOS]


def windows(seq, mask, T):
    """(inputs, targets) per window; a target is -100 where it does not count."""
    out = []
    for s in range(0, max(len(seq) - 1, 0), T):
        w = seq[s:s + T + 1]
        if len(w) < 2:
            break
        tg = [w[j + 1] if mask is None or mask[s + j + 1] else -100 for j in range(len(w) - 1)]
        out.append((w[:-1], tg))
    return out


def score(model, seqs, masks, T):
    total, count = 0.0, 0
    for i, seq in enumerate(seqs):
        for inp, tg in windows(seq, masks[i] if masks else None, T):
            ids = torch.tensor([inp])
            labels = torch.tensor([tg])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0].double()
            lp = torch.log_softmax(logits, -1)
            keep = labels[0] != -100
            if not keep.any():
                continue
            nll = -lp[keep, labels[0][keep]].sum().item()
            n = int(keep.sum())
            # transformers' own loss shifts labels; give it the window's
            # targets one place later (labels[t] is predicted at t-1)
            shifted = torch.tensor([[-100] + tg[:-1]])
            with torch.no_grad():
                hf = model(input_ids=ids, labels=shifted).loss.item()
            last = -lp[-1, tg[-1]].item() if tg[-1] != -100 else 0.0
            hf_n = n - (1 if tg[-1] != -100 else 0)
            if hf_n > 0:
                assert abs(hf * hf_n - (nll - last)) < 1e-3, (hf * hf_n, nll - last)
            total += nll
            count += n
    return {"nll_sum": total, "tokens": count, "nll": total / count,
            "ppl": math.exp(total / count)}


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(18)
    cfg = GPT2Config(vocab_size=V, n_positions=CTX, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=EOS, eos_token_id=EOS, tie_word_embeddings=True)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:
                continue
            p.add_(torch.randn_like(p) * (0.35 if p.dim() > 1 else 0.1))
    model.save_pretrained(os.path.join(out, "model"), safe_serialization=True)

    lm_docs = [text("the cat sat on the mat"), text("a dog"), text("hello, world")]
    write_split(os.path.join(out, "lm.h5"), "lm", lm_docs)
    # prompt masked out, completion + EOS scored; one longer than a window,
    # one with two scored spans
    sft = [("abc=", "cba"), ("hello=", "olleh"), ("a long prompt here=", "ereh tpmorp gnol a"),
           ("q", "r")]
    sft_docs, sft_masks = [], []
    for p, c in sft:
        d = list(p.encode()) + list(c.encode()) + [EOS]
        m = [0] * len(p.encode()) + [1] * (len(c.encode()) + 1)
        sft_docs.append(d)
        sft_masks.append(m)
    sft_docs.append(list(b"x=1;y=2;") + [EOS])
    sft_masks.append([0, 0, 1, 0, 0, 0, 1, 0, 1])
    write_split(os.path.join(out, "sft.h5"), "sft", sft_docs, sft_masks)
    write_split(os.path.join(out, "kd.h5"), "kd", sft_docs[:3], sft_masks[:3])

    stream = [t for d in lm_docs for t in d]
    expected = {}
    for T in (CTX, 5):
        expected[f"lm_T{T}"] = score(model, [stream], None, T)
        expected[f"sft_T{T}"] = score(model, sft_docs, sft_masks, T)
        expected[f"kd_T{T}"] = score(model, sft_docs[:3], sft_masks[:3], T)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/eval_data")
