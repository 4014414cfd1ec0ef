#!/usr/bin/env python3
"""Record α-UMi's GLPFT training recipe from its own scripts, for
tests/test_stages.c to check configs/glpft.yaml against.

    python3 tests/make_glpft_fixtures.py MULTI_LLM_AGENT_CHECKOUT tests/fixtures/glpft_upstream.json

MULTI_LLM_AGENT_CHECKOUT is a checkout of github.com/X-PLUG/Multi-LLM-Agent.
Each `torchrun ... train_mem.py` command of GLPFT/scripts/train_toolbench.sh
is one stage (named by its EXP_NAME); its flags are read as HfArgumentParser
reads them, and the flags a stage leaves out get transformers'
TrainingArguments defaults (weight_decay 0, adam betas 0.9/0.999, eps 1e-8,
max_grad_norm 1.0). A stage run with --deepspeed records whether its
DeepSpeed config has a "scheduler" block, which then replaces Trainer's
schedule (transformers' integrations/deepspeed.py: deepspeed_optim_sched).
"""
import json
import os
import re
import shlex
import subprocess
import sys

DEFAULTS = {"weight_decay": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8,
            "max_grad_norm": 1.0, "warmup_ratio": 0.0, "lr_scheduler_type": "linear"}


def main():
    repo, out = sys.argv[1], sys.argv[2]
    script_rel = "GLPFT/scripts/train_toolbench.sh"
    text = open(os.path.join(repo, script_rel)).read()
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stages = []
    exp = None
    for cmd in re.split(r"\n(?=\S)", text.replace("\\\n", " ")):
        m = re.match(r"EXP_NAME=/toolbench/(\w+)", cmd.strip())
        if m:
            exp = m.group(1)
            continue
        if not cmd.strip().startswith("torchrun"):
            continue
        words = shlex.split(cmd)
        flags = {}
        i = 0
        while i < len(words):
            if words[i].startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("--"):
                flags[words[i][2:]] = words[i + 1]
                i += 2
            elif words[i].startswith("--"):
                flags[words[i][2:]] = True
                i += 1
            else:
                i += 1
        stage = dict(DEFAULTS)
        stage["name"] = {"backbone": "global"}.get(exp, exp)
        stage["epochs"] = float(flags["num_train_epochs"])
        stage["lr"] = float(flags["learning_rate"])
        for k in ("weight_decay", "warmup_ratio", "adam_beta1", "adam_beta2", "adam_epsilon",
                  "max_grad_norm"):
            if k in flags:
                stage[k] = float(flags[k])
        if "lr_scheduler_type" in flags:
            stage["lr_scheduler_type"] = flags["lr_scheduler_type"]
        stage["deepspeed_scheduler"] = None
        if "deepspeed" in flags:
            ds = json.load(open(os.path.join(repo, "GLPFT", flags["deepspeed"])))
            if "scheduler" in ds:
                stage["deepspeed_scheduler"] = ds["scheduler"]["type"]
        stages.append(stage)
    with open(out, "w") as f:
        json.dump(dict(source=f"X-PLUG/Multi-LLM-Agent {commit} {script_rel}", stages=stages), f,
                  indent=1)
        f.write("\n")
    print(out, [s["name"] for s in stages])


if __name__ == "__main__":
    main()
