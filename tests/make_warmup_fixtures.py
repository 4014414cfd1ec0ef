#!/usr/bin/env python3
"""Make the reference that tests/test_warmup.c checks optim.warmup_ratio
against: transformers' own warm-up step count and learning-rate curve.

    .venv/bin/python tests/make_warmup_fixtures.py tests/fixtures/warmup_ratio.json \
        [DEEPSPEED/deepspeed/runtime/lr_schedules.py]

transformers defines a warm-up ratio in TrainingArguments.get_warmup_steps
(transformers 5: `warmup_steps` below 1 is the ratio; transformers 4's
`warmup_ratio`, which α-UMi's scripts pass, used the same formula):
    warmup = math.ceil(num_training_steps * ratio)
and Trainer.create_scheduler hands that count to get_scheduler. For each
(ratio, total optimizer steps, schedule) case the fixture records:
  "warmup_steps"  args.get_warmup_steps(total)
  "lrs"           the rate optimizer step 1..total uses under Trainer's
                  scheduler (get_scheduler(lr_scheduler_type, warmup, total)),
                  i.e. retort's optim.schedule_convention hf with min_lr 0.
("constant_with_warmup" is retort's constant: transformers' plain "constant"
ignores the warm-up. A ratio is below 1: transformers 5 reads 1.0 as one
step.) With DeepSpeed's lr_schedules.py (from a DeepSpeed checkout or sdist; only
that file is loaded, with a stand-in for deepspeed.utils' logger) the fixture
also holds "deepspeed": the rates of its WarmupLR (warmup_type log, the
default, from 0 to lr, then constant) as a Trainer run under a DeepSpeed
config with a "scheduler" block gets them: warmup_num_steps is
max(1, get_warmup_steps(total)) (transformers' integrations/deepspeed.py),
and the engine steps the scheduler once after each optimizer step, so step
1..total uses the rate after 0..total-1 steps. This is α-UMi's global stage
(optim.warmup_shape log). Several cases sit where the product is not exact in binary floating point
(100 x 0.07 = 7.000000000000001, so ceil gives 8), which is what an
implementation that rounds or works in decimal gets wrong.
"""
import importlib.util
import json
import logging
import os
import sys
import tempfile
import types

import torch
import transformers
from transformers import TrainingArguments, get_scheduler

LR = 0.01
# (ratio, total steps, schedule); the first two drive the command-line runs of
# tests/test_warmup.c (30 items at batch 2 for 1 epoch = 15 steps; a stage of
# 10 role items at batch 2 for 2 epochs = 10 steps).
CASES = [
    (0.2, 15, "cosine"), (0.4, 10, "cosine"), (0.1, 30, "cosine"), (0.2, 15, "linear"),
    (0.4, 7, "constant_with_warmup"), (0.33, 100, "cosine"), (0.05, 200, "linear"), (0.7, 3, "cosine"),
    (0.01, 50, "cosine"), (0.0, 12, "cosine"), (0.99, 6, "linear"), (0.3, 10, "cosine"),
    (0.15, 20, "cosine"), (0.07, 100, "linear"),
]


def load_deepspeed_schedules(path):
    """DeepSpeed's lr_schedules.py alone: its one DeepSpeed import is a logger."""
    ds = types.ModuleType("deepspeed")
    utils = types.ModuleType("deepspeed.utils")
    utils.logger = logging.getLogger("deepspeed")
    ds.utils = utils
    sys.modules.setdefault("deepspeed", ds)
    sys.modules.setdefault("deepspeed.utils", utils)
    spec = importlib.util.spec_from_file_location("ds_lr_schedules", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def deepspeed_cases(path, tmp):
    mod = load_deepspeed_schedules(path)
    version = "?"
    version_file = os.path.join(os.path.dirname(path), "..", "..", "version.txt")
    if os.path.exists(version_file):
        version = open(version_file).read().strip()
    cases = []
    for ratio, total in [(0.4, 20), (0.4, 7), (0.2, 15), (0.1, 30), (0.05, 10), (0.33, 100)]:
        args = TrainingArguments(output_dir=tmp, warmup_steps=ratio, learning_rate=LR,
                                 report_to=[], use_cpu=True)
        warmup = max(1, args.get_warmup_steps(total))
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
        sched = mod.WarmupLR(opt, warmup_min_lr=0, warmup_max_lr=LR, warmup_num_steps=warmup)
        lrs = []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        cases.append(dict(ratio=ratio, total_steps=total, lr=LR, warmup_steps=warmup, lrs=lrs))
    return version, cases


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/warmup_ratio.json"
    ds_path = sys.argv[2] if len(sys.argv) > 2 else None
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for ratio, total, kind in CASES:
            args = TrainingArguments(output_dir=tmp, warmup_steps=ratio, learning_rate=LR,
                                     lr_scheduler_type=kind, report_to=[], use_cpu=True)
            warmup = args.get_warmup_steps(total)
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
            sched = get_scheduler(kind, opt, num_warmup_steps=warmup, num_training_steps=total)
            lrs = []
            for _ in range(total):
                lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                sched.step()
            cases.append(dict(ratio=ratio, total_steps=total, schedule=kind, lr=LR,
                              warmup_steps=warmup, lrs=lrs))
        ds = deepspeed_cases(ds_path, tmp) if ds_path else None
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        doc = dict(transformers=transformers.__version__, torch=torch.__version__, cases=cases)
        if ds:
            doc["deepspeed"] = dict(version=ds[0], cases=ds[1])
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
