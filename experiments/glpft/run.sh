#!/bin/sh
# experiments/glpft/run.sh — GLPFT (α-UMi) at toy scale on the CPU:
#   (i)   one model trained on every role's turns        (= the global stage)
#   (ii)  three role models from scratch, no global stage
#   (iii) GLPFT: the global model, then one copy per role fine-tuned on its role
# evaluated with `retort agent` on held-out synthetic tool-use tasks.
# Run from the repository root:  sh experiments/glpft/run.sh   (RETORT=path/to/retort)
set -eu
RETORT=${RETORT:-./retort}
OUT=experiments/glpft/out
TEST_TASKS=${TEST_TASKS:-60}
mkdir -p $OUT
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

stamp "data"
$RETORT agent make-data --out $OUT/data --train 2000 --val 100 --test 200 --seed 1 \
    --build --max-len 256 | tee $OUT/data.log

stamp "(i): one model on every role's turns"
$RETORT stages -c experiments/glpft/single.yaml --resume > $OUT/single.log 2>&1
stamp "(iii): global stage, then planner / caller / summarizer from it"
$RETORT stages -c experiments/glpft/glpft.yaml --resume > $OUT/glpft.log 2>&1
last() { ls -d "$1"/step-* | tail -1; }
AGENT="$RETORT agent --input $OUT/data/test.jsonl --limit $TEST_TASKS --max-new-tokens 100 -q"
stamp "eval (i) single model"
$AGENT --label single --model "$(last $OUT/single/all)" \
    --metrics $OUT/single.json --predictions $OUT/single.pred.jsonl | tee $OUT/eval_single.log
stamp "eval (iii) GLPFT"
$AGENT --label glpft --planner "$(last $OUT/glpft/planner)" \
    --caller "$(last $OUT/glpft/caller)" --summarizer "$(last $OUT/glpft/summarizer)" \
    --metrics $OUT/glpft.json --predictions $OUT/glpft.pred.jsonl | tee $OUT/eval_glpft.log
stamp "(ii): three role models from scratch"
$RETORT stages -c experiments/glpft/multi.yaml --resume > $OUT/multi.log 2>&1
stamp "eval (ii) three models without the global stage"
$AGENT --label multi-no-global --planner "$(last $OUT/multi/planner)" \
    --caller "$(last $OUT/multi/caller)" --summarizer "$(last $OUT/multi/summarizer)" \
    --metrics $OUT/multi.json --predictions $OUT/multi.pred.jsonl | tee $OUT/eval_multi.log
stamp "done"

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
cols = [("planning_accuracy", "Plan acc", 100), ("action_em", "Act EM", 100),
        ("tool_name_accuracy", "Tool name", 100), ("hallucination_rate", "Halluc.", 100),
        ("arg_f1", "Arg F1", 100), ("rouge_l", "ROUGE-L", 100),
        ("success_rate", "Success (e2e)", 100), ("e2e_rouge_l", "e2e ROUGE-L", 100)]
print("| setup | " + " | ".join(c[1] for c in cols) + " |")
print("|---|" + "---|" * len(cols))
for name, label in [("single", "(i) single model"), ("multi", "(ii) 3 models, no global"),
                    ("glpft", "(iii) GLPFT")]:
    try:
        m = json.load(open(f"{out}/{name}.json"))
    except FileNotFoundError:
        continue
    cells = ["-" if m[k] is None else f"{m[k] * s:.2f}" for k, _, s in cols]
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
