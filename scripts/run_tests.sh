#!/usr/bin/env bash
# scripts/run_tests.sh BIN... — runs each Criterion test binary from the repo
# root, then prints one closing line with the totals over all of them. An
# argument ending in .sh is a script that prints its own
# "tests: P passed, F failed, S skipped" line (scripts/test_mpi.sh).
set -u
pass=0; fail=0; skip=0; status=0
for bin in "$@"; do
  echo "== $bin"
  case "$bin" in
    *.sh) out=$("$bin" 2>&1); rc=$? ;;
    *) out=$("$bin" --jobs "${TEST_JOBS:-2}" 2>&1); rc=$? ;;
  esac
  printf '%s\n' "$out"
  sums=$(printf '%s\n' "$out" | grep '^tests: [0-9]* passed' | tail -1)
  if [ "${bin%.sh}" != "$bin" ] && [ -n "$sums" ]; then
    read -r p f s < <(sed -n 's/^tests: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1 \2 \3/p' <<<"$sums")
    pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0})); skip=$((skip + ${s:-0}))
    [ $rc -eq 0 ] || status=1
    continue
  fi
  line=$(printf '%s\n' "$out" | sed 's/\x1b\[[0-9;]*m//g' | grep 'Synthesis:' | tail -1)
  if [ -n "$line" ]; then
    p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
    f=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$line")
    c=$(sed -n 's/.*Crashing: \([0-9]*\).*/\1/p' <<<"$line")
    # Criterion's synthesis has no skip count; skipped tests print "SKIP: ..."
    s=$(printf '%s\n' "$out" | grep -c '^SKIP:')
    pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0} + ${c:-0})); skip=$((skip + ${s:-0}))
  else
    fail=$((fail + 1))
  fi
  [ $rc -eq 0 ] || status=1
done
echo "tests: $pass passed, $fail failed, $skip skipped"
exit $status
