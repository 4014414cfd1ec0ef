#!/usr/bin/env bash
# Sequence-level knowledge distillation (Kim & Rush 2016), scaled down to two CPU cores.
#
#   experiments/seq-kd/run.sh                 # uses ./retort
#   RETORT=build/hx/retort experiments/seq-kd/run.sh
#   FRESH=0 experiments/seq-kd/run.sh         # keep out/ and skip the phases already done
#   STOP_AFTER=seqkd experiments/seq-kd/run.sh  # only teacher, seq-KD data, gold and seq-KD
#                                             # students (what experiments/paraphrase-kd needs)
#
# Everything is written under experiments/seq-kd/out/ (gitignored); the final tables are
# out/table.md, per-phase wall times are in out/timings.txt. Run from anywhere.
# Every student is trained once per seed in SEEDS (train.seed), at most PAR processes at a
# time, each with THREADS threads (the machine is shared: one thread per process avoids
# oversubscription). Phases run in order of importance: teacher, seq-KD data, the gold and
# seq-KD students and their evaluation first, then seq-inter, word-KD and seq-KD + word-KD.
set -euo pipefail
cd "$(dirname "$0")/../.."                      # the repository root
RETORT=${RETORT:-./retort}
[ -x "$RETORT" ] || { echo "run.sh: $RETORT not found (build it, or set RETORT=path)" >&2; exit 1; }
E=experiments/seq-kd
O=$E/out
STEPS_TEACHER=${STEPS_TEACHER:-2400}
STEPS_STUDENT=${STEPS_STUDENT:-2000}
SEEDS=${SEEDS:-"1 2 3"}
BEAMS=${BEAMS:-5}
KD_ALPHA=${KD_ALPHA:-0.9}
KD_T=${KD_T:-1}
PAR=${PAR:-2}
THREADS=${THREADS:-1}
STOP_AFTER=${STOP_AFTER:-}
MAXNEW=48
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
[ "${FRESH:-1}" = 1 ] && rm -rf "$O"
mkdir -p "$O/logs" "$O/eval" "$O/students"
rm -f "$O/FAILED"
T0=$(date +%s)
phase() { echo "$(date +%T) +$(( $(date +%s) - T0 ))s $*" | tee -a "$O/timings.txt"; }
last_ckpt() { ls -d "$1"/step-* | sort | tail -1; }
ckpt() { printf '%s/step-%08d' "$1" "$2"; }

# at most PAR jobs in the background; a failed job leaves out/FAILED (checked by drain)
bg() {
    while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do sleep 2; done
    ( "$@" || { echo "failed: $*" >> "$O/FAILED"; exit 1; } ) &
}
drain() {
    wait
    [ ! -f "$O/FAILED" ] || { cat "$O/FAILED" >&2; echo "run.sh: see $O/logs/" >&2; exit 1; }
}

if [ ! -f $O/task/test.h5 ]; then
    phase "task"
    python3 $E/make_task.py gen --out $O/task --seed 7 --train 3000 --test 200
    "$RETORT" data build --schema sft --input $O/task/train.jsonl --out $O/task/train.h5 -q
    "$RETORT" data build --schema sft --input $O/task/test.jsonl --completion-field reference \
        --out $O/task/test.h5 -q
fi

TEACHER=$(ckpt $O/teacher $STEPS_TEACHER)
if [ ! -d $TEACHER ]; then
    phase "teacher (gold)"
    "$RETORT" train -c $E/teacher.yaml --set train.steps=$STEPS_TEACHER \
        --set train.threads=$THREADS > $O/logs/teacher.log 2>&1
fi

kd_data() { # out.h5, then the selection arguments
    local out=$1; shift
    [ -f $out ] && return 0
    phase "teacher beam search over the training prompts -> $out ($*)"
    "$RETORT" generate --model "$TEACHER" --input $O/task/train_prompts.jsonl --out $out \
        --beams $BEAMS -n $MAXNEW --clamp-new-tokens --drop-empty --drop-unfinished \
        --threads $THREADS "$@" \
        > $O/logs/$(basename $out .h5).log 2>&1
}

evaluate() { # name, checkpoint: greedy and beam on the test prompts, scored by make_task.py
    local name=$1 ckpt=$2
    for dec in greedy beam; do
        [ -f $O/eval/$name.$dec.score.json ] && continue
        local extra=()
        [ $dec = beam ] && extra=(--beams $BEAMS)
        "$RETORT" eval --model "$ckpt" --input $O/task/test.jsonl --reference-field reference \
            -n $MAXNEW --clamp-new-tokens --threads $THREADS "${extra[@]}" \
            --predictions $O/eval/$name.$dec.jsonl \
            --metrics $O/eval/$name.$dec.metrics.json > $O/logs/eval-$name.$dec.log 2>&1 || return 1
        python3 $E/make_task.py score --lexicon $O/task/lexicon.json --pred $O/eval/$name.$dec.jsonl \
            --label "$name $dec" --out $O/eval/$name.$dec.score.json > /dev/null || return 1
    done
}

student_seed() { # name, seed, then extra --set arguments: train (unless done), then evaluate
    local name=$1 seed=$2; shift 2
    local dir=$O/students/$name-s$seed
    if [ ! -d $(ckpt $dir $STEPS_STUDENT) ]; then
        phase "student $name seed $seed"
        rm -rf $dir
        "$RETORT" train -c $E/student.yaml --set train.steps=$STEPS_STUDENT --set train.seed=$seed \
            --set train.threads=$THREADS --set train.out_dir=$dir "$@" \
            > $O/logs/student-$name-s$seed.log 2>&1 || return 1
    fi
    evaluate $name-s$seed $(ckpt $dir $STEPS_STUDENT)
}
students() { # name, then extra --set arguments: one background job per seed
    local name=$1; shift
    for seed in $SEEDS; do bg student_seed $name $seed "$@"; done
}

# seq-KD: the teacher's best beam; seq-inter: of the n-best, the closest to gold by sentence BLEU.
# The teacher's beam search runs beside the students that do not need its output.
bg kd_data $O/kd_best.h5 --samples 1 --select best; KD_BEST_JOB=$!
students gold      --set data.train=$O/task/train.h5
bg evaluate teacher "$TEACHER"
wait $KD_BEST_JOB || { echo "run.sh: the seq-KD data failed (see $O/logs/kd_best.log)" >&2; exit 1; }
students seqkd     --set data.train=$O/kd_best.h5
drain
if [ "$STOP_AFTER" = seqkd ]; then phase "stopped after seqkd (STOP_AFTER)"; exit 0; fi
bg kd_data $O/kd_inter.h5 --samples $BEAMS --select bleu --reference-field target; KD_INTER_JOB=$!
students wordkd    --set data.train=$O/task/train.h5 --set objective.type=kd \
                   --set kd.teacher=$TEACHER --set kd.alpha=$KD_ALPHA --set kd.temperature=$KD_T
wait $KD_INTER_JOB || { echo "run.sh: the seq-inter data failed (see $O/logs/kd_inter.log)" >&2; exit 1; }
students seqinter  --set data.train=$O/kd_inter.h5
students seqkd+wordkd --set data.train=$O/kd_best.h5 --set objective.type=kd \
                   --set kd.teacher=$TEACHER --set kd.alpha=$KD_ALPHA --set kd.temperature=$KD_T
drain

phase "done"
python3 $E/make_task.py table --dir $O --seeds "$SEEDS" | tee $O/table.md
echo "wall time of this invocation: $(( $(date +%s) - T0 )) s" | tee -a $O/table.md
