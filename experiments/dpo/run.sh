#!/usr/bin/env bash
# DPO and its variants, and a COLLATE-style run, scaled down to two CPU cores.
#
#   experiments/dpo/run.sh                   # seeds 1 2 3, then the table over them
#   RETORT=build/hp/retort experiments/dpo/run.sh
#   KEEP=1 experiments/dpo/run.sh            # reuse what out/ already has (resume)
#   SEEDS="1 2 3 4" experiments/dpo/run.sh   # other seeds; SEED=2 runs one seed only
#
# A seed sets the SFT and DPO training seeds (initialisation, batch order) and
# the sampling seeds of `retort pairs` and of the temperature-1 evaluation; the
# task data is the same for every seed.
# Task (make_task.py): "a+b+c=" -> "a+b=s,s+c=t;t" with a rationale, operands in
# [0, 30). The SFT data is noisy on purpose (20% wrong partial sum, 20% wrong
# final answer), so the preference "correct answer" is checkable and SFT alone
# leaves room. Steps: SFT; pairs (programmatic correct-vs-corrupted, and
# `retort pairs` from the SFT model's own samples scored by exact match); DPO
# for each loss type and beta; a COLLATE-style run (rationales sampled from the
# SFT model, scored by the likelihood of the gold answer, best vs worst -> DPO);
# greedy exact-match accuracy and win rate against SFT on 300 held-out prompts;
# reward accuracies from metrics.jsonl; an SVG of rewards/chosen and
# rewards/rejected over steps. Output under experiments/dpo/out/ (table.md,
# rewards.svg, timings.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
RETORT=${RETORT:-./retort}
[ -x "$RETORT" ] || { echo "run.sh: $RETORT not found (build it, or set RETORT=path)" >&2; exit 1; }
# one thread per process: on a busy 2-core machine OpenMP oversubscription costs 5x
export OMP_NUM_THREADS=${THREADS:-1} OPENBLAS_NUM_THREADS=${THREADS:-1}
E=experiments/dpo
if [ -z "${SEED:-}" ]; then   # every seed of SEEDS in turn, then the table over them
    SEEDS=${SEEDS:-"1 2 3"}
    for s in $SEEDS; do SEED=$s "$0"; done
    tables=()
    for s in $SEEDS; do tables+=("$E/out/seed-$s/table.md"); done
    python3 $E/make_task.py aggregate "${tables[@]}" | tee $E/out/table.md
    exit 0
fi
O=$E/out/seed-$SEED
SFT_STEPS=${SFT_STEPS:-800}
DPO_STEPS=${DPO_STEPS:-150}
LOSSES=${LOSSES:-"sigmoid ipo hinge robust simpo"}
BETAS=${BETAS:-"0.1 0.5"}
SAMPLES=${SAMPLES:-6}
DPO_LR=${DPO_LR:-2e-4}      # the main sweep
LOW_LR=${LOW_LR:-2e-5}      # a second, gentler pass: every loss at beta 0.1, every pair source
ROBUST_EPS=${ROBUST_EPS:-0.1}
[ -n "${KEEP:-}" ] || rm -rf "$O"
mkdir -p "$O/logs" "$O/gen" "$O/dpo"
T0=$(date +%s)
phase() { echo "$(( $(date +%s) - T0 ))s $*" | tee -a "$O/timings.txt"; }
last_ckpt() { ls -d "$1"/step-* | sort | tail -1; }
py() { python3 $E/make_task.py "$@"; }

have() { [ -n "${KEEP:-}" ] && [ -e "$1" ]; }
phase "task"
py gen --out $O/task
"$RETORT" data build --schema sft --input $O/task/sft.jsonl --out $O/task/sft.h5 -q
"$RETORT" data build --schema pref --input $O/task/pref_prog.jsonl --out $O/task/pref_prog.h5 -q

phase "SFT"
have $O/sft/step-* || "$RETORT" train -c $E/sft.yaml --set train.steps=$SFT_STEPS \
    --set train.seed=$SEED --set train.out_dir=$O/sft --set data.train=$O/task/sft.h5 \
    > $O/logs/sft.log 2>&1 || { tail -3 $O/logs/sft.log >&2; exit 1; }
SFT=$(last_ckpt $O/sft)

# greedy single-pass answers, and two-stage (rationale up to ';', then the answer
# given prompt + rationale + ';' — COLLATE's rationale->answer mode)
evaluate() { # name model
    have $O/gen/$1.t1.jsonl ||   # 4 samples at temperature 1: the distribution DPO reshapes
    "$RETORT" generate --model "$2" --input $O/task/test.jsonl --out $O/gen/$1.t1.jsonl \
        --temperature 1 --top-k 0 --samples 4 -n 24 --seed $SEED > /dev/null 2>&1
    have $O/gen/$1.s2.jsonl && return 0
    "$RETORT" generate --model "$2" --input $O/task/test.jsonl --out $O/gen/$1.jsonl \
        --temperature 0 --samples 1 -n 24 > /dev/null 2>&1
    "$RETORT" generate --model "$2" --input $O/task/test.jsonl --out $O/gen/$1.rat.jsonl \
        --temperature 0 --samples 1 -n 24 --stop ";" > /dev/null 2>&1
    py stage2 $O/gen/$1.rat.jsonl $O/gen/$1.s2in.jsonl
    "$RETORT" generate --model "$2" --input $O/gen/$1.s2in.jsonl --out $O/gen/$1.s2.jsonl \
        --temperature 0 --samples 1 -n 6 > /dev/null 2>&1
}
phase "eval SFT"
evaluate sft "$SFT"

phase "pairs from the SFT model's own samples (exact match of the answer)"
have $O/pairs_self.h5 ||
"$RETORT" pairs --model "$SFT" --input $O/task/pref_prompts.jsonl --out $O/pairs_self.h5 \
    --scorer exact --answer-pattern ';\s*(\d+)' --gold-field answer --samples $SAMPLES \
    --temperature 1 -n 24 --seed $SEED --dump $O/pairs_self.jsonl > $O/logs/pairs_self.log 2>&1
cat $O/logs/pairs_self.log

phase "COLLATE pairs: sampled rationales scored by log p(gold answer | prompt, rationale, ';')"
have $O/pairs_collate.h5 ||
"$RETORT" pairs --model "$SFT" --input $O/task/pref_prompts.jsonl --out $O/pairs_collate.h5 \
    --scorer gold-likelihood --answer-prefix ";" --gold-eos --gold-field answer \
    --samples $SAMPLES --temperature 1 -n 24 --seed $SEED --stop ";" --dump $O/pairs_collate.jsonl \
    > $O/logs/pairs_collate.log 2>&1
cat $O/logs/pairs_collate.log

dpo() { # name data loss beta lr
    phase "DPO $1"
    # robust is sigmoid's noise-corrected form: with label_smoothing 0 it is sigmoid exactly
    local ls=0; [ $3 = robust ] && ls=$ROBUST_EPS
    have $O/dpo/$1/step-* ||
    "$RETORT" train -c $E/dpo.yaml --set train.steps=$DPO_STEPS --set model.init="$SFT" \
        --set data.train=$2 --set dpo.loss_type=$3 --set dpo.beta=$4 --set optim.lr=$5 \
        --set optim.min_lr=$5 --set dpo.label_smoothing=$ls --set train.seed=$SEED --set train.out_dir=$O/dpo/$1 \
        > $O/logs/dpo-$1.log 2>&1 || { tail -3 $O/logs/dpo-$1.log >&2; exit 1; }
    evaluate $1 "$(last_ckpt $O/dpo/$1)"
}
RUNS=""
for loss in $LOSSES; do
    for beta in $BETAS; do
        dpo prog-$loss-b$beta $O/task/pref_prog.h5 $loss $beta $DPO_LR
        RUNS="$RUNS prog-$loss-b$beta"
    done
done
dpo self-sigmoid-b0.1 $O/pairs_self.h5 sigmoid 0.1 $DPO_LR
dpo collate-sigmoid-b0.1 $O/pairs_collate.h5 sigmoid 0.1 $DPO_LR
RUNS="$RUNS self-sigmoid-b0.1 collate-sigmoid-b0.1"
for loss in $LOSSES; do
    dpo prog-$loss-b0.1-lowlr $O/task/pref_prog.h5 $loss 0.1 $LOW_LR
    RUNS="$RUNS prog-$loss-b0.1-lowlr"
done
for src in self collate; do
    dpo $src-sigmoid-b0.1-lowlr $O/pairs_$src.h5 sigmoid 0.1 $LOW_LR
    RUNS="$RUNS $src-sigmoid-b0.1-lowlr"
done

phase "table"
K="rewards/accuracies eval_rewards/accuracies rewards/chosen rewards/rejected"
{
    echo "| model | pairs | loss | beta | lr | acc (1-pass) | win vs SFT | acc (2-stage) | win vs SFT (2-stage) | acc (T=1 samples) | train rew. acc | eval rew. acc | rewards/chosen | rewards/rejected |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    a=$(py acc $O/gen/sft.jsonl); b=$(py acc $O/gen/sft.s2.jsonl)
    c=$(py sacc $O/gen/sft.t1.jsonl)
    echo "| SFT | - | - | - | - | $a | - | $b | - | $c | - | - | - | - |"
    for r in $RUNS; do
        read -r a1 w1 _ _ <<< "$(py acc $O/gen/$r.jsonl $O/gen/sft.jsonl)"
        read -r a2 w2 _ _ <<< "$(py acc $O/gen/$r.s2.jsonl $O/gen/sft.s2.jsonl)"
        a3=$(py sacc $O/gen/$r.t1.jsonl)
        read -r m1 m2 m3 m4 <<< "$(py metrics $O/dpo/$r/metrics.jsonl $K)"
        IFS=- read -r src loss beta low <<< "$r"
        lr=$DPO_LR; [ -n "$low" ] && lr=$LOW_LR
        echo "| DPO | $src | $loss | ${beta#b} | $lr | $a1 | $w1 | $a2 | $w2 | $a3 | $m1 | $m2 | $m3 | $m4 |"
    done
} > $O/table.md
{
    echo
    echo "self pairs (exact):            $(py pairstats $O/task/pref_prompts.jsonl $O/pairs_self.jsonl)"
    echo "COLLATE pairs (gold-likelihood): $(py pairstats $O/task/pref_prompts.jsonl $O/pairs_collate.jsonl)"
} >> $O/table.md
cat $O/table.md
args=()
for r in $RUNS; do args+=("$O/dpo/$r/metrics.jsonl" "$r"); done
py plot $O/rewards.svg "${args[@]}"
phase "done"
