#!/usr/bin/env bash
# experiments/bench/pack_stream_rss.sh — peak resident memory of packed
# training (data.pack) on a small and a large streamed sft file: stream_rss.sh
# with PACK=1 (its header says what it measures; the same knobs apply).
#
#   experiments/bench/pack_stream_rss.sh
#   SMALL_MB=100 LARGE_MB=2000 STEPS=300 experiments/bench/pack_stream_rss.sh
PACK=1 exec "$(dirname "$0")/stream_rss.sh" "$@"
