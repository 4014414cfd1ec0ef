#!/usr/bin/env bash
# experiments/bench/overlap_bench.sh — what dist.overlap buys on the CPU:
# median step time under `mpirun -np 2` of a model whose gradient is large
# for its compute (GPT-2 shape, L layers of width C, T tokens, B rows per
# rank, so the per-step all-reduce of 4 * params bytes is a visible share of
# the step), with the reduction after backward (dist.overlap=false), started
# block by block during backward (dist.bucket_mb=0) and in 25 MiB buckets (the
# default), and 1 rank of the same per-rank batch (no communication at all:
# the floor). Each rank runs THREADS threads. The runs are interleaved REPS
# times so a busy machine's drift falls on every variant alike; a step's time
# is its tokens over its tokens_per_s, the median over steps 4..STEPS of all
# repetitions.
#
#   experiments/bench/overlap_bench.sh [OUT_DIR]  (env: STEPS REPS L C T B THREADS)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/overlap_bench}
STEPS=${STEPS:-20} REPS=${REPS:-2} L=${L:-8} C=${C:-512} T=${T:-32} B=${B:-1} THREADS=${THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
mkdir -p "$OUT"
awk 'BEGIN { srand(1); for (d = 0; d < 400; d++) { s = ""; for (i = 0; i < 600; i++)
       s = s sprintf("%c", 97 + int(rand() * 26)); printf "{\"text\": \"%s\"}\n", s } }' > "$OUT/t.jsonl"
./retort data build --schema lm --input "$OUT/t.jsonl" --out "$OUT/t.h5" -q
FLAGS="--set model.n_layer=$L --set model.n_head=$((C / 64)) --set model.n_embd=$C
  --set model.vocab_size=257 --set model.n_positions=$T --set data.seq_len=$T
  --set data.batch_size=$B --set data.train=$OUT/t.h5 --set data.val_fraction=0 --set eval.every=0
  --set train.steps=$STEPS --set optim.warmup_steps=1 --set checkpoint.every=0
  --set train.log_every=1000 --set train.threads=$THREADS"
run() { # name np extra...
  local name=$1 np=$2; shift 2
  local out="$OUT/$name.$rep"
  rm -rf "$out"
  if [ "$np" = 1 ]; then
    ./retort train -c configs/tiny.yaml $FLAGS --set train.out_dir="$out" "$@" > "$out.log" 2>&1
  else
    mpirun --oversubscribe -np "$np" ./retort train -c configs/tiny.yaml $FLAGS \
      --set train.out_dir="$out" "$@" > "$out.log" 2>&1
  fi
  grep '"tokens_per_s"' "$out/metrics.jsonl" |
    awk -v n=$((B * T * np)) -F'"tokens_per_s": ' '{ split($2, a, ","); s++; if (s >= 4) print 1000 * n / a[1] }' \
    >> "$OUT/$name.ms"
}
for v in one off block bucket25; do rm -f "$OUT/$v.ms"; done
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq 1 "$REPS"); do
  run one 1
  run off 2 --set dist.overlap=false
  run block 2 --set dist.overlap=true --set dist.bucket_mb=0
  run bucket25 2 --set dist.overlap=true --set dist.bucket_mb=25
done
median() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
params=$(grep -o 'model: [0-9]* parameters' "$OUT/one.1.log" | grep -o '[0-9]*')
echo "dist.overlap on $(lscpu | grep 'Model name' | sed 's/Model name: *//'), $(nproc) cores;"
echo "GPT-2 shape L=$L C=$C T=$T, $params parameters ($(awk -v p="$params" 'BEGIN { printf "%.1f", 4 * p / 1048576 }') MiB of fp32 gradient), B=$B per rank, $THREADS thread(s) per rank;"
echo "load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other jobs);"
echo "median step time over steps 4..$STEPS of $REPS interleaved runs each (each run's median in brackets):"
one=$(median "$OUT/one.ms")
for v in one off block bucket25; do
  m=$(median "$OUT/$v.ms")
  case $v in
    one) what="1 rank (no communication)";;
    off) what="2 ranks, dist.overlap=false";;
    block) what="2 ranks, overlap, bucket_mb=0 (per block)";;
    bucket25) what="2 ranks, overlap, bucket_mb=25 (default)";;
  esac
  per=$(for r in $(seq 1 "$REPS"); do
          sed -n "$(((r - 1) * (STEPS - 3) + 1)),$((r * (STEPS - 3)))p" "$OUT/$v.ms" > "$OUT/$v.ms.$r"
          printf ' %.0f' "$(median "$OUT/$v.ms.$r")"; done)
  printf '  %-44s %8.1f ms  (+%.1f ms over 1 rank) [%s ]\n' "$what" "$m" "$(awk -v a="$m" -v b="$one" 'BEGIN { print a - b }')" "$per"
done
