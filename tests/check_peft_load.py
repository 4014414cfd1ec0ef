#!/usr/bin/env python3
"""Check that PEFT and transformers load what retort wrote.

    .venv/bin/python tests/check_peft_load.py DIR

DIR holds base/ (a Hugging Face checkpoint: model_save_hf, or a merged
`retort export`), c_logits.safetensors (inputs and the C model's logits;
optionally targets and the C loss) and, optionally, adapter/ (lora_save_peft).

With adapter/: PeftModel.from_pretrained must load it onto base/ with no
missing or unexpected adapter keys and reproduce the logits to 1e-5
relative; merge_and_unload must give the same logits too. Without it, base/
itself (AutoModelForCausalLM, any family) must give the logits. With targets,
the mean cross-entropy must equal the C loss to 1e-5 relative.

Exits 0 when everything matches, 1 on a mismatch, 77 when peft is not
installed (the C tests that run this then skip visibly; `make fixtures`
creates .venv with it).

GPT-2 (tests/test_lora.c writes the directory when RETORT_LORA_EXPORT is set):
    RETORT_LORA_EXPORT=/tmp/lora-check build/tests/test_lora --filter 'peft/c_written*'
    .venv/bin/python tests/check_peft_load.py /tmp/lora-check
tests/test_lora_llama.c runs it itself for the Llama families.
"""
import os
import sys
import warnings

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

# the C tests show this output: only what the check says
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
warnings.filterwarnings("ignore", category=FutureWarning)


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    d = sys.argv[1]
    ref = load_file(f"{d}/c_logits.safetensors")
    model = AutoModelForCausalLM.from_pretrained(f"{d}/base", attn_implementation="eager",
                                                 dtype=torch.float32)
    inputs = torch.from_numpy(ref["inputs"].astype(np.int64))
    errors = {}
    if os.path.isdir(f"{d}/adapter"):
        try:
            from peft import PeftModel
        except ImportError:
            print("peft is not installed (.venv/bin/pip install peft)")
            sys.exit(77)
        model = PeftModel.from_pretrained(model, f"{d}/adapter")
        n_lora = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
        assert n_lora > 0, "PEFT attached no adapter weights"
        print(f"{n_lora} adapter tensors")
        model.eval()
        with torch.no_grad():
            errors["PEFT"] = rel_err(model(input_ids=inputs).logits.numpy(), ref["logits"])
        model = model.merge_and_unload()
        name = "merged"
    else:
        name = "transformers"
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=inputs).logits
    errors[name] = rel_err(logits.numpy(), ref["logits"])
    if "targets" in ref:
        V = logits.shape[-1]
        targets = torch.from_numpy(ref["targets"].astype(np.int64))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        errors["loss"] = abs(loss.item() - float(ref["loss"][0])) / abs(float(ref["loss"][0]))
        print(f"loss {loss.item():.7f}, C {float(ref['loss'][0]):.7f}")
    print(", ".join(f"{k} vs C {v:.3g}" for k, v in errors.items()))
    ok = all(v < 1e-5 for v in errors.values())
    print(f"{d}: {'OK' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
