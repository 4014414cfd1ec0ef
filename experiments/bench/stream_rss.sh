#!/usr/bin/env bash
# experiments/bench/stream_rss.sh — peak resident memory of training on a
# small and a large lm file with data.stream (docs: README, "Datasets larger
# than memory"): the same tiny model, the same steps, the same batch; the
# difference must stay under 50 MiB however large the file. The in-memory
# reader's peak on the small file is printed for contrast.
#
#   experiments/bench/stream_rss.sh                  (make bench-stream runs this)
#   SMALL_MB=100 LARGE_MB=5000 STEPS=300 experiments/bench/stream_rss.sh
#   PACK=1 experiments/bench/stream_rss.sh           (experiments/bench/pack_stream_rss.sh)
#
# PACK=1 measures packed training (data.pack) on sft files instead (examples of
# 2..60 tokens, loss on all but the first token; LARGE_MB defaults to 2000):
# the packer reads each example's length and row on demand, so the same bound
# holds however many examples the file holds.
#
# The files are real data on disk (uniform random byte-tokenizer ids, in
# documents of 1024 tokens, chunked as `retort data build` chunks them),
# written with h5py in the lm schema and removed at the end. Peak memory is
# what retort itself reports at the end of a run (getrusage ru_maxrss).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
PACK=${PACK:-0}
SMALL_MB=${SMALL_MB:-100}
if [ "$PACK" = 1 ]; then LARGE_MB=${LARGE_MB:-2000}; else LARGE_MB=${LARGE_MB:-5000}; fi
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

make_sft() { # path megabytes: uint16 tokens + uint8 mask, 3 bytes a token
  "$PY" - "$1" "$2" <<'PYEOF'
import os
import sys
import h5py
import numpy as np
path, mb = sys.argv[1], int(sys.argv[2])
n_tok = mb * 1000 * 1000 // 3
rng = np.random.default_rng(1)
lens = rng.integers(2, 61, size=n_tok // 30, dtype=np.int64)
offs = np.concatenate([[0], np.cumsum(lens)])
offs = offs[offs <= n_tok]
n = int(offs[-1])
piece = 1 << 25
with h5py.File(path + ".tmp", "w") as f:
    f.attrs["schema"] = np.bytes_("sft")
    f.attrs["version"] = np.int64(1)
    f.attrs["vocab_size"] = np.int64(257)
    f.attrs["eos_id"] = np.int64(256)
    f.attrs["pad_id"] = np.int64(256)
    f.attrs["tokenizer"] = np.bytes_("bytes")
    t = f.create_dataset("tokens", shape=(n,), dtype=np.uint16, chunks=(1 << 16,))
    m = f.create_dataset("loss_mask", shape=(n,), dtype=np.uint8, chunks=(1 << 16,))
    starts = offs[:-1]
    for a in range(0, n, piece):
        k = min(piece, n - a)
        t[a:a + k] = rng.integers(0, 256, size=k, dtype=np.uint16)
        mk = np.ones(k, dtype=np.uint8)
        lo, hi = np.searchsorted(starts, [a, a + k])
        mk[starts[lo:hi] - a] = 0  # no loss on each example's first token
        m[a:a + k] = mk
    f.create_dataset("offsets", data=offs, chunks=(min(len(offs), 1 << 16),))
os.replace(path + ".tmp", path)
PYEOF
}

if [ "$PACK" = 1 ]; then
  make_file=make_sft kind="sft" what="packed steps"
  extra=(--set data.pack=true --set data.val_fraction=0 --set eval.every=0)
else
  make_file=make_lm kind="lm" what="steps"
  extra=()
fi

peak() { # data stream-mode name -> MiB
  local out="$WORK/$3"
  "$RETORT" train --set model.n_layer=2 --set model.n_head=2 --set model.n_embd=64 \
    --set model.vocab_size=257 --set model.n_positions=64 --set data.train="$1" \
    --set data.stream="$2" ${extra[@]+"${extra[@]}"} --set data.seq_len=64 --set data.batch_size=8 \
    --set train.steps="$STEPS" --set train.threads="$THREADS" --set train.out_dir="$out" \
    --set checkpoint.every=0 --set checkpoint.keep=1 --set train.log_every=1000000 \
    --set optim.warmup_steps=0 >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  sed -n 's/^peak resident memory: \([0-9.]*\) MiB.*/\1/p' "$out.log"
}
seconds() { # name -> the run's training time (elapsed_s of its last step)
  tail -1 "$WORK/$1/metrics.jsonl" | sed -n 's/.*"elapsed_s": \([0-9.]*\).*/\1/p'
}

echo "writing $SMALL_MB MB and $LARGE_MB MB $kind files in $WORK ..." >&2
[ -f "$WORK/small.h5" ] || $make_file "$WORK/small.h5" "$SMALL_MB"
[ -f "$WORK/large.h5" ] || $make_file "$WORK/large.h5" "$LARGE_MB"
ls -l "$WORK/small.h5" "$WORK/large.h5" >&2
small=$(peak "$WORK/small.h5" true small-stream)
large=$(peak "$WORK/large.h5" true large-stream)
memory=$(peak "$WORK/small.h5" false small-memory)
bytes() { stat -c %s "$1"; }
echo "$STEPS $what of 8 x 64 tokens, 2 x 64 GPT-2, $THREADS thread(s), shuffled"
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
