#!/usr/bin/env bash
# COLLATE (Patnaik et al., ACL 2025) scaled down to a shared 2-core CPU.
#
#   experiments/collate/run.sh                    # uses ./retort
#   RETORT=build-K/retort experiments/collate/run.sh
#   FRESH=0 experiments/collate/run.sh            # keep out/ and skip the phases already done
#
# Task (make_task.py): four operations +d / *d on Z5 read left to right, "3+4*2+1*3" -> "0",
# with training rationales in two styles, step by step ("3+4=2,2*2=4,4+1=0,0*3=0") or a
# one-jump shortcut ("3+4*2+1*3=0"), half each, all correct. Per seed (train.seed and the pair-sampling seed):
#   it3    instruction tuning in COLLATE's three modes (retort explain build --tasks
#          answer,rationale,rationale-answer): a:Q -> A, r:Q -> R, r:Q R; -> A
#   it1    instruction tuning on a:Q -> A alone (same steps and batch)
#   single rationales sampled from it3 alone (T=1, 6 per question), scored by the
#          likelihood of the gold answer after "R;", best vs worst -> DPO from it3
#   multi  COLLATE: the same 6 rationales per question from three instances of the model
#          (final @T=1, final @T=0.6, the half-way checkpoint @T=1; 2 each) -> DPO from it3
#   multiR COLLATE's multi-instance pairs, DPO with dpo.rpo_alpha=1 (NLL on the chosen rationale)
#   sftC   no preference: plain fine-tuning of it3 on the multi pairs' chosen rationales
#          (same steps, batch 16, lr as DPO)
#   multiT the same pairs' recipe with three temperatures of the final checkpoint (T=1, 0.6, 1.4; 2 each)
# Evaluation on 300 held-out questions: greedy direct answer (a:Q) and greedy rationale
# (r:Q) followed by the greedy answer after "r:Q R;" (COLLATE's inference).
# Everything goes to experiments/collate/out/ (gitignored): table.md, timings.txt, logs/.
set -euo pipefail
cd "$(dirname "$0")/../.."
RETORT=${RETORT:-./retort}
[ -x "$RETORT" ] || { echo "run.sh: $RETORT not found (build it, or set RETORT=path)" >&2; exit 1; }
E=experiments/collate
O=$E/out
SEEDS=${SEEDS:-"1 2 3"}
STEPS_IT=${STEPS_IT:-2000}
STEPS_DPO=${STEPS_DPO:-200}
DPO_LR=${DPO_LR:-5e-5}
DPO_BETA=${DPO_BETA:-0.1}
RPO_ALPHA=${RPO_ALPHA:-1.0}     # multiR only
SAMPLES=${SAMPLES:-6}           # rationales per question, single and multi alike
NPAIRS=${NPAIRS:-800}           # training questions COLLATE samples rationales for
PAR=${PAR:-2}
THREADS=${THREADS:-1}
MAXNEW=30
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
[ "${FRESH:-1}" = 1 ] && rm -rf "$O"
mkdir -p "$O/logs" "$O/eval" "$O/pairs" "$O/models"
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

T=$O/task
if [ ! -f $T/modes.h5 ] || [ ! -f $T/answer.h5 ]; then
    phase "task"
    py gen --out $T --seed 7 --train 4000 --pairs $NPAIRS --test 300
    # the three modes, with short prefixes (byte-level rows stay within 40 tokens)
    "$RETORT" explain build --input $T/expl.jsonl --out $T/modes.jsonl \
        --tasks answer,rationale,rationale-answer --prefix answer=a: --prefix rationale=r: \
        --prefix rationale-answer=r: --answer-joiner ';' > $O/logs/task.log 2>&1
    "$RETORT" explain build --input $T/expl.jsonl --out $T/answer.jsonl --tasks answer \
        --prefix answer=a: >> $O/logs/task.log 2>&1
    "$RETORT" data build --schema sft --input $T/modes.jsonl --out $T/modes.h5 --task-field task -q
    "$RETORT" data build --schema sft --input $T/answer.jsonl --out $T/answer.h5 -q
fi

evaluate() { # key-seed, checkpoint, direct|both
    local name=$1 m=$2 what=$3 f=$O/eval/$1
    [ -f $f.score.json ] && return 0
    "$RETORT" eval --model "$m" --input $T/test_answer.jsonl --reference-field answer --answer whole \
        -n 4 --threads $THREADS --predictions $f.direct.jsonl --metrics $f.direct.metrics.json \
        > $O/logs/eval-$name.log 2>&1 || return 1
    if [ $what = direct ]; then
        py score --direct $f.direct.jsonl --out $f.score.json > /dev/null; return 0
    fi
    "$RETORT" eval --model "$m" --input $T/test_rationale.jsonl -n $MAXNEW --threads $THREADS \
        --predictions $f.rat.jsonl --metrics $f.rat.metrics.json >> $O/logs/eval-$name.log 2>&1 || return 1
    py stage2 $f.rat.jsonl $f.stage2.jsonl
    "$RETORT" eval --model "$m" --input $f.stage2.jsonl --reference-field answer --answer whole \
        -n 4 --threads $THREADS --predictions $f.ans.jsonl --metrics $f.ans.metrics.json \
        >> $O/logs/eval-$name.log 2>&1 || return 1
    py score --direct $f.direct.jsonl --rat $f.rat.jsonl --ans $f.ans.jsonl --out $f.score.json > /dev/null
}

it_seed() { # it1|it3, seed
    local kind=$1 s=$2 dir=$O/models/$1-s$2 data=(--set data.train=$T/modes.h5)
    # answer-only rows are at most 14 bytes: a shorter row, the same steps and batch
    [ $kind = it1 ] && data=(--set data.train=$T/answer.h5 --set data.seq_len=16)
    if [ ! -d $(ckpt $dir $STEPS_IT) ]; then
        phase "$kind seed $s: instruction tuning ($STEPS_IT steps)"
        rm -rf $dir
        "$RETORT" train -c $E/it.yaml "${data[@]}" --set train.steps=$STEPS_IT \
            --set train.seed=$s --set train.threads=$THREADS --set train.out_dir=$dir \
            --set checkpoint.every=$(( STEPS_IT / 2 )) > $O/logs/$kind-s$s.log 2>&1 || return 1
    fi
    local what=both; [ $kind = it1 ] && what=direct
    evaluate $kind-s$s $(ckpt $dir $STEPS_IT) $what
}

pairs_seed() { # single|multi, seed
    local kind=$1 s=$2 out=$O/pairs/$1-s$2
    local it=$(ckpt $O/models/it3-s$s $STEPS_IT) mid=$(ckpt $O/models/it3-s$s $(( STEPS_IT / 2 )))
    [ -f $out.stats.json ] && return 0
    phase "pairs $kind seed $s"
    local inst=(--samples $SAMPLES) k=$(( SAMPLES / 3 ))
    case $kind in
        multi) inst=(--samples $k --instance :temperature=0.6 --instance $mid:temperature=1.0) ;;
        # the final checkpoint alone at three temperatures: is the half-way checkpoint needed?
        multiT) inst=(--samples $k --instance :temperature=0.6 --instance :temperature=1.4) ;;
    esac
    "$RETORT" pairs --model $it "${inst[@]}" --temperature 1.0 --seed $(( 1000 * s )) \
        --input $T/pair_prompts.jsonl --out $out.h5 -n $MAXNEW \
        --scorer gold-likelihood --answer-prefix ';' --gold-field answer \
        --dump $out.pool.jsonl --threads $THREADS > $O/logs/pairs-$kind-s$s.log 2>&1 || return 1
    py pairstats $out.pool.jsonl --out $out.stats.json > /dev/null
}

dpo_seed() { # single|multi|multiT|multiR, seed
    local kind=$1 s=$2 dir=$O/models/$1-s$2 pk=$1 extra=()
    local it=$(ckpt $O/models/it3-s$s $STEPS_IT)
    # multiR: COLLATE's multi-instance pairs, DPO plus RPO's NLL on the chosen rationale
    [ $kind = multiR ] && { pk=multi; extra=(--set dpo.rpo_alpha=$RPO_ALPHA); }
    pairs_seed $pk $s || return 1
    if [ ! -d $(ckpt $dir $STEPS_DPO) ]; then
        phase "DPO $kind seed $s"
        rm -rf $dir
        "$RETORT" train -c $E/dpo.yaml --set model.init=$it --set data.train=$O/pairs/$pk-s$s.h5 \
            --set train.steps=$STEPS_DPO --set checkpoint.every=$STEPS_DPO --set optim.lr=$DPO_LR \
            --set optim.min_lr=$DPO_LR --set dpo.beta=$DPO_BETA --set train.seed=$s \
            --set train.threads=$THREADS --set train.out_dir=$dir "${extra[@]}" \
            > $O/logs/dpo-$kind-s$s.log 2>&1 || return 1
    fi
    evaluate $kind-s$s $(ckpt $dir $STEPS_DPO) both
}

sft_chosen_seed() { # seed: the multi-instance pairs' chosen rationales, plain lm fine-tuning
    local s=$1 dir=$O/models/sftC-s$1 it=$(ckpt $O/models/it3-s$1 $STEPS_IT)
    pairs_seed multi $s || return 1
    if [ ! -d $(ckpt $dir $STEPS_DPO) ]; then
        phase "SFT on chosen rationales seed $s"
        py chosen $O/pairs/multi-s$s.pool.jsonl $O/pairs/sftC-s$s.jsonl
        "$RETORT" data build --schema sft --input $O/pairs/sftC-s$s.jsonl --out $O/pairs/sftC-s$s.h5 -q \
            > $O/logs/sftC-s$s.log 2>&1 || return 1
        rm -rf $dir
        # the DPO runs' steps, batch, lr and warm-up
        "$RETORT" train -c $E/it.yaml --set model.init=$it --set data.train=$O/pairs/sftC-s$s.h5 \
            --set data.batch_size=16 --set train.steps=$STEPS_DPO --set checkpoint.every=$STEPS_DPO \
            --set checkpoint.keep=1 --set optim.lr=$DPO_LR --set optim.min_lr=$DPO_LR \
            --set optim.warmup_steps=10 --set data.val_fraction=0.1 --set train.seed=$s \
            --set train.threads=$THREADS --set train.out_dir=$dir >> $O/logs/sftC-s$s.log 2>&1 || return 1
    fi
    evaluate sftC-s$s $(ckpt $dir $STEPS_DPO) both
}

chain() { # seed: it3, then COLLATE (multi), single-instance pairs, multiR, multiT
    local s=$1
    it_seed it3 $s || return 1
    dpo_seed multi $s || return 1
    dpo_seed single $s || return 1
    dpo_seed multiR $s || return 1
    dpo_seed multiT $s || return 1
    sft_chosen_seed $s || return 1
}

# the three-mode chains first (what the comparison needs), the answer-only baselines beside them
for s in $SEEDS; do bg chain $s; done
for s in $SEEDS; do bg it_seed it1 $s; done
drain
phase "done"
py table --dir $O --seeds "$SEEDS" | tee $O/table.md
echo "wall time of this invocation: $(( $(date +%s) - T0 )) s" | tee -a $O/table.md
