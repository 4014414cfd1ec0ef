#!/usr/bin/env bash
# experiments/bench/decode_bandwidth.sh — single-stream CPU decode against the
# memory-bandwidth limit: the machine's copy and read bandwidth
# (decode_profile copy), retort's and transformers' decode tokens/s
# (decode_bench.sh), the bytes one decode step reads (weights + KV cache, from
# the shape), the GB/s that makes, and where a step's time goes at 1 and at
# THREADS threads (decode_profile: the product's gpt_decode, its backend ops
# timed).
#   experiments/bench/decode_bandwidth.sh [LAYERS EMBD HEADS VOCAB NEW_TOKENS]
#                                   default GPT-2 124M: 12 768 12 50257 128
set -euo pipefail
cd "$(dirname "$0")/../.."
L=${1:-12}; C=${2:-768}; H=${3:-12}; V=${4:-50257}; NEW=${5:-128}
PROMPT=12 # decode_bench.sh's "And God said", one byte a token
THREADS=${THREADS:-$(nproc)}
# the kernels retort's main picks for itself (cli/main.c), for the profiler too
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi
make --no-print-directory retort build/decode_profile >/dev/null
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(uptime | sed 's/.*load average: //')"
echo "date: $(date -u +%F), commit $(git rev-parse --short HEAD)"

COPY=$(THREADS=$THREADS build/decode_profile copy)
copy=$(awk '/^copy_GBps/ {print $2}' <<<"$COPY"); read_bw=$(awk '/^read_GBps/ {print $2}' <<<"$COPY")
echo "bandwidth ($THREADS threads, 1 GiB buffers, best of 5): copy $copy GB/s (STREAM convention: bytes read + written), read $read_bw GB/s (sasum)"
# the same read over a buffer the size of the weights: a last-level cache near
# that size keeps part of it between passes, as it does the weights between steps
wmib=$(( 4 * (L * (12 * C * C + 13 * C) + (V + 127) / 128 * 128 * C) >> 20 ))
echo "read over ${wmib} MiB (the weights' size), $THREADS threads: $(THREADS=$THREADS build/decode_profile copy "$wmib" | awk '/^read_GBps/ {print $2}') GB/s; $(lscpu | grep -E '^L3' | tr -s ' ')"

BENCH=$(VOCAB=$V THREADS=$THREADS experiments/bench/decode_bench.sh "$L" "$C" "$H" "$NEW")
echo "$BENCH"
tps=$(sed -n 's/^retort:.* \([0-9.]*\) tok\/s.*/\1/p' <<<"$BENCH" | tail -1)
[ -n "$tps" ] || { echo "decode_bandwidth: no retort tok/s in decode_bench.sh's output" >&2; exit 1; }

PROFILE=()
for t in 1 "$THREADS"; do
  PROFILE+=("$(THREADS=$t build/decode_profile "$L" "$H" "$C" "$V" "$NEW" "$PROMPT")")
  [ "$THREADS" = 1 ] && break
done
steps=$(awk '/^tok_per_s/ {print $2}' <<<"${PROFILE[-1]}")

# bytes a one-token step reads, fp32: per block 12C^2 + 13C weights (qkv, attn
# out, fc, fc out with biases; two layernorms), the head's padded (Vp, C)
# wte, the final layernorm, one wte and one wpe row; the KV cache's k and v
# rows of every earlier position, averaged over the NEW steps
awk -v L="$L" -v C="$C" -v V="$V" -v P="$PROMPT" -v N="$NEW" -v tps="$tps" -v steps="$steps" \
    -v copy="$copy" -v rd="$read_bw" -v T="$THREADS" 'BEGIN {
  Vp = int((V + 127) / 128) * 128
  w = 4 * (L * (12 * C * C + 13 * C) + Vp * C + 4 * C)
  kv = 4 * 2 * L * C * (P + (N + 1) / 2)
  b = w + kv
  printf "bytes/step: %.1f MB weights + %.1f MB KV cache (mean) = %.1f MB\n", w / 1e6, kv / 1e6, b / 1e6
  split(tps " " steps, r, " ")
  split("retort generate (prefill included)|decode steps only (decode_profile)", what, "|")
  for (i = 1; i <= 2; i++) {
    g = b * r[i] / 1e9
    printf "achieved, %s, %d threads: %.1f MB x %.2f tok/s = %.2f GB/s: %.0f%% of copy (read + written), %.0f%% of memcpy (bytes moved, copy / 2), %.0f%% of read\n", what[i], T, b / 1e6, r[i], g, 100 * g / copy, 200 * g / copy, 100 * g / rd
  }
}'
t=1
for p in "${PROFILE[@]}"; do
  echo "profile, $t thread(s):"
  echo "$p"
  t=$THREADS
done
