#!/usr/bin/env bash
# experiments/bench/tokenizer_bench.sh — GPT-2 encode throughput, retort beside
# tiktoken (r50k_base, loaded offline from ../shared/data/gpt2/r50k_base.tiktoken)
# and Hugging Face tokenizers (BPE from encoder.json + vocab.bpe, ByteLevel), in
# the same run on the same files. Each side encodes the whole file as one text,
# single-threaded, REPS times, each time with a freshly built tokenizer (so no
# side keeps a warm cache); the best run's CPU time counts (CPU time, not wall
# time, so that other load on the machine does not leak in). The token counts
# are printed too: they must agree.
#
# Then the tokenizer.json structures of tests/make_tokenizer_json_fixtures.py
# (Llama 3, Qwen2, Llama 2 / TinyLlama, Mistral, SmolLM, GPT-2), each trained by
# tokenizers itself to VOCAB (32000) tokens on moby-dick.txt, retort beside
# tokenizers (Tokenizer.from_file, encode(text, add_special_tokens=False)) the
# same way; the token counts must agree. tokenizers is slow on one long text
# (its offsets), so its line-by-line speed (encode_batch of the lines, one
# thread; other ids at the line ends) is shown too, as its best case.
#
#   experiments/bench/tokenizer_bench.sh                 (needs ./retort and the venv
#   REPS=5 experiments/bench/tokenizer_bench.sh FILE...   with tiktoken and tokenizers)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RETORT=${RETORT:-./retort}
REPS=${REPS:-3}
VOCAB=${VOCAB:-32000}
GPT2=../shared/data/gpt2
[ $# -gt 0 ] || set -- ../shared/data/text/moby-dick.txt ../shared/data/text/sotu.txt
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

peers() { # file -> "tiktoken_MBps tiktoken_tokens tokenizers_MBps tokenizers_tokens"
  "$PY" - "$1" "$REPS" "$GPT2" <<'PYEOF'
import sys, time
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tokenizers import Tokenizer, models, pre_tokenizers
path, reps, gpt2 = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = open(path, encoding="utf-8", newline="").read()
mb = len(text.encode("utf-8")) / 1e6
pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ranks = load_tiktoken_bpe(f"{gpt2}/r50k_base.tiktoken")

def tiktoken_encoder():
    enc = tiktoken.Encoding("r50k_base", pat_str=pat, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256})
    return lambda: enc.encode(text, allowed_special="all")

def tokenizers_encoder():
    tok = Tokenizer(models.BPE.from_file(f"{gpt2}/encoder.json", f"{gpt2}/vocab.bpe"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens(["<|endoftext|>"])
    return lambda: tok.encode(text).ids

out = []
for make in (tiktoken_encoder, tokenizers_encoder):
    best, n = float("inf"), 0
    for _ in range(reps):
        run = make()
        t0 = time.process_time()
        n = len(run())
        best = min(best, time.process_time() - t0)
    out += [f"{mb / best:.2f}", str(n)]
print(" ".join(out))
PYEOF
}

echo "GPT-2 encode throughput, $(date -u +%Y-%m-%d), best of $REPS, one thread, CPU time:" \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "retort $(git rev-parse --short HEAD 2>/dev/null || echo '?'), tiktoken $("$PY" -c 'import tiktoken; print(tiktoken.__version__)')," \
     "tokenizers $("$PY" -c 'import tokenizers; print(tokenizers.__version__)')"
echo
echo "| file | MB | retort MB/s | tiktoken MB/s | tokenizers MB/s | vs tiktoken | vs tokenizers | tokens (retort / tiktoken / tokenizers) |"
echo "|------|----|-------------|---------------|-----------------|-------------|---------------|------------------------------------------|"
for f in "$@"; do
  line=$("$RETORT" tokenizer encode --tokenizer "$GPT2" --input "$f" --bench "$REPS")
  # "N bytes -> M tokens, best of R: S s, X MB/s"
  bytes=$(awk '{print $1}' <<<"$line"); ours_n=$(awk '{print $4}' <<<"$line")
  ours=$(sed -n 's/.*, \([0-9.]*\) MB\/s$/\1/p' <<<"$line")
  read -r tk tk_n hf hf_n < <(peers "$f")
  printf '| %s | %.2f | %s | %s | %s | %.2fx | %.2fx | %s / %s / %s |\n' "$(basename "$f")" \
    "$(awk -v b="$bytes" 'BEGIN{print b/1e6}')" "$ours" "$tk" "$hf" \
    "$(awk -v a="$ours" -v b="$tk" 'BEGIN{print a/b}')" "$(awk -v a="$ours" -v b="$hf" 'BEGIN{print a/b}')" \
    "$ours_n" "$tk_n" "$hf_n"
done

# ---- the tokenizer.json structures
TOKDIR=$(mktemp -d)
trap 'rm -rf "$TOKDIR"' EXIT
"$PY" - "$TOKDIR" "$VOCAB" <<'PYEOF'
import json, os, sys
sys.path.insert(0, "tests")
import make_tokenizer_json_fixtures as fx
out, fx.VOCAB = sys.argv[1], int(sys.argv[2])
moby = open("../shared/data/text/moby-dick.txt", encoding="utf-8", newline="").read()
for build in (fx.llama3, fx.qwen2, fx.llama2, fx.mistral, fx.smollm, fx.gpt2):
    tok, config = build(moby.splitlines())
    d = os.path.join(out, build.__name__)
    os.makedirs(d)
    tok.save(os.path.join(d, "tokenizer.json"))
    if config:
        json.dump(config, open(os.path.join(d, "tokenizer_config.json"), "w"))
PYEOF

hf_peer() { # dir file -> "MBps tokens per_line_MBps"
  "$PY" - "$1" "$2" "$REPS" <<'PYEOF'
import sys, time
from tokenizers import Tokenizer
d, path, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(path, encoding="utf-8", newline="").read()
lines = text.splitlines(keepends=True)
best, best_lines, n = float("inf"), float("inf"), 0
for _ in range(reps):
    tok = Tokenizer.from_file(f"{d}/tokenizer.json")
    t0 = time.process_time()
    n = len(tok.encode(text, add_special_tokens=False).ids)
    best = min(best, time.process_time() - t0)
    tok = Tokenizer.from_file(f"{d}/tokenizer.json")  # its own favourite case: short texts
    t0 = time.process_time()
    tok.encode_batch(lines, add_special_tokens=False)
    best_lines = min(best_lines, time.process_time() - t0)
mb = len(text.encode("utf-8")) / 1e6
print(f"{mb / best:.2f} {n} {mb / best_lines:.2f}")
PYEOF
}

echo
echo "tokenizer.json structures (vocabulary $VOCAB, trained by tokenizers on moby-dick.txt), best of $REPS, one thread, CPU time:"
echo
echo "| structure | file | retort MB/s | tokenizers MB/s | vs tokenizers | tokenizers line by line MB/s | vs that | tokens (retort / tokenizers) |"
echo "|-----------|------|-------------|-----------------|---------------|------------------------------|---------|------------------------------|"
for s in llama3 qwen2 llama2 mistral smollm gpt2; do
  for f in "$@"; do
    line=$("$RETORT" tokenizer encode --tokenizer "$TOKDIR/$s" --input "$f" --bench "$REPS")
    ours_n=$(awk '{print $4}' <<<"$line")
    ours=$(sed -n 's/.*, \([0-9.]*\) MB\/s$/\1/p' <<<"$line")
    read -r hf hf_n hf_lines < <(hf_peer "$TOKDIR/$s" "$f")
    printf '| %s | %s | %s | %s | %.2fx | %s | %.2fx | %s / %s |\n' "$s" "$(basename "$f")" \
      "$ours" "$hf" "$(awk -v a="$ours" -v b="$hf" 'BEGIN{print a/b}')" "$hf_lines" \
      "$(awk -v a="$ours" -v b="$hf_lines" 'BEGIN{print a/b}')" "$ours_n" "$hf_n"
  done
done
