#!/usr/bin/env bash
# scripts/fuzz.sh — runs the libFuzzer harnesses that `make fuzz` builds.
#
#   scripts/fuzz.sh run SECONDS JOBS NAME...   fuzz each harness for SECONDS, JOBS at
#                                              a time, then print a summary table
#   scripts/fuzz.sh merge NAME...              minimise fuzz/corpus/NAME with -merge=1
#                                              over it and the work corpus
#
# Each run reads the committed seeds fuzz/corpus/NAME/ and adds what it finds to
# a work corpus, $FUZZ_WORK/corpus/NAME/ (a run never writes the committed
# corpus). A failing input (crash, sanitizer report, leak, broken FUZZ_CHECK,
# timeout, out of memory) lands in $FUZZ_WORK/crashes/NAME/ (emptied when a run
# starts) and ends libFuzzer;
# the run then starts it again for the time left (at most MAX_RESTARTS times),
# so one bug does not end the campaign. The logs are $FUZZ_WORK/logs/NAME.*.
# Limits: 2 GB of memory, 10 s per input, an input size per harness (MAX_LEN).
# Coverage is measured the same way at both ends: libFuzzer's INITED line over
# the committed seeds alone (start) and over seeds + work corpus (end).
# A reproducer of a fixed crash is committed as fuzz/corpus/NAME/regress-WHAT,
# which `merge` keeps as it is.
#
# Replay one input by hand:  $FUZZ_BIN_DIR/NAME_fuzzer FILE   (from the repository root)
set -u
cd "$(dirname "$0")/.."
bin_dir=${FUZZ_BIN_DIR:-build/libfuzzer/fuzz}
work=${FUZZ_WORK:-build/libfuzzer}
MAX_RESTARTS=20

max_len() { # the largest input each harness is given, in bytes
  case $1 in
    h5data) echo 16384 ;;          # a whole small HDF5 file
    tokenizer_json) echo 16384 ;;  # a tokenizer with a few hundred tokens
    chat_template) echo 16384 ;;   # a real chat template (gpt-oss's is 16 KB)
    calc) echo 1024 ;;
    agent_call) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

# Options every libFuzzer call gets for harness $1.
options() {
  local o=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -max_len="$(max_len "$1")")
  [ -f "fuzz/dict/$1.dict" ] && o+=(-dict="fuzz/dict/$1.dict")
  printf '%s\n' "${o[@]}"
}

# "cov ft" of libFuzzer's INITED line in log $1, else (the corpus run crashed
# before it) of the last status line of the fuzzing logs $2...
inited() {
  local log=$1; shift
  local got
  got=$(sed -nE 's/^#[0-9]+[[:space:]]+INITED cov: ([0-9]+) ft: ([0-9]+).*/\1 \2/p' "$log" | tail -1)
  [ -n "$got" ] || [ $# -eq 0 ] ||
    got=$(cat "$@" 2>/dev/null | sed -nE 's/^#[0-9]+[[:space:]]+[A-Z]+ +cov: ([0-9]+) ft: ([0-9]+).*/\1 \2/p' | tail -1)
  echo "$got"
}

run_one() {
  local name=$1 seconds=$2 bin=$bin_dir/${1}_fuzzer
  local corpus=$work/corpus/$name crashes=$work/crashes/$name logs=$work/logs/$name
  mkdir -p "$corpus" "$crashes" "$work/logs"
  rm -f "$logs".*
  mapfile -t opts < <(options "$name")
  mkdir -p "$work/measure"
  "$bin" "${opts[@]}" -runs=0 -artifact_prefix="$work/measure/" "fuzz/corpus/$name" >"$logs.start" 2>&1
  local t0 now execs=0 restarts=0 seg
  t0=$(date +%s)
  while :; do
    now=$(date +%s)
    [ $((now - t0)) -lt "$seconds" ] || break
    seg=$logs.run$restarts
    "$bin" "${opts[@]}" -max_total_time=$((seconds - (now - t0))) -print_final_stats=1 \
      -artifact_prefix="$crashes/" "$corpus" "fuzz/corpus/$name" >"$seg" 2>&1
    local rc=$? n
    n=$(grep -oE '^#[0-9]+' "$seg" | tail -1 | tr -d '#')
    execs=$((execs + ${n:-0}))
    [ $rc -eq 0 ] && break
    restarts=$((restarts + 1))
    [ $restarts -le $MAX_RESTARTS ] || { echo "fuzz: $name: $MAX_RESTARTS restarts, giving up" >>"$seg"; break; }
  done
  "$bin" "${opts[@]}" -runs=0 -artifact_prefix="$work/measure/" "$corpus" "fuzz/corpus/$name" \
    >"$logs.end" 2>&1
  printf '%s %s %s\n' "$(( $(date +%s) - t0 ))" "$execs" "$restarts" >"$logs.totals"
}

summary() {
  printf '| harness | minutes | executions | cov start → end | ft start → end | failing inputs saved |\n'
  printf '|---|---|---|---|---|---|\n'
  for name in "$@"; do
    local logs=$work/logs/$name
    [ -f "$logs.totals" ] || continue
    read -r c0 f0 < <(inited "$logs.start")
    read -r c1 f1 < <(inited "$logs.end" $(ls "$logs".run* 2>/dev/null | sort -V))
    read -r secs execs _ <"$logs.totals"
    printf '| %s | %s | %s | %s → %s | %s → %s | %s |\n' "$name" \
      "$(awk -v s="$secs" 'BEGIN { printf "%.1f", s / 60 }')" "$execs" \
      "${c0:-?}" "${c1:-?}" "${f0:-?}" "${f1:-?}" \
      "$(find "$work/crashes/$name" -type f 2>/dev/null | wc -l)"
  done
}

case "${1:-}" in
  run)
    [ $# -ge 4 ] || { echo "usage: $0 run SECONDS JOBS NAME..." >&2; exit 2; }
    seconds=$2; jobs=$3; shift 3
    for name in "$@"; do
      [ -x "$bin_dir/${name}_fuzzer" ] || { echo "fuzz: $bin_dir/${name}_fuzzer is not built (make fuzz-build)" >&2; exit 1; }
    done
    echo "fuzz: $* — ${seconds}s each, $jobs at a time; logs in $work/logs/"
    rm -rf "${@/#/$work/crashes/}"
    running=0
    for name in "$@"; do
      run_one "$name" "$seconds" &
      running=$((running + 1))
      if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    done
    wait
    summary "$@"
    found=$(find "$work/crashes" -type f 2>/dev/null | wc -l)
    if [ "$found" -gt 0 ]; then
      echo "fuzz: $found failing input(s) under $work/crashes/ — replay one with"
      echo "      $bin_dir/NAME_fuzzer FILE"
      exit 1
    fi ;;
  merge)
    [ $# -ge 2 ] || { echo "usage: $0 merge NAME..." >&2; exit 2; }
    shift
    for name in "$@"; do
      committed=fuzz/corpus/$name new=$work/merged/$name
      rm -rf "$new"; mkdir -p "$new"
      mapfile -t opts < <(options "$name")
      "$bin_dir/${name}_fuzzer" "${opts[@]}" -merge=1 "$new" "$committed" "$work/corpus/$name" \
        >"$work/logs/$name.merge.log" 2>&1 || { echo "fuzz: merge of $name failed; see $work/logs/$name.merge.log" >&2; exit 1; }
      find "$committed" -type f ! -name 'regress-*' -delete
      for f in "$new"/*; do # a regress- file already holds its input
        dup=0
        for r in "$committed"/regress-*; do [ -f "$r" ] && cmp -s "$f" "$r" && dup=1; done
        [ $dup -eq 1 ] || cp "$f" "$committed"/
      done
      echo "fuzz: $name: $(find "$committed" -type f | wc -l) files, $(du -sk "$committed" | cut -f1) KB"
    done ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
