#!/usr/bin/env bash
# experiments/bench/gpu_bench.sh — `make bench-gpu`, on a machine with a GPU.
#   1. per kernel: build/bench_kernels (attention TFLOP/s, layernorm and
#      classifier GB/s, copy bandwidth) beside torch's flash SDPA
#   2. end to end, GPT-2 124M bf16, B=8 T=1024, random init: retort, llm.c's
#      train_gpt2cu (when LLMC_DIR points at a checkout of karpathy/llm.c; it is
#      built here, never committed) and PyTorch with torch.compile
# Results go to stdout; copy the table into experiments/bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${B:-8}; T=${T:-1024}; STEPS=${STEPS:-30}
W=$(mktemp -d /tmp/retort-gpubench-XXXXXX)
PY=${PY:-python3}
echo "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
echo "date: $(date -u +%Y-%m-%d)  commit: $(git rev-parse --short HEAD 2>/dev/null)"

echo "== kernels"
build/bench_kernels
$PY experiments/bench/torch_gpu_peer.py sdpa

echo "== end to end: GPT-2 124M, B=$B T=$T"
# random tokens in retort's lm schema (and llm.c's .bin format for llm.c)
$PY experiments/bench/torch_peer.py make-data "$W/tok.h5" 50257 $(( (STEPS + 2) * B * T + 1 ))
./retort train -c configs/gpt2-124m.yaml --device cuda --set data.train="$W/tok.h5" \
  --set data.batch_size=$B --set data.seq_len=$T --set data.grad_accum=1 --set train.steps=$STEPS \
  --set optim.warmup_steps=0 --set train.out_dir="$W/run" --set checkpoint.keep=1 \
  --set eval.every=0 --set data.val_fraction=0 > "$W/retort.log" 2>&1
$PY - "$W/run/metrics.jsonl" "$B" "$T" <<'PY'
import json, statistics, sys
r = [json.loads(l)["tokens_per_s"] for l in open(sys.argv[1]) if "tokens_per_s" in l][5:]
tok = statistics.median(r); T = int(sys.argv[3])
flops_tok = 6 * 124_439_808 + 12 * 12 * T * 768
print(f"retort train gpt2-124m B={sys.argv[2]} T={T} {tok:.0f} tok/s MFU {100 * tok * flops_tok / 989e12:.1f}%")
PY

if [ -n "${LLMC_DIR:-}" ] && [ -d "$LLMC_DIR" ]; then
  $PY - "$W/tok.h5" "$W/llmc_train.bin" <<'PY'
import h5py, numpy as np, sys
tok = h5py.File(sys.argv[1])["tokens"][:].astype(np.uint16)
header = np.zeros(256, dtype=np.int32); header[0], header[1], header[2] = 20240520, 1, len(tok)
with open(sys.argv[2], "wb") as f:
    f.write(header.tobytes()); f.write(tok.tobytes())
PY
  cp "$W/llmc_train.bin" "$W/llmc_val.bin"
  (cd "$LLMC_DIR" && make train_gpt2cu NO_MULTI_GPU=1 USE_CUDNN=0 >/dev/null 2>&1) || echo "llm.c build failed"
  "$LLMC_DIR/train_gpt2cu" -i "$W/llmc_train.bin" -j "$W/llmc_val.bin" -e d12 -b $B -t $T \
    -d $((B * T)) -x $STEPS -v 0 -s 0 -n 0 -o "$W/llmc" > "$W/llmc.log" 2>&1
  grep -o '[0-9]* tok/s' "$W/llmc.log" | tail -n +6 | awk '{print $1}' | sort -n | \
    awk -v B=$B -v T=$T '{a[NR]=$1} END {if (NR) printf "llm.c train gpt2-124m B=%d T=%d %d tok/s\n", B, T, a[int((NR+1)/2)]; else print "llm.c: no tok/s lines (see log)"}'
else
  echo "llm.c: skipped (set LLMC_DIR to a karpathy/llm.c checkout)"
fi
$PY experiments/bench/torch_gpu_peer.py train $B $T $STEPS
rm -rf "$W"
