#!/usr/bin/env bash
# MT-CoT (Li et al. 2022, "Explanations from Large Language Models Make Small Reasoners
# Better"), scaled down to a shared 2-core CPU.
#
#   experiments/mt-cot/run.sh                      # uses ./retort
#   RETORT=build-M/retort experiments/mt-cot/run.sh
#   FRESH=0 experiments/mt-cot/run.sh              # keep out/ and skip the finished phases
#
# A teacher (3x96, 365k parameters) is trained on gold explanations of its own questions
# for few steps, so its chains of thought are mostly but not always right. For each seed S
# it explains the students' 150 training questions three ways (`retort explain --mode
# cot|rationalize|crop`, temperature TEMP, --seed S); `retort explain build` turns them into
# the two-task data ([answer] / [explain] prefixes); students (2x48, train.seed S) are
# trained answer-only or multi-task with objective.task_weights {answer: a, explanation: 1-a}
# and scored by `retort eval --answer last-number` on 300 held-out questions asked with the
# answer prefix. Everything goes to experiments/mt-cot/out/ (gitignored); the table is
# out/table.md, per-phase wall times out/timings.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."                      # the repository root
RETORT=${RETORT:-./retort}
[ -x "$RETORT" ] || { echo "run.sh: $RETORT not found (build it, or set RETORT=path)" >&2; exit 1; }
E=experiments/mt-cot
O=$E/out
STEPS_TEACHER=${STEPS_TEACHER:-400}
STEPS_STUDENT=${STEPS_STUDENT:-500}
SEEDS=${SEEDS:-"1 2 3"}
TEMP=${TEMP:-0.8}           # the teacher's sampling temperature for the explanations
ALPHAS=${ALPHAS:-"0.3 0.5 0.7"}   # swept for CROP; the other explanation types at 0.5
GOLD=${GOLD:-1}             # 0: no gold-explanation reference students
CONTROLS=${CONTROLS:-0}     # 1: also the controls (unrelated second tasks; answer-only at half the steps)
PAR=${PAR:-2}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
[ "${FRESH:-1}" = 1 ] && rm -rf "$O"
mkdir -p "$O/logs" "$O/eval" "$O/students" "$O/expl" "$O/data"
rm -f "$O/FAILED"
T0=$(date +%s)
phase() { echo "$(date +%T) +$(( $(date +%s) - T0 ))s $*" | tee -a "$O/timings.txt"; }
ckpt() { printf '%s/step-%08d' "$1" "$2"; }
py() { python3 $E/make_task.py "$@"; }
bg() {
    while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do sleep 2; done
    ( "$@" || { echo "failed: $*" >> "$O/FAILED"; exit 1; } ) &
}
drain() {
    wait
    [ ! -f "$O/FAILED" ] || { cat "$O/FAILED" >&2; echo "run.sh: see $O/logs/" >&2; exit 1; }
}
COT_T=$'Q {question}\nE '
RAT_T=$'Q {question} ={answer}\nE '

if [ ! -f $O/task/teacher_sft.h5 ]; then
    phase "task"
    py gen --out $O/task --seed 7 --symbols 26 --teacher 1500 --train 150 --test 300
    "$RETORT" data build --schema sft --input $O/task/teacher_sft.jsonl --out $O/task/teacher_sft.h5 -q
    # the same test questions asked with the explanation prefix (multi-task students only)
    python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l); r["prompt"] = "[explain] " + r["question"] + "\n"; print(json.dumps(r))' \
        $O/task/test.jsonl > $O/task/test_explain.jsonl
fi

TEACHER=$(ckpt $O/teacher $STEPS_TEACHER)
if [ ! -d $TEACHER ]; then
    phase "teacher"
    "$RETORT" train -c $E/teacher.yaml --set train.steps=$STEPS_TEACHER --set train.threads=$THREADS \
        --set train.out_dir=$O/teacher > $O/logs/teacher.log 2>&1
fi

explain() { # seed: the three explanation sets of the training questions, and their data files
    local s=$1 mode
    for mode in cot rationalize crop; do
        local x=$O/expl/$mode-s$s.jsonl
        if [ ! -f $x ]; then
            "$RETORT" explain --model "$TEACHER" --input $O/task/train_q.jsonl --out $x --mode $mode \
                --cot-template "$COT_T" --rationalize-template "$RAT_T" --answer last-number \
                -n 32 -t $TEMP --seed $s --threads $THREADS > $O/logs/explain-$mode-s$s.log 2>&1
            py check --task $O/task --expl $x > $O/expl/$mode-s$s.check.json
        fi
        if [ ! -f $O/data/$mode-s$s.h5 ]; then
            "$RETORT" explain build --input $x --out $O/data/$mode-s$s.jsonl --tasks answer,explanation -q
            "$RETORT" data build --schema sft --input $O/data/$mode-s$s.jsonl --out $O/data/$mode-s$s.h5 \
                --task-field task -q
        fi
    done
}
phase "explanations (teacher, t=$TEMP, seeds $SEEDS) and the students' data"
for s in $SEEDS; do explain $s; done
if [ ! -f $O/data/gold.h5 ]; then
    # the teacher's greedy chain of thought on the test questions: how good it is
    "$RETORT" explain --model "$TEACHER" --input $O/task/test_q.jsonl --out $O/expl/teacher-test.jsonl \
        --mode cot --cot-template "$COT_T" --answer last-number -n 32 --threads $THREADS \
        > $O/logs/explain-teacher-test.log 2>&1
    py check --task $O/task --expl $O/expl/teacher-test.jsonl > $O/expl/teacher-test.check.json
    "$RETORT" explain build --input $O/task/train_gold_expl.jsonl --out $O/data/answer.jsonl --tasks answer -q
    "$RETORT" data build --schema sft --input $O/data/answer.jsonl --out $O/data/answer.h5 --task-field task -q
    "$RETORT" explain build --input $O/task/train_gold_expl.jsonl --out $O/data/gold.jsonl -q
    "$RETORT" data build --schema sft --input $O/data/gold.jsonl --out $O/data/gold.h5 --task-field task -q
fi

student() { # name, seed, data file, alpha ("" = answer-only)[, steps]
    local name=$1 s=$2 data=$3 alpha=$4 steps=${5:-$STEPS_STUDENT}
    local dir=$O/students/$name-s$s
    if [ ! -d $(ckpt $dir $steps) ]; then
        phase "student $name seed $s"
        rm -rf $dir
        local tw=()
        [ -n "$alpha" ] && tw=(--set "objective.task_weights={answer: $alpha, explanation: $(python3 -c "print(round(1-$alpha, 6))")}")
        "$RETORT" train -c $E/student.yaml --set train.steps=$steps --set train.seed=$s \
            --set train.threads=$THREADS --set train.out_dir=$dir --set data.train=$data "${tw[@]}" \
            > $O/logs/student-$name-s$s.log 2>&1 || return 1
    fi
    local m=$(ckpt $dir $steps)
    [ -f $O/eval/$name-s$s.metrics.json ] ||
    "$RETORT" eval --model $m --input $O/task/test.jsonl --answer last-number -n 4 --threads $THREADS \
        --predictions $O/eval/$name-s$s.jsonl --metrics $O/eval/$name-s$s.metrics.json \
        > $O/logs/eval-$name-s$s.log 2>&1 || return 1
    [ -z "$alpha" ] || [ -f $O/eval/$name-s$s.explain.metrics.json ] ||
    "$RETORT" eval --model $m --input $O/task/test_explain.jsonl --answer last-number -n 40 \
        --threads $THREADS --predictions $O/eval/$name-s$s.explain.jsonl \
        --metrics $O/eval/$name-s$s.explain.metrics.json > $O/logs/eval-$name-s$s.explain.log 2>&1
}

# the paper's comparison first (answer-only, CoT, rationalization, CROP at 0.5), then the
# alpha sweep, then the gold-explanation reference
for s in $SEEDS; do
    bg student answer $s $O/data/answer.h5 ""
    bg student cot-a0.5 $s $O/data/cot-s$s.h5 0.5
    bg student rationalize-a0.5 $s $O/data/rationalize-s$s.h5 0.5
    bg student crop-a0.5 $s $O/data/crop-s$s.h5 0.5
done
for a in $ALPHAS; do
    [ "$a" = 0.5 ] && continue
    for s in $SEEDS; do bg student crop-a$a $s $O/data/crop-s$s.h5 $a; done
done
[ "$GOLD" = 1 ] && for s in $SEEDS; do bg student gold-a0.5 $s $O/data/gold.h5 0.5; done
# controls: the explanation task replaced by another question's gold explanation (with the
# gold answer appended, and without it), or by that explanation with random digits (no
# answer); and answer-only with as many answer examples as a multi-task student sees
if [ "$CONTROLS" = 1 ]; then
    if [ ! -f $O/data/random-eonly.h5 ]; then
        py shuffle --task $O/task
        "$RETORT" explain build --input $O/task/train_shuffled_expl.jsonl --out $O/data/shuffled.jsonl -q
        "$RETORT" explain build --input $O/task/train_shuffled_expl.jsonl --out $O/data/shuffled-eonly.jsonl \
            --explanation-only -q
        "$RETORT" explain build --input $O/task/train_random_expl.jsonl --out $O/data/random-eonly.jsonl \
            --explanation-only -q
        for c in shuffled shuffled-eonly random-eonly; do
            "$RETORT" data build --schema sft --input $O/data/$c.jsonl --out $O/data/$c.h5 --task-field task -q
        done
    fi
    for s in $SEEDS; do
        for c in shuffled shuffled-eonly random-eonly; do bg student $c-a0.5 $s $O/data/$c.h5 0.5; done
        bg student answer250 $s $O/data/answer.h5 "" $(( STEPS_STUDENT / 2 ))
    done
fi
drain

phase "done"
NAMES="answer cot-a0.5 rationalize-a0.5 crop-a0.5"
for a in $ALPHAS; do [ "$a" = 0.5 ] || NAMES="$NAMES crop-a$a"; done
[ "$GOLD" = 1 ] && NAMES="$NAMES gold-a0.5"
[ "$CONTROLS" = 1 ] && NAMES="$NAMES answer250 shuffled-a0.5 shuffled-eonly-a0.5 random-eonly-a0.5"
py table --dir $O --names "$NAMES" --seeds "$SEEDS" | tee $O/table.md
echo "wall time of this invocation: $(( $(date +%s) - T0 )) s" | tee -a $O/table.md
