#!/usr/bin/env python3
"""fuzz/make_h5_seeds.py OUT_DIR — the seed files of the h5data harness: one
small valid file per schema and feature (lm in uint16 and uint32, sft with
roles and tasks, kd with teacher top-K and candidates, pref with reference
log-probs), written by h5py with contiguous datasets so each is a few KB (the
files `retort data build` writes are chunked for streaming and 200 KB+, too
big for a fuzzer to mutate well). Run once; the results are committed in
fuzz/corpus/h5data/ (the fuzzer then minimises the corpus with -merge=1)."""
import os
import sys

import h5py
import numpy as np


def root_attrs(f, schema, vocab=257, eos=256, tokenizer="bytes"):
    f.attrs["schema"] = np.bytes_(schema)
    f.attrs["version"] = np.int64(1)
    f.attrs["vocab_size"] = np.int64(vocab)
    f.attrs["eos_id"] = np.int64(eos)
    f.attrs["pad_id"] = np.int64(eos)
    f.attrs["tokenizer"] = np.bytes_(tokenizer)


def docs(f, prefix, pieces, dtype=np.uint32):
    tokens = np.concatenate([np.asarray(p, dtype=dtype) for p in pieces]) if pieces else \
        np.zeros(0, dtype=dtype)
    offsets = np.cumsum([0] + [len(p) for p in pieces]).astype(np.int64)
    f.create_dataset(prefix + "tokens", data=tokens)
    f.create_dataset(prefix + "offsets", data=offsets)
    return len(tokens)


def main(out):
    os.makedirs(out, exist_ok=True)
    kw = dict(libver="latest")
    with h5py.File(os.path.join(out, "lm-u16"), "w", **kw) as f:
        root_attrs(f, "lm")
        docs(f, "", [[104, 105, 256], [33, 256]], np.uint16)
    with h5py.File(os.path.join(out, "lm-u32-bpe"), "w", **kw) as f:
        root_attrs(f, "lm", vocab=384, eos=383, tokenizer="bpe:tokenizer.json:0")
        docs(f, "", [[300, 5, 383]])
    with h5py.File(os.path.join(out, "sft-roles-tasks"), "w", **kw) as f:
        root_attrs(f, "sft")
        n = docs(f, "", [[50, 43, 50, 61, 52, 256], [104, 105, 121, 111, 256]])
        f.create_dataset("loss_mask", data=np.array([0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1], np.uint8))
        assert n == 11
        f.create_dataset("role", data=np.array([0, 1], np.uint8))
        f.attrs["roles"] = np.array([b"planner", b"caller"])
        f.create_dataset("task", data=np.array([1, 0], np.uint8))
        f.attrs["tasks"] = np.array([b"math", b"chat"])
    with h5py.File(os.path.join(out, "kd-topk-candidates"), "w", **kw) as f:
        root_attrs(f, "kd")
        docs(f, "", [[97, 98, 99, 256]])
        f.create_dataset("loss_mask", data=np.array([0, 1, 1, 1], np.uint8))
        f.create_dataset("teacher_topk_ids", data=np.array([[98, 1], [99, 2], [256, 3], [0, 4]],
                                                            np.uint16))
        f.create_dataset("teacher_topk_logp", data=np.array([[-0.1, -2.5]] * 4, np.float32))
        docs(f, "candidates/", [[98, 99, 256], [120, 256]])
        f.create_dataset("candidates/example", data=np.array([0, 0], np.int64))
        f.create_dataset("candidates/logp", data=np.array([-1.5, -3.0]))
        f.create_dataset("candidates/score", data=np.array([1.0, 0.25]))
    with h5py.File(os.path.join(out, "pref-ref"), "w", **kw) as f:
        root_attrs(f, "pref")
        docs(f, "prompt/", [[112], []])
        docs(f, "chosen/", [[103, 111, 256], [120, 256]])
        docs(f, "rejected/", [[98, 256], [121, 256]])
        f.create_dataset("ref_logp_chosen", data=np.array([-4.0, -2.0]))
        f.create_dataset("ref_logp_rejected", data=np.array([-3.0, -2.5]))
        f.attrs["ref_model"] = np.bytes_("runs/ref/step-00000010")
        for k, v in (("ref_seq_len", 16), ("ref_max_prompt_len", 0),
                     ("ref_max_completion_len", 0)):
            f.attrs[k] = np.int64(v)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/h5data")
