#!/usr/bin/env python3
"""Check that PEFT loads an adapter written by retort (not run by the C suite).

    RETORT_LORA_EXPORT=/tmp/lora-check build/tests/test_lora --filter 'peft/c_written*'
    .venv/bin/python tests/check_peft_load.py /tmp/lora-check

The directory holds base/ (model_save_hf), adapter/ (lora_save_peft) and
c_logits.safetensors (inputs and the C model's logits with the adapter, no
dropout). PeftModel.from_pretrained must load the adapter onto the base with
no missing or unexpected adapter keys and reproduce the logits to 1e-5
relative; merge_and_unload must give the same logits too.
"""
import sys

import numpy as np
import torch
from peft import PeftModel
from safetensors.numpy import load_file
from transformers import GPT2LMHeadModel


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    d = sys.argv[1]
    ref = load_file(f"{d}/c_logits.safetensors")
    base = GPT2LMHeadModel.from_pretrained(f"{d}/base", attn_implementation="eager").float()
    model = PeftModel.from_pretrained(base, f"{d}/adapter")
    model.eval()
    n_lora = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    assert n_lora > 0, "PEFT attached no adapter weights"
    inputs = torch.from_numpy(ref["inputs"].astype(np.int64))
    with torch.no_grad():
        logits = model(input_ids=inputs).logits.numpy()
        merged = model.merge_and_unload()(input_ids=inputs).logits.numpy()
    e1, e2 = rel_err(logits, ref["logits"]), rel_err(merged, ref["logits"])
    print(f"{n_lora} adapter tensors; PEFT vs C logits {e1:.3g}, merged {e2:.3g}")
    ok = e1 < 1e-5 and e2 < 1e-5
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
