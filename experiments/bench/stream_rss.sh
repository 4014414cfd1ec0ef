#!/usr/bin/env bash
# experiments/bench/stream_rss.sh — peak resident memory of training on a
# small and a large lm file with data.stream (docs: README, "Datasets larger
# than memory"): the same tiny model, the same steps, the same batch; the
# difference must stay under 50 MiB however large the file. The in-memory
# reader's peak on the small file is printed for contrast.
#
#   experiments/bench/stream_rss.sh                  (make bench-stream runs this)
#   SMALL_MB=100 LARGE_MB=5000 STEPS=300 experiments/bench/stream_rss.sh
#
# The files are real data on disk (uniform random byte-tokenizer ids, in
# documents of 1024 tokens, chunked as `retort data build` chunks them),
# written with h5py in the lm schema and removed at the end. Peak memory is
# what retort itself reports at the end of a run (getrusage ru_maxrss).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SMALL_MB=${SMALL_MB:-100}
LARGE_MB=${LARGE_MB:-5000}
STEPS=${STEPS:-300}
RETORT=${RETORT:-./retort}
THREADS=${THREADS:-1}
KEEP=${KEEP:-0}   # 1: keep the files in WORK (and reuse them when there)
WORK=${WORK:-$(mktemp -d /tmp/retort-stream-XXXXXX)}
mkdir -p "$WORK"
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT

make_lm() { # path megabytes: uint16 tokens of the bytes tokenizer (vocab 257)
  "$PY" - "$1" "$2" <<'PYEOF'
import sys
import h5py
import numpy as np
path, mb = sys.argv[1], int(sys.argv[2])
n = mb * 1000 * 1000 // 2          # uint16 tokens: the file is about mb MB
doc = 1024
piece = 1 << 25                     # 32 Mi tokens per write
rng = np.random.default_rng(1)
with h5py.File(path + ".tmp", "w") as f:
    f.attrs["schema"] = np.bytes_("lm")
    f.attrs["version"] = np.int64(1)
    f.attrs["vocab_size"] = np.int64(257)
    f.attrs["eos_id"] = np.int64(256)
    f.attrs["pad_id"] = np.int64(256)
    f.attrs["tokenizer"] = np.bytes_("bytes")
    t = f.create_dataset("tokens", shape=(n,), dtype=np.uint16, chunks=(1 << 16,))
    for a in range(0, n, piece):
        m = min(piece, n - a)
        t[a:a + m] = rng.integers(0, 256, size=m, dtype=np.uint16)
    offs = np.minimum(np.arange(0, n + doc, doc, dtype=np.int64), n)
    offs = np.unique(offs)
    f.create_dataset("offsets", data=offs, chunks=(min(len(offs), 1 << 16),))
import os
os.replace(path + ".tmp", path)
PYEOF
}

peak() { # data stream-mode name -> MiB
  local out="$WORK/$3"
  "$RETORT" train --set model.n_layer=2 --set model.n_head=2 --set model.n_embd=64 \
    --set model.vocab_size=257 --set model.n_positions=64 --set data.train="$1" \
    --set data.stream="$2" --set data.seq_len=64 --set data.batch_size=8 \
    --set train.steps="$STEPS" --set train.threads="$THREADS" --set train.out_dir="$out" \
    --set checkpoint.every=0 --set checkpoint.keep=1 --set train.log_every=1000000 \
    --set optim.warmup_steps=0 >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  sed -n 's/^peak resident memory: \([0-9.]*\) MiB.*/\1/p' "$out.log"
}
seconds() { # name -> the run's training time (elapsed_s of its last step)
  tail -1 "$WORK/$1/metrics.jsonl" | sed -n 's/.*"elapsed_s": \([0-9.]*\).*/\1/p'
}

echo "writing $SMALL_MB MB and $LARGE_MB MB lm files in $WORK ..." >&2
[ -f "$WORK/small.h5" ] || make_lm "$WORK/small.h5" "$SMALL_MB"
[ -f "$WORK/large.h5" ] || make_lm "$WORK/large.h5" "$LARGE_MB"
ls -l "$WORK/small.h5" "$WORK/large.h5" >&2
small=$(peak "$WORK/small.h5" true small-stream)
large=$(peak "$WORK/large.h5" true large-stream)
memory=$(peak "$WORK/small.h5" false small-memory)
bytes() { stat -c %s "$1"; }
echo "$STEPS steps of 8 x 64 tokens, 2 x 64 GPT-2, $THREADS thread(s), shuffled"
printf '| file | size | reader | peak RSS (MiB) | training (s) |\n|---|---|---|---|---|\n'
printf '| small | %s bytes | streamed | %s | %s |\n' "$(bytes "$WORK/small.h5")" "$small" \
  "$(seconds small-stream)"
printf '| large | %s bytes | streamed | %s | %s |\n' "$(bytes "$WORK/large.h5")" "$large" \
  "$(seconds large-stream)"
printf '| small | %s bytes | in memory | %s | %s |\n' "$(bytes "$WORK/small.h5")" "$memory" \
  "$(seconds small-memory)"
diff=$("$PY" -c "print(f'{$large - $small:.1f}')")
echo "streamed: large - small = $diff MiB (must be < 50)"
"$PY" -c "import sys; sys.exit(0 if $large - $small < 50 else 1)" || {
  echo "FAIL: peak memory grows with the file" >&2
  exit 1
}
