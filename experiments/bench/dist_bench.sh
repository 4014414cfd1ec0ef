#!/usr/bin/env bash
# experiments/bench/dist_bench.sh — CPU data-parallel scaling: tokens/s of the
# tiny quickstart model (configs/tiny.yaml: 4 layers x 128, T=128) trained
#   (a) by 1 process with 1 thread, batch 8
#   (b) by 2 MPI ranks with 1 thread each, batch 8 per rank (global 16)
#   (c) by 1 process with 2 threads, batch 16 (the same global batch as (b))
# Median tokens/s over steps 6..STEPS (the first steps warm caches). Run on an
# otherwise idle machine: `bash experiments/bench/dist_bench.sh` (builds first
# with `make`). Needs mpirun (openmpi-bin).
set -eu
BIN=${RETORT:-./retort}
STEPS=${STEPS:-30}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
dir=$(mktemp -d /tmp/retort-distbench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
awk 'BEGIN { srand(1); for (d = 0; d < 400; d++) { s = ""; for (i = 0; i < 600; i++)
       s = s sprintf("%c", 97 + int(rand() * 26)); printf "{\"text\": \"%s\"}\n", s } }' > "$dir/t.jsonl"
"$BIN" data build --schema lm --input "$dir/t.jsonl" --out "$dir/t.h5" -q
COMMON="--set data.train=$dir/t.h5 --set data.val_fraction=0 --set eval.every=0 --set train.steps=$STEPS
  --set optim.warmup_steps=1 --set checkpoint.every=0 --set train.log_every=1000"
median() { # metrics file -> median tokens_per_s of steps >= 6
  grep '"tokens_per_s"' "$1" | awk -F'"tokens_per_s": ' '{ split($2, a, ","); s++; if (s >= 6) print a[1] }' |
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
"$BIN" train -c configs/tiny.yaml $COMMON --set data.batch_size=8 --set train.threads=1 \
  --set train.out_dir="$dir/a" > "$dir/a.log"
mpirun --oversubscribe -np 2 "$BIN" train -c configs/tiny.yaml $COMMON --set data.batch_size=8 \
  --set train.threads=1 --set train.out_dir="$dir/b" > "$dir/b.log"
"$BIN" train -c configs/tiny.yaml $COMMON --set data.batch_size=16 --set train.threads=2 \
  --set train.out_dir="$dir/c" > "$dir/c.log"
a=$(median "$dir/a/metrics.jsonl"); b=$(median "$dir/b/metrics.jsonl"); c=$(median "$dir/c/metrics.jsonl")
echo "CPU data-parallel scaling, tiny model (configs/tiny.yaml), $(nproc) cores, median tokens/s:"
printf '  1 rank  x 1 thread, batch 8        %10.0f tok/s\n' "$a"
printf '  2 ranks x 1 thread, batch 8 each   %10.0f tok/s  (%.2fx of 1 rank)\n' "$b" "$(awk -v x="$b" -v y="$a" 'BEGIN { print x / y }')"
printf '  1 rank  x 2 threads, batch 16      %10.0f tok/s  (%.2fx of 1 rank)\n' "$c" "$(awk -v x="$c" -v y="$a" 'BEGIN { print x / y }')"
