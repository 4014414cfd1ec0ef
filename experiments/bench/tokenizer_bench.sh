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
#   experiments/bench/tokenizer_bench.sh                 (needs ./retort and the venv
#   REPS=5 experiments/bench/tokenizer_bench.sh FILE...   with tiktoken and tokenizers)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RETORT=${RETORT:-./retort}
REPS=${REPS:-3}
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
