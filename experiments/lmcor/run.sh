#!/usr/bin/env bash
# LMCOR (Vernikos et al., EACL 2024), scaled down to a shared 2-core CPU.
#
#   experiments/lmcor/run.sh                  # uses ./retort
#   RETORT=build-L/retort experiments/lmcor/run.sh
#   FRESH=0 experiments/lmcor/run.sh          # keep out/ and skip the phases already done
#
# A giant (4 x 64, trained once on its own data in which a few lexicon entries are
# systematically wrong) writes candidate pools: greedy + 4 samples at temperature 0.6.
# A small corrector (2 x 32) reads source + the candidates and is trained on the gold of
# the 4000 training sources; the same small model is also fine-tuned directly on those
# 4000 gold pairs (both 2000 steps of 16). Test: 200 held-out sources; the giant's greedy output, the corrector's
# rewrite of the giant's pool (retort correct run), the direct model's greedy output.
# Seeds (SEEDS): seed s is the giant's sampling seed for the training pool and the test
# pool, and the training seed of the corrector and of the direct model.
# Extra rows (EXTRA=1, after the main ones): the corrector and the direct model again with
# twice the steps (4000), same seeds and pools.
# Output under experiments/lmcor/out/ (gitignored): table.md, timings.txt, logs/, eval/.
set -euo pipefail
cd "$(dirname "$0")/../.."
RETORT=${RETORT:-./retort}
[ -x "$RETORT" ] || { echo "run.sh: $RETORT not found (build it, or set RETORT=path)" >&2; exit 1; }
E=experiments/lmcor
O=$E/out
STEPS_GIANT=${STEPS_GIANT:-1500}
STEPS_SMALL=${STEPS_SMALL:-2000}
SEEDS=${SEEDS:-"1 2 3"}
PAR=${PAR:-2}
THREADS=${THREADS:-1}
EXTRA=${EXTRA:-1}
GN=28          # the giant's and the direct model's -n: the longest target is 24 bytes
CN=32          # the corrector's -n
# The corrector's text, short (byte-level rows are padded to data.seq_len, so the length
# is the cost): "{source}\n{c1}\n{c2}...\n>" -> " {gold}" (c_i start with the giant's
# leading space), exact duplicates dropped (--dedup: the giant is confident, ~1.05 distinct
# candidates per source, so this cuts the corrector's rows from ~130 to ~56 bytes and lets
# data.seq_len be 112). The same options go to correct build and correct run.
FMT=(--candidate-prefix "" --cue ">" --dedup)
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
[ "${FRESH:-1}" = 1 ] && rm -rf "$O"
mkdir -p "$O/logs" "$O/eval" "$O/small" "$O/pool"
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

if [ ! -f $O/task/train.h5 ]; then
    phase "task"
    py gen --out $O/task --seed 11 --giant 6000 --train 4000 --test 200
    "$RETORT" data build --schema sft --input $O/task/giant.jsonl --out $O/task/giant.h5 -q
    "$RETORT" data build --schema sft --input $O/task/train.jsonl --out $O/task/train.h5 -q
fi

GIANT=$(ckpt $O/giant $STEPS_GIANT)
if [ ! -d $GIANT ]; then
    phase "giant"
    rm -rf $O/giant
    "$RETORT" train -c $E/giant.yaml --set train.steps=$STEPS_GIANT --set train.threads=$THREADS \
        --set train.out_dir=$O/giant > $O/logs/giant.log 2>&1
fi

train_small() { # name, seed, steps, then --set arguments
    local name=$1 seed=$2 steps=$3; shift 3
    local dir=$O/small/$name-s$seed
    [ -d $(ckpt $dir $steps) ] && return 0
    phase "train $name seed $seed ($steps steps)"
    rm -rf $dir
    "$RETORT" train -c $E/small.yaml --set train.steps=$steps --set train.seed=$seed \
        --set train.threads=$THREADS --set train.out_dir=$dir "$@" > $O/logs/train-$name-s$seed.log 2>&1
}

corrector_data() { # seed, then extra correct-build options: the giant's pool on the training sources
    local seed=$1 tag=$2; shift 2
    [ -f $O/pool/corr$tag-s$seed.h5 ] && return 0
    if [ ! -f $O/pool/train-s$seed.jsonl ]; then
        phase "giant pool on the training sources, seed $seed"
        "$RETORT" generate --model $GIANT --input $O/task/train.jsonl --out $O/pool/train-s$seed.jsonl.tmp \
            --candidates 4 -t 0.6 -k 0 --seed $seed -n $GN --clamp-new-tokens --threads $THREADS \
            > $O/logs/pool-train-s$seed.log 2>&1
        mv $O/pool/train-s$seed.jsonl.tmp $O/pool/train-s$seed.jsonl
    fi
    "$RETORT" correct build --input $O/pool/train-s$seed.jsonl --reference-field target "${FMT[@]}" "$@" \
        --out $O/pool/corr$tag-s$seed.jsonl > $O/logs/build$tag-s$seed.log 2>&1
    "$RETORT" correct build --input $O/pool/train-s$seed.jsonl --reference-field target "${FMT[@]}" "$@" \
        --out $O/pool/corr$tag-s$seed.h5 --tokenizer bytes >> $O/logs/build$tag-s$seed.log 2>&1
}

corrector() { # seed, tag, steps, then extra correct options (the same for build and run)
    local seed=$1 tag=$2 steps=$3; shift 3
    local name=corrector$tag
    corrector_data $seed "$tag" "$@" || return 1
    train_small $name $seed $steps --set data.train=$O/pool/corr$tag-s$seed.h5 || return 1
    [ -f $O/eval/$name-s$seed.score.json ] && return 0
    phase "correct run $name seed $seed"
    "$RETORT" correct run --giant $GIANT --input $O/task/test.jsonl \
        --corrector $(ckpt $O/small/$name-s$seed $steps) "${FMT[@]}" "$@" \
        --candidates 4 -t 0.6 --seed $seed --giant-max-new-tokens $GN -n $CN --clamp-new-tokens \
        --reference-field reference --threads $THREADS \
        --out $O/eval/$name-s$seed.jsonl --metrics $O/eval/$name-s$seed.run.json \
        > $O/logs/run-$name-s$seed.log 2>&1 || return 1
    # the giant's greedy output and the correction, each scored by retort eval --hypotheses
    # (BLEU, chrF, EM) and by make_task.py (EM, word accuracy per word class)
    for what in giant:candidates $name:correction; do
        local key=${what%%:*} field=${what##*:}
        [ $key = giant ] && [ -n "$tag" ] && continue
        "$RETORT" eval --hypotheses $O/eval/$name-s$seed.jsonl --hypothesis-field $field \
            --input $O/task/test.jsonl --reference-field reference \
            --metrics $O/eval/$key-s$seed.metrics.json > $O/logs/eval-$key-s$seed.log 2>&1 || return 1
        py score --lexicon $O/task/lexicon.json --pred $O/eval/$name-s$seed.jsonl --field $field \
            --label "$key s$seed" --out $O/eval/$key-s$seed.score.json > /dev/null || return 1
    done
}

direct() { # name, seed, steps
    local name=$1 seed=$2 steps=$3
    train_small $name $seed $steps --set data.train=$O/task/train.h5 --set data.seq_len=48 || return 1
    [ -f $O/eval/$name-s$seed.score.json ] && return 0
    "$RETORT" eval --model $(ckpt $O/small/$name-s$seed $steps) --input $O/task/test.jsonl \
        --reference-field reference -n $GN --clamp-new-tokens --threads $THREADS \
        --predictions $O/eval/$name-s$seed.jsonl --metrics $O/eval/$name-s$seed.metrics.json \
        > $O/logs/eval-$name-s$seed.log 2>&1 || return 1
    py score --lexicon $O/task/lexicon.json --pred $O/eval/$name-s$seed.jsonl --field prediction \
        --label "$name s$seed" --out $O/eval/$name-s$seed.score.json > /dev/null
}

for s in $SEEDS; do
    bg corrector $s "" $STEPS_SMALL
    bg direct direct $s $STEPS_SMALL
done
drain
phase "main rows done"
py table --dir $O --seeds "$SEEDS" | tee $O/table.md
if [ "$EXTRA" = 1 ]; then
    for s in $SEEDS; do
        bg corrector $s _long $((2 * STEPS_SMALL))
        bg direct direct_long $s $((2 * STEPS_SMALL))
    done
    drain
fi
phase "done"
py table --dir $O --seeds "$SEEDS" | tee $O/table.md
echo "wall time of this invocation: $(( $(date +%s) - T0 )) s" | tee -a $O/table.md
