#!/usr/bin/env bash
# scripts/check_floors.sh — the include rule of docs/architecture.md: a source
# folder includes only from the folders it may stand on. Floors, bottom up:
#   util                      errors, allocation, random numbers, files
#   kernels   data            numerical ops; tokenizers and datasets
#   model                     backends, the model, checkpoints, sampling
#   train     eval            the trainer and its objectives; evaluation, pairs, agents
#   cli                       the command line
# Peers on one floor do not include each other, and no folder below cli/
# declares, defines or calls a command entry point (cmd_*). Prints every
# offence and exits 1 when there is one; `make test` and `make check-floors`
# run it. It also checks that docs/architecture.md names every source file of
# these folders (its file map gives each one its room).
set -uo pipefail
cd "$(dirname "$0")/.."
declare -A allowed=(
  [util]="util"
  [kernels]="util kernels"
  [data]="util data"
  [model]="util kernels data model"
  [train]="util kernels data model train"
  [eval]="util kernels data model eval"
  [cli]="util kernels data model train eval cli"
)
bad=0
checked=0
for folder in "${!allowed[@]}"; do
  while IFS= read -r -d '' file; do
    checked=$((checked + 1))
    while IFS= read -r line; do
      target=${line#*\"}; target=${target%\"}
      top=${target%%/*}
      [[ $target == */* ]] || continue          # system or same-folder header
      [[ -n ${allowed[$top]+x} ]] || continue   # not a source floor (tests, ...)
      if [[ " ${allowed[$folder]} " != *" $top "* ]]; then
        echo "floor violation: $file includes \"$target\" ($folder may include: ${allowed[$folder]})"
        bad=$((bad + 1))
      fi
    done < <(grep -o '^#include "[^"]*"' "$file")
  done < <(find "$folder" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print0)
done
# command entry points (cmd_*) are the command line's: defined and called in
# cli/ only, declared in one header, cli/cli.h
for folder in "${!allowed[@]}"; do
  if [ "$folder" = cli ]; then
    files=(--include='*.h' --exclude=cli.h)
  else
    files=(--include='*.c' --include='*.h' --include='*.cu' --include='*.cuh')
  fi
  while IFS= read -r hit; do
    echo "floor violation: $hit (command entry points live in cli/, declared in cli/cli.h)"
    bad=$((bad + 1))
  done < <(grep -rnE '\bcmd_[A-Za-z0-9_]+[[:space:]]*\(' "$folder" "${files[@]}")
done
# docs/architecture.md gives every source file of the floors its room
for folder in "${!allowed[@]}"; do
  while IFS= read -r -d '' file; do
    stem=$(basename "$file"); stem=${stem%.*}
    if ! grep -q -- "$stem" docs/architecture.md; then
      echo "docs/architecture.md does not name $file: add it to the file map"
      bad=$((bad + 1))
    fi
  done < <(find "$folder" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print0)
done
if [ "$bad" -ne 0 ]; then
  echo "check_floors: $bad problem(s): includes or command entry points that break the floors, or files the map in docs/architecture.md misses"
  echo "tests: 0 passed, 1 failed, 0 skipped"
  exit 1
fi
echo "check_floors: $checked files, every include goes down or sideways within its folder;"
echo "  command entry points only in cli/, declared in cli/cli.h"
echo "tests: 1 passed, 0 failed, 0 skipped"
