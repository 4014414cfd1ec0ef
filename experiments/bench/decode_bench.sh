#!/usr/bin/env bash
# experiments/bench/decode_bench.sh — CPU decode throughput: `retort generate`
# (KV cache) beside transformers' generate() (KV cache), same random weights
# (saved by transformers, loaded by retort), same prompt, greedy, same thread
# count, measured in the same run. Both time prefill + decode.
#   experiments/bench/decode_bench.sh [LAYERS EMBD HEADS NEW_TOKENS]      GPT-2
#   ARCH=llama KV_HEADS=3 INTER=1536 experiments/bench/decode_bench.sh 30 576 9 128
#                                   a SmolLM2-135M-shaped LlamaForCausalLM
#   VOCAB=50257 experiments/bench/decode_bench.sh   GPT-2's vocabulary (default 257,
#                                   bytes: the head then costs next to nothing)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
L=${1:-12}; C=${2:-768}; H=${3:-12}; NEW=${4:-128}
THREADS=${THREADS:-$(nproc)}
ARCH=${ARCH:-gpt2}; VOCAB=${VOCAB:-257}; KV_HEADS=${KV_HEADS:-$H}; INTER=${INTER:-$((4 * C))}
W=$(mktemp -d /tmp/retort-decode-XXXXXX)
trap 'rm -rf "$W"' EXIT
THREADS=$THREADS ARCH=$ARCH VOCAB=$VOCAB "$PY" - "$W" "$L" "$C" "$H" "$NEW" "$KV_HEADS" "$INTER" <<'PY'
import os, sys, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
w, L, C, H, NEW, KV, INTER = sys.argv[1], *map(int, sys.argv[2:])
torch.set_num_threads(int(os.environ["THREADS"]))
torch.manual_seed(0)
if os.environ["ARCH"] == "llama":
    cfg = LlamaConfig(num_hidden_layers=L, hidden_size=C, num_attention_heads=H,
                      num_key_value_heads=KV, intermediate_size=INTER, vocab_size=int(os.environ["VOCAB"]),
                      max_position_embeddings=1024, rope_theta=100000.0, tie_word_embeddings=True,
                      bos_token_id=256, eos_token_id=256)
    m = LlamaForCausalLM(cfg).eval()
else:
    cfg = GPT2Config(n_layer=L, n_embd=C, n_head=H, vocab_size=int(os.environ["VOCAB"]), n_positions=1024,
                     bos_token_id=256, eos_token_id=256)
    m = GPT2LMHeadModel(cfg).eval()
m.save_pretrained(w + "/model")
prompt = torch.tensor([list(b"And God said")])
with torch.no_grad():
    m.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=256)  # warm-up
    t0 = time.perf_counter()
    out = m.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW,
                     min_new_tokens=NEW, do_sample=False, pad_token_id=256)
    dt = time.perf_counter() - t0
open(w + "/hf_ids.txt", "w").write(" ".join(map(str, out[0, prompt.shape[1]:].tolist())))
print(f"transformers ({os.environ['ARCH']}): {NEW} tokens in {dt:.3f} s: {NEW / dt:.1f} tok/s")
PY
TOK=(); [ "$VOCAB" = 257 ] || TOK=(--tokenizer bytes) # ids 0..256 of a wider vocabulary
./retort generate --model "$W/model" ${TOK[@]+"${TOK[@]}"} --prompt "And God said" --max-new-tokens "$NEW" \
  --temperature 0 --threads "$THREADS" --stats --ignore-eos 2>&1 >/dev/null | sed 's/^generate: /retort: /'
