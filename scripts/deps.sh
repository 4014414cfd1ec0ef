#!/usr/bin/env bash
# scripts/deps.sh check|install — the Debian packages retort builds and runs with.
#   check:   exit 0 when everything is present, 1 (with the missing list) otherwise
#   install: apt-get install them when root; otherwise print the exact command
set -u
PACKAGES=(build-essential pkg-config libhdf5-dev hdf5-tools libcriterion-dev
          libopenblas-openmp-dev libyaml-dev libjansson-dev libpcre2-dev bible-kjv python3-venv
          libopenmpi-dev openmpi-bin python3-h5py)
PKGCONFIG=(hdf5 openblas yaml-0.1 jansson criterion libpcre2-8 ompi-c)

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
