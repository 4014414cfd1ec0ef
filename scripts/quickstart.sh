#!/usr/bin/env bash
# scripts/quickstart.sh — the README's first command: sequence-level knowledge
# distillation end to end on the CPU, in about three minutes on two cores.
#
#   1. text: Genesis and Exodus (King James Bible, Debian's bible-kjv), one verse
#      per line; the last 146 verses are held out
#   2. a 1024-token BPE learned from the training verses; HDF5 datasets
#   3. a teacher (4 layers x 128) fine-tuned on the training verses: first
#      half of a verse in, second half out
#   4. the teacher completes the first half of every training verse (greedy):
#      a sequence-level KD dataset (generate --select best)
#   5. two students (2 layers x 64, a fifth of the teacher's parameters): one on
#      the gold second halves, one on the teacher's; same config, steps and seed
#   6. all three complete the held-out verses: perplexity of the true second
#      half, BLEU and chrF of the greedy completion, training tokens/s
#
# Everything lands in quickstart/ (runs, data, eval). Extra arguments go to every
# `retort train` (e.g. --set train.threads=1).
set -euo pipefail
cd "$(dirname "$0")/.."
Q=quickstart
R=./retort
T0=$(date +%s)
step() { echo; echo "== $* ($(($(date +%s) - T0)) s)"; }
rm -rf $Q/teacher $Q/student-gold $Q/student-kd $Q/data $Q/eval $Q/logs
mkdir -p $Q/data $Q/eval $Q/logs
# train NAME ARGS...: a run with its log in quickstart/logs/NAME.log; shows the
# model line, every 200th step and the validation losses
train() {
    local name=$1
    shift
    $R train "$@" > $Q/logs/$name.log
    grep -E '^model: [0-9]|^step [0-9]*[02468]00/|^step [0-9]+ \| val' $Q/logs/$name.log |
        sed 's/^/   /' || true
}

step "1/6 text: Genesis and Exodus from the King James Bible (bible-kjv)"
# one verse per line, headings and verse numbers dropped
bible -l1000 "Gen1:1-Exo40:38" | sed -nE 's/^ *[0-9]+ (.*)$/\1/p' > $Q/kjv.txt
n_verses=$(wc -l < $Q/kjv.txt)
n_test=146
head -n $((n_verses - n_test)) $Q/kjv.txt > $Q/data/train.txt
tail -n $n_test $Q/kjv.txt > $Q/data/test.txt
# A verse becomes a prompt (its first half of words) and a completion (the rest).
halves() { # field name of the second half
    awk -v f="$1" '{
        gsub(/\\/, "\\\\"); gsub(/"/, "\\\"")
        n = split($0, w, " "); k = int(n / 2); if (k < 2) next
        p = w[1]; for (i = 2; i <= k; i++) p = p " " w[i]
        c = ""; for (i = k + 1; i <= n; i++) c = c " " w[i]
        printf "{\"prompt\": \"%s\", \"%s\": \"%s\"}\n", p, f, c
    }'
}
halves completion < $Q/data/train.txt > $Q/data/train.jsonl
halves reference < $Q/data/test.txt > $Q/data/test.jsonl
echo "   $n_verses verses: $(wc -l < $Q/data/train.jsonl) for training, $(wc -l < $Q/data/test.jsonl) held out"

step "2/6 tokenizer and datasets"
$R tokenizer train --vocab-size 1024 $Q/data/train.txt -o $Q/tokenizer.json -q
$R data build --schema sft --input $Q/data/train.jsonl --tokenizer $Q/tokenizer.json \
    --out $Q/data/train_gold.h5 -q
# the byte-level dataset of the whole text, for the README's recipes (configs/tiny.yaml)
$R data build --schema lm --input $Q/kjv.txt --out $Q/kjv.h5 -q
echo "   $Q/tokenizer.json (1024 tokens), $Q/data/train_gold.h5 (prompts and gold completions)"

step "3/6 teacher: configs/quickstart/teacher.yaml"
train teacher -c configs/quickstart/teacher.yaml "$@"
teacher=$(ls -d $Q/teacher/step-* | sort | tail -1)

step "4/6 the teacher completes the training prompts: sequence-level KD data"
$R generate --model "$teacher" --tokenizer $Q/tokenizer.json --input $Q/data/train.jsonl \
    --out $Q/data/train_kd.h5 --select best --temperature 0 -n 48 --clamp-new-tokens --stop $'\n' \
    --drop-empty --threads 2

step "5/6 students: configs/quickstart/student.yaml on gold and on the teacher's outputs"
train student-gold -c configs/quickstart/student.yaml "$@"
train student-kd -c configs/quickstart/student.yaml --set data.train=$Q/data/train_kd.h5 \
    --set train.out_dir=$Q/student-kd "$@"

step "6/6 evaluation on the $n_test held-out verses"
row() { # name, run dir
    local ckpt m
    ckpt=$(ls -d "$2"/step-* | sort | tail -1)
    $R eval --model "$ckpt" --tokenizer $Q/tokenizer.json --input $Q/data/test.jsonl -n 48 --clamp-new-tokens \
        --stop $'\n' --predictions $Q/eval/$1.jsonl --metrics $Q/eval/$1.json --threads 2 -q > /dev/null
    m=$Q/eval/$1.json
    num() { sed -nE "s/.*\"$1\": *([-0-9.e+]+).*/\1/p" "$m" | head -1; }
    params=$(sed -nE 's/^model: ([0-9]+) parameters.*/\1/p' $Q/logs/$1.log)
    tps=$(tail -n 20 "$2/metrics.jsonl" | sed -nE 's/.*"tokens_per_s": *([0-9.]+).*/\1/p' |
          awk '{s += $1; n++} END {if (n) printf "%.0f", s / n}')
    printf "| %-12s | %9s | %10s | %6.1f | %6.2f | %6.2f | %9s |\n" "$1" "${params:-?}" "$3" \
        "$(num ppl)" "$(num bleu)" "$(num chrf)" "${tps:-?}"
}
{
    echo "| model        |    params | trained on | ppl    | BLEU   | chrF   | train tok/s |"
    echo "|--------------|----------:|------------|-------:|-------:|-------:|----------:|"
    row teacher $Q/teacher "gold"
    row student-gold $Q/student-gold "gold"
    row student-kd $Q/student-kd "teacher"
} | tee $Q/eval/table.md

echo
echo "A held-out verse: its first half, the true second half, and each model's continuation"
echo "(sampled at temperature 0.8, top-k 40; the table's scores are greedy):"
line=12
prompt=$(sed -n ${line}p $Q/data/test.jsonl | sed -E 's/.*"prompt": *"([^"]*)".*/\1/')
echo "   prompt:        $prompt"
echo "   reference:    $(sed -n ${line}p $Q/data/test.jsonl | sed -E 's/.*"reference": *"([^"]*)".*/\1/')"
for m in teacher student-gold student-kd; do
    ckpt=$(ls -d $Q/$m/step-* | sort | tail -1)
    out=$($R generate --model "$ckpt" --tokenizer $Q/tokenizer.json --prompt "$prompt" -n 40 \
        --clamp-new-tokens --temperature 0.8 --top-k 40 --seed 1 --threads 2 2> /dev/null |
        head -n 1)
    printf "   %-14s%s\n" "$m:" "${out#"$prompt"}"
done

$R plot $Q/teacher $Q/student-gold $Q/student-kd -o $Q/loss.svg > /dev/null

echo
echo "quickstart done in $(($(date +%s) - T0)) s. Table: $Q/eval/table.md; runs: $Q/teacher,"
echo "$Q/student-gold, $Q/student-kd (checkpoints load in transformers as GPT2LMHeadModel)."
echo "Look at the runs:"
echo "  $Q/loss.svg: the three loss curves and validation points, open it in a browser"
echo "    (./retort plot RUN_DIR... --metric NAME -o FILE.svg draws any metric of metrics.jsonl)"
echo "  tensorboard --logdir $Q      # each run wrote TensorBoard events (pip install tensorboard)"
