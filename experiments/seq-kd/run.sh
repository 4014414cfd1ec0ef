#!/usr/bin/env bash
# Sequence-level knowledge distillation (Kim & Rush 2016), scaled down to two CPU cores.
#
#   experiments/seq-kd/run.sh                 # uses ./retort
#   RETORT=build/hx/retort experiments/seq-kd/run.sh
#   FRESH=0 experiments/seq-kd/run.sh         # keep out/ and skip the phases already done
#
# Everything is written under experiments/seq-kd/out/ (gitignored); the final table is
# out/table.md, per-phase wall times are in out/timings.txt. Run from anywhere.
# Phases run in order of importance: teacher, seq-KD data, the gold and seq-KD students and
# their evaluation first, then seq-inter, word-KD and seq-KD + word-KD.
set -euo pipefail
cd "$(dirname "$0")/../.."                      # the repository root
RETORT=${RETORT:-./retort}
[ -x "$RETORT" ] || { echo "run.sh: $RETORT not found (build it, or set RETORT=path)" >&2; exit 1; }
E=experiments/seq-kd
O=$E/out
STEPS_TEACHER=${STEPS_TEACHER:-600}
STEPS_STUDENT=${STEPS_STUDENT:-3000}
BEAMS=${BEAMS:-5}
KD_ALPHA=${KD_ALPHA:-0.9}
KD_T=${KD_T:-1}
MAXNEW=48
[ "${FRESH:-1}" = 1 ] && rm -rf "$O"
mkdir -p "$O/logs" "$O/eval" "$O/students"
T0=$(date +%s)
phase() { echo "$(date +%T) +$(( $(date +%s) - T0 ))s $*" | tee -a "$O/timings.txt"; }
last_ckpt() { ls -d "$1"/step-* | sort | tail -1; }

if [ ! -f $O/task/test.h5 ]; then
    phase "task"
    python3 $E/make_task.py gen --out $O/task --seed 7 --train 3000 --test 200
    "$RETORT" data build --schema sft --input $O/task/train.jsonl --out $O/task/train.h5 -q
    "$RETORT" data build --schema sft --input $O/task/test.jsonl --completion-field reference \
        --out $O/task/test.h5 -q
fi

TEACHER=$O/teacher/$(printf 'step-%08d' $STEPS_TEACHER)
if [ ! -d $TEACHER ]; then
    phase "teacher (gold)"
    "$RETORT" train -c $E/teacher.yaml --set train.steps=$STEPS_TEACHER > $O/logs/teacher.log 2>&1
fi

kd_data() { # out.h5, then the selection arguments
    local out=$1; shift
    [ -f $out ] && return 0
    phase "teacher beam search over the training prompts -> $out ($*)"
    "$RETORT" generate --model "$TEACHER" --input $O/task/train_prompts.jsonl --out $out \
        --beams $BEAMS -n $MAXNEW --clamp-new-tokens --drop-empty --drop-unfinished \
        --threads 2 "$@" \
        > $O/logs/$(basename $out .h5).log 2>&1
}

student() { # name, then extra --set arguments
    local name=$1; shift
    [ -d $O/students/$name/$(printf 'step-%08d' $STEPS_STUDENT) ] && return 0
    phase "student $name"
    rm -rf $O/students/$name
    "$RETORT" train -c $E/student.yaml --set train.steps=$STEPS_STUDENT \
        --set train.out_dir=$O/students/$name "$@" > $O/logs/student-$name.log 2>&1
}

evaluate() { # name, checkpoint
    local name=$1 ckpt=$2
    for dec in greedy beam; do
        [ -f $O/eval/$name.$dec.score.json ] && continue
        phase "eval $name $dec"
        local extra=()
        [ $dec = beam ] && extra=(--beams $BEAMS)
        "$RETORT" eval --model "$ckpt" --input $O/task/test.jsonl --reference-field reference \
            -n $MAXNEW --clamp-new-tokens --threads 2 "${extra[@]}" \
            --predictions $O/eval/$name.$dec.jsonl \
            --metrics $O/eval/$name.$dec.metrics.json > $O/logs/eval-$name.$dec.log 2>&1
        python3 $E/make_task.py score --lexicon $O/task/lexicon.json \
            --pred $O/eval/$name.$dec.jsonl --label "$name $dec" --out $O/eval/$name.$dec.score.json
    done
}
ev_student() { evaluate $1 "$(last_ckpt $O/students/$1)"; }

# seq-KD: the teacher's best beam; seq-inter: of the n-best, the closest to gold by sentence BLEU
kd_data $O/kd_best.h5 --samples 1 --select best
student gold       --set data.train=$O/task/train.h5
student seqkd      --set data.train=$O/kd_best.h5
evaluate teacher "$TEACHER"
ev_student gold
ev_student seqkd
kd_data $O/kd_inter.h5 --samples $BEAMS --select bleu --reference-field target
student seqinter   --set data.train=$O/kd_inter.h5
ev_student seqinter
student wordkd     --set data.train=$O/task/train.h5 --set objective.type=kd \
                   --set kd.teacher=$TEACHER --set kd.alpha=$KD_ALPHA --set kd.temperature=$KD_T
ev_student wordkd
student seqkd+wordkd --set data.train=$O/kd_best.h5 --set objective.type=kd \
                   --set kd.teacher=$TEACHER --set kd.alpha=$KD_ALPHA --set kd.temperature=$KD_T
ev_student seqkd+wordkd

phase "done"
python3 $E/make_task.py table --dir $O | tee $O/table.md
echo "wall time of this invocation: $(( $(date +%s) - T0 )) s" | tee -a $O/table.md
