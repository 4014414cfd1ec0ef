#!/usr/bin/env python3
"""Checks that transformers loads a checkpoint retort wrote, as it is, and
computes the logits retort computed.

  .venv/bin/python tests/check_hf_logits.py CHECKPOINT_DIR LOGITS_FILE [DIR FILE ...]

LOGITS_FILE is a safetensors file with "inputs" (B, T) int32 and "logits"
(B, T, V) fp32, written by the C test from the model it loaded back. The
checkpoint is loaded with AutoModelForCausalLM.from_pretrained (sharded or
not, any dtype, upcast to fp32); any missing, unexpected or mismatched key
fails, and so do logits further than 1e-4 relative (both sides compute in
fp32, in different orders). Exit 77 when transformers is missing."""
import sys
import warnings

try:
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
except ImportError:
    sys.exit(77)


def check(d, logits_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                           output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        print(f"{d}: loading reports problems: {bad}")
        return False
    ref = load_file(logits_file)
    ids = torch.tensor(ref["inputs"].astype(np.int64))
    with torch.no_grad():
        hf = model.eval()(ids).logits.double().numpy()
    want = ref["logits"].astype(np.float64)
    err = np.linalg.norm(hf - want) / np.linalg.norm(want)
    print(f"{d}: transformers loads {type(model).__name__}; logits vs retort: relative error "
          f"{err:.2e}")
    return err < 1e-4


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: check_hf_logits.py CHECKPOINT_DIR LOGITS_FILE [DIR FILE ...]")
    hf_logging.disable_progress_bar()
    ok = [check(d, f) for d, f in zip(args[0::2], args[1::2])]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
