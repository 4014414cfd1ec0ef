#!/usr/bin/env bash
# experiments/bench/recompute_bench.sh — what train.recompute saves and costs
# on the CPU: for none, attention and block, `retort train` of a GPT-2 shape
# (default GPT-2 124M, random init) at B x T on the same token data, reporting
# the activation bytes the model allocated (exact: the trainer's closing
# "activations:" line, gpt_activation_bytes_allocated), the process's peak
# resident memory (getrusage ru_maxrss, through /usr/bin/time) and the median
# step time over the steps after the first. Then the exact activation bytes
# at the planning shape (recompute_bytes: fp32 and bf16) without training.
#
#   experiments/bench/recompute_bench.sh
#   B=4 T=1024 STEPS=3 THREADS=2 experiments/bench/recompute_bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
B=${B:-1} T=${T:-1024} STEPS=${STEPS:-3} THREADS=${THREADS:-$(nproc)}
L=${L:-12} H=${H:-12} C=${C:-768} V=${V:-50257}
PLAN_B=${PLAN_B:-4} PLAN_T=${PLAN_T:-1024}
WORK=$(mktemp -d /tmp/retort-recompute-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

make --no-print-directory retort build/recompute_bytes >/dev/null
"$PY" experiments/bench/torch_peer.py make-data "$WORK/data.h5" "$V" $(( (STEPS + 2) * B * T + 1 ))

echo "train.recompute on the CPU, $(date -u +%Y-%m-%d), $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "retort $(git rev-parse --short HEAD 2>/dev/null || echo '?'); model $L x $C, $H heads, vocab $V; B=$B T=$T, $STEPS steps, $THREADS threads"
echo
echo "| recompute | activations MiB | peak RSS MiB | step s (median after the first) | vs none |"
echo "|-----------|----------------:|-------------:|--------------------------------:|--------:|"
base=""
for mode in none attention block; do
  out="$WORK/$mode"
  /usr/bin/time -f "%M" -o "$WORK/$mode.rss" ./retort train --set model.n_layer=$L \
    --set model.n_head=$H --set model.n_embd=$C --set model.vocab_size=$V \
    --set model.n_positions=$T --set data.train="$WORK/data.h5" --set data.seq_len=$T \
    --set data.batch_size=$B --set data.val_fraction=0 --set train.steps=$STEPS \
    --set train.threads=$THREADS --set train.out_dir="$out" --set train.recompute=$mode \
    --set checkpoint.every=0 --set checkpoint.keep=1 --set train.log_every=1 \
    --set train.tensorboard=false --set optim.warmup_steps=0 >"$WORK/$mode.log"
  act=$(sed -n 's/^activations: \([0-9.]*\) MiB.*/\1/p' "$WORK/$mode.log")
  rss=$(( $(tail -1 "$WORK/$mode.rss") / 1024 ))
  step=$("$PY" - "$out/metrics.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
tok = [r["tokens_per_s"] for r in rows[1:]] or [rows[0]["tokens_per_s"]]
print(f"{statistics.median(tok)}")
PYEOF
)
  secs=$("$PY" -c "print(f'{$B * $T / $step:.2f}')")
  [ -z "$base" ] && base=$secs
  ratio=$("$PY" -c "print(f'{$secs / $base:.2f}x')")
  printf '| %-9s | %15s | %12s | %31s | %7s |\n' "$mode" "$act" "$rss" "$secs" "$ratio"
done
echo
echo "Exact activation bytes at B=$PLAN_B T=$PLAN_T (gpt_activation_bytes; nothing allocated):"
echo
build/recompute_bytes "$PLAN_B" "$PLAN_T" "$L" "$H" "$C" "$V"
