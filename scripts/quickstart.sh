#!/usr/bin/env bash
# scripts/quickstart.sh — the README's first command, end to end on the CPU:
# a public-domain text (the King James Bible, from Debian's bible-kjv package)
# becomes an HDF5 dataset; a tiny byte-level GPT trains on it for a minute or
# two; the model then writes a few lines. Everything lands in quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p quickstart

echo "== 1/4 text: Genesis and Exodus from the King James Bible (bible-kjv)"
# one verse per line, headings and verse numbers dropped
bible -l1000 "Gen1:1-Exo40:38" | sed -nE 's/^ *[0-9]+ (.*)$/\1/p' > quickstart/kjv.txt
echo "   $(wc -l < quickstart/kjv.txt) verses, $(wc -c < quickstart/kjv.txt) bytes"

echo "== 2/4 dataset: quickstart/kjv.h5"
./retort data build --schema lm --input quickstart/kjv.txt --out quickstart/kjv.h5

echo "== 3/4 train: configs/tiny.yaml"
rm -rf quickstart/run
./retort train -c configs/tiny.yaml "$@"

echo "== 4/4 sample from the last checkpoint"
last=$(ls -d quickstart/run/step-* | sort | tail -1)
./retort generate --model "$last" --prompt "And God said" --max-new-tokens 100 \
  --temperature 0.8 --top-k 40 --seed 1

echo
echo "quickstart done: dataset quickstart/kjv.h5, checkpoints in quickstart/run/,"
echo "metrics in quickstart/run/metrics.jsonl. Load the checkpoint in Python with"
echo "  transformers.GPT2LMHeadModel.from_pretrained('$last')"
