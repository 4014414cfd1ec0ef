#!/usr/bin/env bash
# scripts/fuzz_replay.sh — `make test`'s part of the fuzzing: runs each fuzz
# harness, built with the normal compiler and flags plus fuzz/replay_main.c
# (no clang, no libFuzzer), over every file of its committed corpus
# fuzz/corpus/NAME/: the seeds and the reproducer of every crash fixed, so a
# fixed crash stays fixed. One test per harness; the output of a failing one
# is shown (its last "replay: FILE" line names the input). Prints
# "tests: P passed, F failed, S skipped" (scripts/run_tests.sh adds it up).
# The binaries are $FUZZ_REPLAY_DIR/NAME_replay (the Makefile's test target
# builds them).
set -u
cd "$(dirname "$0")/.."
dir=${FUZZ_REPLAY_DIR:-build/fuzz}
pass=0; fail=0; skip=0
for src in fuzz/fuzz_*.c; do
  name=${src#fuzz/fuzz_}; name=${name%.c}
  bin=$dir/${name}_replay
  corpus=fuzz/corpus/$name
  if [ ! -x "$bin" ]; then
    echo "FAIL $name: $bin is not built (make test builds it)"
    fail=$((fail + 1)); continue
  fi
  if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
    echo "FAIL $name: no corpus in $corpus (every harness commits seeds)"
    fail=$((fail + 1)); continue
  fi
  start=$(date +%s%N)
  if out=$("$bin" "$corpus" 2>&1); then
    n=$(printf '%s\n' "$out" | sed -n 's/^replayed \([0-9]*\) inputs$/\1/p')
    ms=$((($(date +%s%N) - start) / 1000000))
    printf 'ok   %-16s %4s inputs  %d ms\n' "$name" "$n" "$ms"
    pass=$((pass + 1))
  else
    rc=$?
    echo "FAIL $name (exit $rc): the last input named below broke it"
    printf '%s\n' "$out" | tail -40
    fail=$((fail + 1))
  fi
done
echo "tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
