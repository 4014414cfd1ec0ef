#!/bin/sh
# experiments/glpft/run.sh — GLPFT (α-UMi) at toy scale on the CPU:
#   (i)   one model trained on every role's turns        (= the global stage)
#   (ii)  three role models from scratch, no global stage
#   (iii) GLPFT: the global model, then one copy per role fine-tuned on its role
# each trained under every seed of SEEDS (the data stays the one of make-data
# --seed 1), evaluated greedily with `retort agent` on held-out synthetic
# tool-use tasks; the table is the mean and spread over the seeds.
#
# Run from the repository root:
#   sh experiments/glpft/run.sh                       # RETORT=path/to/retort
#   SEEDS="1 2 3" JOBS=2 THREADS=1 sh experiments/glpft/run.sh
# Rerunning resumes: finished stages and evaluations are kept (out/seed-S/).
set -eu
RETORT=${RETORT:-./retort}
[ -x "$RETORT" ] || { echo "run.sh: $RETORT not found (build it, or set RETORT=path)" >&2; exit 1; }
OUT=experiments/glpft/out
E=experiments/glpft
TEST_TASKS=${TEST_TASKS:-200}
SEEDS=${SEEDS:-"1 2 3"}
JOBS=${JOBS:-2}          # seeds trained at once
THREADS=${THREADS:-1}    # threads per training process
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
mkdir -p $OUT
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

last() { ls -d "$1"/step-* | tail -1; }
# one job: one setup under one seed, trained then evaluated (each skipped when done)
if [ "${1:-}" = --job ]; then
    s=$2 setup=$3
    d=$OUT/seed-$s
    mkdir -p $d
    $RETORT stages -c $E/$setup.yaml --set train.seed=$s --set train.threads=$THREADS \
        --out-dir $d/$setup --resume --quiet > $d/$setup.log 2>&1
    [ -s $d/$setup.json ] && exit 0
    AGENT="$RETORT agent --input $OUT/data/test.jsonl --limit $TEST_TASKS --max-new-tokens 100 -q"
    if [ $setup = single ]; then
        $AGENT --label "single seed $s" --model "$(last $d/single/all)" \
            --metrics $d/single.json.tmp --predictions $d/single.pred.jsonl > $d/eval_single.log
    else
        $AGENT --label "$setup seed $s" --planner "$(last $d/$setup/planner)" \
            --caller "$(last $d/$setup/caller)" --summarizer "$(last $d/$setup/summarizer)" \
            --metrics $d/$setup.json.tmp --predictions $d/$setup.pred.jsonl > $d/eval_$setup.log
    fi
    mv $d/$setup.json.tmp $d/$setup.json
    echo "[$(( $(date +%s) - t0 )) s] seed $s $setup: done"
    exit 0
fi

stamp "data"
[ -s $OUT/data/train.h5 ] ||
$RETORT agent make-data --out $OUT/data --train 2000 --val 100 --test 200 --seed 1 \
    --build --max-len 256 | tee $OUT/data.log

stamp "seeds $SEEDS x setups (i) single, (iii) glpft, (ii) multi: $JOBS jobs at a time, $THREADS thread(s) each"
for s in $SEEDS; do for setup in single glpft multi; do echo "$s $setup"; done; done |
    xargs -P "$JOBS" -L 1 sh "$0" --job
stamp "done"

python3 $E/table.py $OUT $SEEDS | tee $OUT/table.md
