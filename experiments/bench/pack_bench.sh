#!/usr/bin/env bash
# experiments/bench/pack_bench.sh — what data.pack buys on the CPU: real
# (non-pad) tokens per second of SFT training, packed against one example per
# row, on a long-tailed length mix like an instruction dataset.
#
# The data: N sft examples (byte tokenizer), lengths drawn log-normally
# (median ~90 tokens, most between 20 and 200, a tail past 1000, cut to
# seq_len + 1 as training does), prompt a third of each. The model: GPT-2
# shape, L layers of width C (defaults 6 x 384, 6 heads), seq_len 1024.
# Both runs take STEPS steps of B rows on THREADS threads from the same start;
# the real tokens are the input positions holding an example's token (pads
# excluded) over the examples each run consumed — its data position in the
# final checkpoint (data.shuffle false, so they are the file's first ones).
#
#   experiments/bench/pack_bench.sh [OUT_DIR]     (env: STEPS B THREADS L C N)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/pack_bench}
STEPS=${STEPS:-6} B=${B:-2} THREADS=${THREADS:-2} L=${L:-6} C=${C:-384} N=${N:-3000}
T=1024
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
mkdir -p "$OUT"
$PY - "$OUT/sft.jsonl" "$N" <<'PYEOF'
import json, math, random, sys
path, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(19)
letters = "abcdefghijklmnopqrstuvwxyz     "
with open(path, "w") as f:
    for _ in range(n):
        length = int(min(4000, max(20, math.exp(rng.gauss(math.log(90), 0.9)))))
        p = max(1, length // 3)
        text = "".join(rng.choice(letters) for _ in range(length))
        f.write(json.dumps({"prompt": text[:p], "completion": text[p:]}) + "\n")
PYEOF
./retort data build --schema sft --input "$OUT/sft.jsonl" --out "$OUT/sft.h5" -q
FLAGS="--set model.n_layer=$L --set model.n_head=$((C / 64)) --set model.n_embd=$C
  --set model.vocab_size=257 --set model.n_positions=$T --set data.seq_len=$T
  --set data.batch_size=$B --set data.shuffle=false --set data.val_fraction=0
  --set data.train=$OUT/sft.h5 --set eval.every=0 --set train.log_every=1
  --set train.steps=$STEPS --set checkpoint.every=0 --set train.threads=$THREADS
  --set train.device=cpu --set optim.warmup_steps=0"
for mode in unpacked packed; do
  pack=false; [ $mode = packed ] && pack=true
  rm -rf "$OUT/$mode"
  ./retort train -c configs/tiny.yaml $FLAGS --set data.pack=$pack \
    --set train.out_dir="$OUT/$mode" > "$OUT/$mode.log" 2>&1
done
$PY - "$OUT" "$T" "$STEPS" "$B" <<'PYEOF'
import glob, json, os, sys
out, T, steps, B = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# token counts per example from the JSONL (byte tokenizer: bytes + EOS)
lens = []
for line in open(os.path.join(out, "sft.jsonl")):
    j = json.loads(line)
    lens.append(len((j["prompt"] + j["completion"]).encode()) + 1)
rows = []
for mode in ("unpacked", "packed"):
    run = os.path.join(out, mode)
    ck = sorted(glob.glob(os.path.join(run, "step-*")))[-1]
    data = json.load(open(os.path.join(ck, "trainer.json")))["data"]
    consumed = data["epoch"] * len(lens) + data["pos"]
    real = sum(min(lens[i % len(lens)], T + 1) - 1 for i in range(consumed))
    lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if '"step"' in l]
    el = lines[-1]["elapsed_s"]
    rows.append((mode, consumed, real, real / (steps * B * T), el, real / el))
print("| run | examples | real tokens | row fill | seconds | real tokens/s |")
print("|---|---|---|---|---|---|")
for m, c, r, fill, el, ts in rows:
    print(f"| {m} | {c} | {r} | {fill:.1%} | {el:.1f} | {ts:.0f} |")
print(f"\npacked / unpacked real tokens/s: {rows[1][5] / rows[0][5]:.2f}x")
PYEOF
