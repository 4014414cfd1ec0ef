#!/usr/bin/env bash
# experiments/bench/batch_decode_bench.sh — batched generation throughput:
# `retort generate --input` (continuous batching, --batch slots) beside
# transformers' generate() on left-padded batches at several batch sizes (its
# best is the peer), same random weights (saved by transformers, loaded by
# retort), the same prompts of mixed lengths, greedy, exactly NEW new tokens
# per prompt (EOS ignored), same thread count, measured in the same run.
# Tokens/s = prompts x NEW / wall time (prefill included for both; retort's
# includes loading the model and writing the JSONL).
#   experiments/bench/batch_decode_bench.sh            GPT-2 124M shape (vocab 50257)
#   ARCH=llama experiments/bench/batch_decode_bench.sh SmolLM2-135M shape
#   PROMPTS=256 NEW=128 HF_BATCHES="16 64" BATCHES="16 64"   (defaults)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-$(nproc)}
ARCH=${ARCH:-gpt2}; PROMPTS=${PROMPTS:-256}; NEW=${NEW:-128}
HF_BATCHES=${HF_BATCHES:-"16 64"}; BATCHES=${BATCHES:-"16 64"}
W=$(mktemp -d /tmp/retort-batchdec-XXXXXX)
trap 'rm -rf "$W"' EXIT
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads"
echo "model: $ARCH shape, $PROMPTS prompts of 16-128 tokens, $NEW new tokens each, greedy"
THREADS=$THREADS ARCH=$ARCH "$PY" - "$W" "$PROMPTS" "$NEW" "$HF_BATCHES" <<'PY'
import json, os, random, sys, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
w, P, NEW, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
torch.set_num_threads(int(os.environ["THREADS"]))
torch.manual_seed(0)
if os.environ["ARCH"] == "llama":  # SmolLM2-135M
    cfg = LlamaConfig(num_hidden_layers=30, hidden_size=576, num_attention_heads=9,
                      num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                      max_position_embeddings=2048, rope_theta=100000.0, tie_word_embeddings=True,
                      bos_token_id=256, eos_token_id=256, pad_token_id=256)
    m = LlamaForCausalLM(cfg).eval()
else:  # GPT-2 124M
    cfg = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                     bos_token_id=256, eos_token_id=256, pad_token_id=256)
    m = GPT2LMHeadModel(cfg).eval()
m.save_pretrained(w + "/model")
rnd = random.Random(0)
prompts = ["".join(chr(rnd.randrange(97, 123)) for _ in range(rnd.randrange(16, 129)))
           for _ in range(P)]
with open(w + "/prompts.jsonl", "w") as f:
    for p in prompts: f.write(json.dumps({"prompt": p}) + "\n")
ids = [list(p.encode()) for p in prompts]
best = 0
with torch.no_grad():
    m.generate(torch.tensor([ids[0]]), max_new_tokens=2, do_sample=False)  # warm-up
    for bs in map(int, batches):
        t0 = time.perf_counter()
        for i in range(0, P, bs):
            chunk = ids[i:i + bs]; T = max(map(len, chunk))
            x = torch.tensor([[256] * (T - len(p)) + p for p in chunk])
            am = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in chunk])
            m.generate(x, attention_mask=am, max_new_tokens=NEW, min_new_tokens=NEW,
                       do_sample=False, pad_token_id=256)
        rate = P * NEW / (time.perf_counter() - t0)
        best = max(best, rate)
        print(f"transformers batch {bs:4d}: {rate:8.1f} tok/s", flush=True)
open(w + "/hf_best", "w").write(str(best))
PY
for B in $BATCHES; do
  t0=$(date +%s.%N)
  ./retort generate --model "$W/model" --tokenizer bytes --input "$W/prompts.jsonl" --out "$W/o.jsonl" \
    -n "$NEW" --temperature 0 --ignore-eos --batch "$B" --threads "$THREADS" --quiet
  t1=$(date +%s.%N)
  awk -v p="$PROMPTS" -v n="$NEW" -v t0="$t0" -v t1="$t1" -v b="$B" -v hf="$(cat "$W/hf_best")" \
    'BEGIN { r = p * n / (t1 - t0); printf "retort --batch %4d:     %8.1f tok/s  (%.2fx transformers best)\n", b, r, r / hf }'
done
