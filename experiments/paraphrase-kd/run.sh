#!/usr/bin/env bash
# Paraphrase generation by sequence-level KD (Jayawardena & Yapa 2024), scaled down to two
# CPU cores: students distilled from the teacher's beam output vs from K sampled teacher
# candidates per source; quality (multi-reference BLEU, validity) and diversity (self-BLEU of
# each model's samples, distinct valid outputs per source).
#
#   experiments/paraphrase-kd/run.sh            # uses ./retort
#   FRESH=0 experiments/paraphrase-kd/run.sh    # keep out/ and skip the phases already done
#
# The task, the teacher, the beam (seq-KD) data and the gold / beam students are
# experiments/seq-kd's (same task code, configs and seeds): this script first runs
# `FRESH=0 STOP_AFTER=seqkd experiments/seq-kd/run.sh`, which does nothing when they exist.
# Its own output goes under experiments/paraphrase-kd/out/ (gitignored): sampled-s*.h5,
# nbest.h5, students/, eval/, logs/, timings.txt and table.md.
set -euo pipefail
cd "$(dirname "$0")/../.."                      # the repository root
RETORT=${RETORT:-./retort}
[ -x "$RETORT" ] || { echo "run.sh: $RETORT not found (build it, or set RETORT=path)" >&2; exit 1; }
E=experiments/paraphrase-kd
O=$E/out
S=experiments/seq-kd
SO=$S/out
STEPS_TEACHER=${STEPS_TEACHER:-2400}
STEPS_STUDENT=${STEPS_STUDENT:-2000}
SEEDS=${SEEDS:-"1 2 3"}
K=${K:-3}                 # sampled teacher candidates per training source (the paper: ~2.7)
SAMPLES=${SAMPLES:-5}     # samples per test source for self-BLEU
TEMP=${TEMP:-1}           # sampling temperature, for the candidates and for the diversity eval
NBEST=${NBEST:-1}         # also the K-best beams student (0: skip it)
PAR=${PAR:-2}
THREADS=${THREADS:-1}
MAXNEW=48
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
[ "${FRESH:-1}" = 1 ] && rm -rf "$O"
mkdir -p "$O/logs" "$O/eval" "$O/students"
rm -f "$O/FAILED"
T0=$(date +%s)
phase() { echo "$(date +%T) +$(( $(date +%s) - T0 ))s $*" | tee -a "$O/timings.txt"; }
ckpt() { printf '%s/step-%08d' "$1" "$2"; }
bg() {
    while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do sleep 2; done
    ( "$@" || { echo "failed: $*" >> "$O/FAILED"; exit 1; } ) &
}
drain() {
    wait
    [ ! -f "$O/FAILED" ] || { cat "$O/FAILED" >&2; echo "run.sh: see $O/logs/" >&2; exit 1; }
}

phase "seq-kd's task, teacher, beam data, gold and beam students (FRESH=0 STOP_AFTER=seqkd)"
FRESH=0 STOP_AFTER=seqkd STEPS_TEACHER=$STEPS_TEACHER STEPS_STUDENT=$STEPS_STUDENT \
    SEEDS="$SEEDS" PAR=$PAR THREADS=$THREADS RETORT=$RETORT $S/run.sh
TEACHER=$(ckpt $SO/teacher $STEPS_TEACHER)

candidates() { # out.h5, then generate's sampling / beam arguments: every completion kept
    local out=$1; shift
    [ -f $out ] && return 0
    phase "teacher candidates over the training prompts -> $out ($*)"
    "$RETORT" generate --model "$TEACHER" --input $SO/task/train_prompts.jsonl --out $out.part.h5 \
        -n $MAXNEW --clamp-new-tokens --drop-empty --drop-unfinished --select all \
        --threads $THREADS "$@" > $O/logs/$(basename $out .h5).log 2>&1 || return 1
    mv $out.part.h5 $out
}

sampled_eval() { # name, checkpoint, seed: SAMPLES samples per test prompt at TEMP
    local name=$1 ckpt=$2 seed=$3
    [ -f $O/eval/$name.sampled.score.json ] && return 0
    "$RETORT" eval --model "$ckpt" --input $SO/task/test.jsonl --reference-field reference \
        -n $MAXNEW --clamp-new-tokens --threads $THREADS --samples $SAMPLES \
        --temperature $TEMP --top-k 0 --seed $seed \
        --predictions $O/eval/$name.sampled.jsonl \
        --metrics $O/eval/$name.sampled.metrics.json > $O/logs/eval-$name.sampled.log 2>&1 || return 1
    python3 $S/make_task.py score --lexicon $SO/task/lexicon.json --pred $O/eval/$name.sampled.jsonl \
        --label "$name sampled" --out $O/eval/$name.sampled.score.json > /dev/null
}
greedy_eval() { # name, checkpoint
    local name=$1 ckpt=$2
    [ -f $O/eval/$name.greedy.score.json ] && return 0
    "$RETORT" eval --model "$ckpt" --input $SO/task/test.jsonl --reference-field reference \
        -n $MAXNEW --clamp-new-tokens --threads $THREADS \
        --predictions $O/eval/$name.greedy.jsonl \
        --metrics $O/eval/$name.greedy.metrics.json > $O/logs/eval-$name.greedy.log 2>&1 || return 1
    python3 $S/make_task.py score --lexicon $SO/task/lexicon.json --pred $O/eval/$name.greedy.jsonl \
        --label "$name greedy" --out $O/eval/$name.greedy.score.json > /dev/null
}
student_seed() { # name, train.h5, seed: train (unless done), then both evaluations
    local name=$1 data=$2 seed=$3
    local dir=$O/students/$name-s$seed
    if [ ! -d $(ckpt $dir $STEPS_STUDENT) ]; then
        phase "student $name seed $seed ($data)"
        rm -rf $dir
        "$RETORT" train -c $S/student.yaml --set train.steps=$STEPS_STUDENT --set train.seed=$seed \
            --set train.threads=$THREADS --set train.out_dir=$dir --set data.train=$data \
            --set data.val=$SO/task/test.h5 > $O/logs/student-$name-s$seed.log 2>&1 || return 1
    fi
    greedy_eval $name-s$seed $(ckpt $dir $STEPS_STUDENT) && \
        sampled_eval $name-s$seed $(ckpt $dir $STEPS_STUDENT) $seed
}

# the teacher's and seq-kd's students' diversity: sampled with each seed
for seed in $SEEDS; do
    bg sampled_eval teacher-s$seed "$TEACHER" $seed
    bg sampled_eval gold-s$seed $(ckpt $SO/students/gold-s$seed $STEPS_STUDENT) $seed
    bg sampled_eval beam-s$seed $(ckpt $SO/students/seqkd-s$seed $STEPS_STUDENT) $seed
done
# K sampled candidates per source, drawn with the student's seed (a fresh draw per seed)
sampled_seed() {
    candidates $O/sampled-s$1.h5 --samples $K --temperature $TEMP --top-k 0 --seed $1 &&
        student_seed sampled $O/sampled-s$1.h5 $1
}
for seed in $SEEDS; do bg sampled_seed $seed; done
drain
if [ "$NBEST" = 1 ]; then    # K candidates from beam search: the K best of K beams
    candidates $O/nbest.h5 --beams $K --samples $K
    for seed in $SEEDS; do bg student_seed nbest $O/nbest.h5 $seed; done
fi
drain

phase "done"
python3 $E/report.py --dir $O --seqkd-dir $SO --seeds "$SEEDS" | tee $O/table.md
echo "wall time of this invocation: $(( $(date +%s) - T0 )) s" | tee -a $O/table.md
