#!/usr/bin/env bash
# experiments/bench/cpu_bench.sh — CPU training throughput, retort beside
# PyTorch (transformers GPT2LMHeadModel or LlamaForCausalLM +
# torch.optim.AdamW), same model shape (the Llama row: the same saved weights),
# batch, sequence length, thread count and token data, measured in this run.
# Each side reports the median tokens/s over its steps after the first.
#
#   experiments/bench/cpu_bench.sh            (make bench runs this)
#   THREADS=4 experiments/bench/cpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-$(nproc)}
WORK=$(mktemp -d /tmp/retort-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

median_retort() { # metrics.jsonl -> median tokens/s over steps after the first
  "$PY" - "$1" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
vals = [r["tokens_per_s"] for r in rows[1:]] or [rows[0]["tokens_per_s"]]
print(f"{statistics.median(vals):.1f}")
PYEOF
}

run_case() { # name layers heads embd vocab seq batch steps
  local name=$1 L=$2 H=$3 C=$4 V=$5 T=$6 B=$7 S=$8
  local data="$WORK/$name.h5"
  "$PY" experiments/bench/torch_peer.py make-data "$data" "$V" $(( (S + 2) * B * T + 1 ))
  ./retort train --set model.n_layer=$L --set model.n_head=$H --set model.n_embd=$C \
    --set model.vocab_size=$V --set model.n_positions=$T --set data.train="$data" \
    --set data.seq_len=$T --set data.batch_size=$B --set train.steps=$S \
    --set train.threads=$THREADS --set train.out_dir="$WORK/$name-run" \
    --set checkpoint.every=0 --set checkpoint.keep=1 --set train.log_every=1000000 \
    --set optim.warmup_steps=0 >/dev/null
  local ours theirs
  ours=$(median_retort "$WORK/$name-run/metrics.jsonl")
  theirs=$("$PY" experiments/bench/torch_peer.py train --layers $L --heads $H --embd $C \
    --vocab $V --seq $T --batch $B --steps $S --threads $THREADS --data "$data" 2>/dev/null \
    | sed -n 's/^torch_tokens_per_s //p')
  local ratio
  ratio=$("$PY" -c "print(f'{$ours/$theirs:.2f}')")
  printf '| %-10s | %2d x %4d, vocab %5d | B=%d T=%-4d | %7s | %10.1f | %10.1f | %5sx |\n' \
    "$name" "$L" "$C" "$V" "$B" "$T" "$THREADS" "$ours" "$theirs" "$ratio"
}

run_llama() { # name layers heads kv_heads embd inter vocab seq batch steps
  local name=$1 L=$2 H=$3 KV=$4 C=$5 I=$6 V=$7 T=$8 B=$9 S=${10}
  local data="$WORK/$name.h5" init="$WORK/$name-init"
  local shape=(--layers $L --heads $H --embd $C --vocab $V --seq $T --batch $B --steps $S
               --threads $THREADS --arch llama --kv-heads $KV --inter $I --theta 100000)
  "$PY" experiments/bench/torch_peer.py make-data "$data" "$V" $(( (S + 2) * B * T + 1 ))
  "$PY" experiments/bench/torch_peer.py save-llama "${shape[@]}" --data "$init"
  ./retort train --set model.init="$init" --set model.vocab_size=$V --set model.n_positions=$T \
    --set model.n_layer=$L --set model.n_head=$H --set model.n_embd=$C \
    --set data.train="$data" --set data.seq_len=$T --set data.batch_size=$B \
    --set train.steps=$S --set train.threads=$THREADS --set train.out_dir="$WORK/$name-run" \
    --set checkpoint.every=0 --set checkpoint.keep=1 --set train.log_every=1000000 \
    --set optim.warmup_steps=0 >/dev/null
  local ours theirs ratio
  ours=$(median_retort "$WORK/$name-run/metrics.jsonl")
  theirs=$("$PY" experiments/bench/torch_peer.py train "${shape[@]}" --data "$data" 2>/dev/null \
    | sed -n 's/^torch_tokens_per_s //p')
  ratio=$("$PY" -c "print(f'{$ours/$theirs:.2f}')")
  printf '| %-10s | %2d x %4d, vocab %5d | B=%d T=%-4d | %7s | %10.1f | %10.1f | %5sx |\n' \
    "$name" "$L" "$C" "$V" "$B" "$T" "$THREADS" "$ours" "$theirs" "$ratio"
}

echo "CPU training throughput, $(date -u +%Y-%m-%d), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "torch $("$PY" -c 'import torch; print(torch.__version__)'), retort $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "| model      | shape                 | batch      | threads | retort tok/s | torch tok/s | ratio |"
echo "|------------|-----------------------|------------|---------|------------|------------|-------|"
run_case small 4 4 128 257 128 8 20
run_case gpt2-124m 12 12 768 50257 1024 1 4
# SmolLM2-135M's shape: LlamaForCausalLM, 9 heads over 3 KV heads, SwiGLU 1536, tied
run_llama smollm2-135m 30 9 3 576 1536 49152 512 1 4
