#!/usr/bin/env bash
# scripts/deps.sh check|install|fuzz-check|fuzz-install — the Debian packages
# retort builds and runs with.
#   check:   exit 0 when everything is present, 1 (with the missing list) otherwise
#   install: apt-get install them when root; otherwise print the exact command
#   fuzz-check, fuzz-install: the same for what `make fuzz` adds (clang with
#            libFuzzer and its OpenMP runtime); `make test` never needs them
set -u
FUZZ_PACKAGES=(clang libclang-rt-dev libomp-dev)

# Can ${FUZZ_CC:-clang} link a libFuzzer target with ASan, UBSan and OpenMP?
fuzz_toolchain_ok() {
  local cc=${FUZZ_CC:-clang} dir
  command -v "$cc" >/dev/null 2>&1 || return 1
  dir=$(mktemp -d) || return 1
  printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$dir/t.c"
  "$cc" -fsanitize=fuzzer,address,undefined -fopenmp "$dir/t.c" -o "$dir/t" >/dev/null 2>&1
  local rc=$?
  rm -rf "$dir"
  return $rc
}

apt_install() { # what, packages...
  local what=$1; shift
  local line="apt-get install -y $*"
  if [ "$(id -u)" -ne 0 ]; then
    echo "retort: run as root:  apt-get update && $line" >&2
    exit 1
  fi
  echo "retort: installing $what: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null || {
    echo "retort: apt-get failed; run by hand: apt-get update && $line" >&2; exit 1; }
}

case "${1:-check}" in
  fuzz-check)
    fuzz_toolchain_ok && exit 0
    echo "retort: ${FUZZ_CC:-clang} cannot link a libFuzzer harness (-fsanitize=fuzzer,address,undefined -fopenmp)" >&2
    exit 1 ;;
  fuzz-install)
    fuzz_toolchain_ok && { echo "retort: the fuzzing toolchain is present"; exit 0; }
    apt_install "the fuzzing toolchain" "${FUZZ_PACKAGES[@]}"
    fuzz_toolchain_ok || { echo "retort: ${FUZZ_CC:-clang} still cannot link a libFuzzer harness; give FUZZ_CC=clang-NN" >&2; exit 1; }
    echo "retort: fuzzing toolchain installed"
    exit 0 ;;
esac
PACKAGES=(build-essential pkg-config libhdf5-dev hdf5-tools libcriterion-dev
          libopenblas-openmp-dev libyaml-dev libjansson-dev libpcre2-dev libutf8proc-dev bible-kjv python3-venv
          libopenmpi-dev openmpi-bin python3-h5py)
PKGCONFIG=(hdf5 openblas yaml-0.1 jansson criterion libpcre2-8 libutf8proc ompi-c)

missing_pc=()
for p in "${PKGCONFIG[@]}"; do pkg-config --exists "$p" 2>/dev/null || missing_pc+=("$p"); done
command -v bible >/dev/null 2>&1 || missing_pc+=("bible (bible-kjv, the quickstart's text)")
command -v mpirun >/dev/null 2>&1 || missing_pc+=("mpirun (openmpi-bin)")
/usr/bin/python3 -c "import h5py" >/dev/null 2>&1 || missing_pc+=("h5py (python3-h5py, for the h5py read-back test)")

case "${1:-check}" in
  check)
    if [ ${#missing_pc[@]} -eq 0 ]; then exit 0; fi
    echo "retort: missing build dependencies: ${missing_pc[*]}" >&2
    exit 1 ;;
  install)
    if [ ${#missing_pc[@]} -eq 0 ]; then echo "retort: all dependencies present"; exit 0; fi
    line="apt-get install -y ${PACKAGES[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      echo "retort: missing: ${missing_pc[*]}" >&2
      echo "retort: run as root:  apt-get update && $line" >&2
      exit 1
    fi
    echo "retort: installing: ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q "${PACKAGES[@]}" >/dev/null || {
      echo "retort: apt-get failed; run by hand: apt-get update && $line" >&2; exit 1; }
    echo "retort: dependencies installed" ;;
  *) echo "usage: $0 check|install" >&2; exit 2 ;;
esac
