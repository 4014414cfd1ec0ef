#!/usr/bin/env bash
# scripts/test_gpu.sh — `make test-gpu`: everything that needs a GPU, in one
# run (one call of a borrowed machine).
#   0. `retort device`: driver, runtime and GPUs, and a test kernel; when CUDA
#      is unusable (no device, a driver older than the toolkit, no kernel image
#      for this GPU) it stops here with the reason, since every test below
#      would only skip and prove nothing
#   1. build/tests/test_cuda: each CUDA op vs its CPU twin, the model vs the CPU;
#      fails when any test skipped (no test ran on the GPU)
#   2. 50 training steps on CPU and on CUDA from the same init and data: the
#      bf16 loss curve must track the fp32 one (|diff| <= 0.05 + 2% of the loss)
#   3. two CUDA runs with the same seed: identical losses
#   4. compute-sanitizer memcheck on a short CUDA run: no errors
#   5. with two or more GPUs: dist.zero=1 over NCCL vs plain data parallelism
#      on 2 GPUs, and its checkpoint resumed on 1 GPU (skipped with one GPU)
#   6. with two or more GPUs: dist.zero=2 over NCCL (per-block ncclReduce to
#      the owners) vs dist.zero=1, also with data.grad_accum 2, and stopped on
#      2 GPUs, resumed on 1 (skipped with one GPU)
#   7. with two or more GPUs: dist.zero=3 over NCCL (each block's bf16
#      parameters broadcast from their owners' shards before its forward and
#      backward) vs dist.zero=2, also with data.grad_accum 2, and stopped on
#      2 GPUs, resumed on 1 (skipped with one GPU)
# Prints a summary table last and exits non-zero if any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-/tmp}/retort-gpu
mkdir -p "$OUT_DIR"
W=$(mktemp -d /tmp/retort-gpu-XXXXXX)
results=()
fail=0
note() { results+=("$1"); }

echo "== 0. device probe"
{
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 |
      sed 's/^/nvidia-smi: /'
  else
    echo "nvidia-smi: not found"
  fi
  ./retort device 2>&1
} | tee "$OUT_DIR/device.txt"
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  echo
  echo "== test-gpu summary"
  echo "FAIL  device probe: $(grep '^retort device: error:' "$OUT_DIR/device.txt" | tail -1 |
    sed 's/^retort device: error: //')"
  echo "      nothing ran: every GPU test would skip (see device.txt)"
  rm -rf "$W"
  exit 1
fi

echo "== 1. op and model tests"
build/tests/test_cuda --jobs 1 2>&1 | tee "$OUT_DIR/test_cuda.log"
rc=${PIPESTATUS[0]}
# Criterion's "Tested" leaves out skipped tests; --list counts them all
tested=$(grep -o 'Tested: [0-9]*' "$OUT_DIR/test_cuda.log" | tail -1 | grep -o '[0-9]*$')
listed=$(build/tests/test_cuda --list 2>/dev/null | sed -n 's/^.*: \([0-9][0-9]*\) tests\{0,1\}$/\1/p' |
  awk '{ s += $1 } END { print s + 0 }')
skip_reason=$(grep -m1 '^SKIP' "$OUT_DIR/test_cuda.log")
if [ $rc -ne 0 ]; then
  note "FAIL  op and model tests (see test_cuda.log)"; fail=1
elif [ "${tested:-0}" -eq 0 ]; then
  note "FAIL  op and model tests: no test ran, all $listed skipped (${skip_reason:-see test_cuda.log})"
  fail=1
elif [ "$tested" -lt "$listed" ]; then
  note "FAIL  op and model tests: $((listed - tested)) of $listed skipped (${skip_reason:-see test_cuda.log})"
  fail=1
else
  note "PASS  op and model tests (Tested: $tested of $listed)"
fi

echo "== 2. 50 steps, CPU vs CUDA"
# a small text-like dataset from the repository's own sources (always present)
cat train/*.c kernels/cpu/*.c data/*.c > "$W/corpus.txt"
./retort data build --schema lm --input "$W/corpus.txt" --out "$W/corpus.h5" -q
common=(--set model.n_layer=4 --set model.n_head=4 --set model.n_embd=256 --set model.vocab_size=257
        --set model.n_positions=256 --set data.train="$W/corpus.h5" --set data.seq_len=256
        --set data.batch_size=8 --set train.steps=50 --set optim.lr=1e-3 --set optim.warmup_steps=5
        --set checkpoint.keep=1 --set train.log_every=10 --set train.seed=7)
./retort train "${common[@]}" --device cpu --set train.out_dir="$W/cpu" > "$OUT_DIR/train_cpu.log" 2>&1
./retort train "${common[@]}" --device cuda --set train.out_dir="$W/gpu1" > "$OUT_DIR/train_gpu1.log" 2>&1
./retort train "${common[@]}" --device cuda --set train.out_dir="$W/gpu2" > "$OUT_DIR/train_gpu2.log" 2>&1
# the same 8 sequences per step as 4 micro-steps of 2: the weight gradients
# are summed over micro-steps in fp32 on both devices (model/backend.h)
accum=(--set data.batch_size=2 --set data.grad_accum=4)
./retort train "${common[@]}" "${accum[@]}" --device cpu --set train.out_dir="$W/cpu_acc" \
  > "$OUT_DIR/train_cpu_accum.log" 2>&1
./retort train "${common[@]}" "${accum[@]}" --device cuda --set train.out_dir="$W/gpu_acc" \
  > "$OUT_DIR/train_gpu_accum.log" 2>&1
cp "$W/cpu/metrics.jsonl" "$OUT_DIR/metrics_cpu.jsonl" 2>/dev/null
cp "$W/gpu1/metrics.jsonl" "$OUT_DIR/metrics_gpu.jsonl" 2>/dev/null
cp "$W/cpu_acc/metrics.jsonl" "$OUT_DIR/metrics_cpu_accum.jsonl" 2>/dev/null
cp "$W/gpu_acc/metrics.jsonl" "$OUT_DIR/metrics_gpu_accum.jsonl" 2>/dev/null
verdict=$(python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
def losses(d):
    try:
        return [json.loads(l)["loss"] for l in open(f"{w}/{d}/metrics.jsonl") if '"loss"' in l]
    except OSError:
        return []
def curve(name, c, g):
    if len(c) != 50 or len(g) != 50:
        print(f"FAIL {name}: runs incomplete (cpu {len(c)}, gpu {len(g)} steps)"); return
    worst = max(abs(a - b) - (0.05 + 0.02 * abs(a)) for a, b in zip(c, g))
    md = max(abs(a - b) for a, b in zip(c, g))
    print(("PASS" if worst <= 0 else "FAIL") + f" {name}: max |cpu-gpu| {md:.4f} over 50 steps; "
          f"cpu {c[0]:.3f}->{c[-1]:.3f}, gpu {g[0]:.3f}->{g[-1]:.3f}")
curve("curve (grad_accum 4)", losses("cpu_acc"), losses("gpu_acc"))
c, g1, g2 = losses("cpu"), losses("gpu1"), losses("gpu2")
if len(c) != 50 or len(g1) != 50 or len(g2) != 50:
    print(f"FAIL curve: runs incomplete (cpu {len(c)}, gpu {len(g1)}, {len(g2)} steps)")
    print("FAIL determinism: runs incomplete"); sys.exit()
curve("curve", c, g1)
print(("PASS" if g1 == g2 else "FAIL") + " determinism: two CUDA runs " +
      ("identical" if g1 == g2 else f"differ (first at step {next(i for i,(a,b) in enumerate(zip(g1,g2)) if a!=b)+1})"))
PY
)
while IFS= read -r line; do note "$line"; [[ $line == FAIL* ]] && fail=1; done <<< "$verdict"

echo "== 4. compute-sanitizer memcheck"
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 9 ./retort train "${common[@]}" --device cuda \
    --set train.steps=2 --set train.out_dir="$W/san" > "$OUT_DIR/sanitizer.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then note "PASS  compute-sanitizer memcheck (2 steps)"; else
    note "FAIL  compute-sanitizer memcheck (exit $rc; see sanitizer.log)"; fail=1; fi
else
  note "SKIP  compute-sanitizer not found"
fi

echo "== 5. ZeRO-1 over NCCL (two or more GPUs)"
# dist.zero=1 on CUDA shards m, v and the fp32 master weights; each rank's
# updated bf16 parameters are broadcast from their owners (train/optim.c
# sharded_step_device). Its losses must follow plain data parallelism's on
# the same GPUs: the same all-reduced gradients, the same AdamW kernel on each
# element, so the runs should agree to the norm's summation order.
ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if [ "${ngpu:-0}" -ge 2 ] && command -v mpirun >/dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  z=(--set train.steps=20 --set checkpoint.every=10 --set data.batch_size=4)
  timeout 600 mpirun --oversubscribe -np 2 ./retort train "${common[@]}" "${z[@]}" --device cuda \
    --set train.out_dir="$W/dp2" > "$OUT_DIR/train_dp2.log" 2>&1
  timeout 600 mpirun --oversubscribe -np 2 ./retort train "${common[@]}" "${z[@]}" --device cuda \
    --set dist.zero=1 --set train.out_dir="$W/z1" > "$OUT_DIR/train_zero1.log" 2>&1
  # a ZeRO-1 run stopped at step 10 on 2 GPUs, resumed on 1: the gathered state
  RETORT_STOP_AT_STEP=10 timeout 600 mpirun --oversubscribe -np 2 ./retort train "${common[@]}" \
    "${z[@]}" --device cuda --set dist.zero=1 --set train.out_dir="$W/z1r" \
    > "$OUT_DIR/train_zero1_stop.log" 2>&1
  ./retort train "${common[@]}" "${z[@]}" --set data.batch_size=8 --device cuda \
    --set train.out_dir="$W/z1r" --resume > "$OUT_DIR/train_zero1_resume.log" 2>&1
  verdict=$(python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
def losses(d):
    try:
        return {json.loads(l)["step"]: json.loads(l)["loss"] for l in open(f"{w}/{d}/metrics.jsonl") if '"loss"' in l}
    except OSError:
        return {}
a, b, c = losses("dp2"), losses("z1"), losses("z1r")
if len(a) != 20 or len(b) != 20:
    print(f"FAIL zero1 on 2 GPUs: runs incomplete (dp {len(a)}, zero1 {len(b)} steps)"); sys.exit()
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(("PASS" if worst <= 1e-3 else "FAIL") + f" zero1 on 2 GPUs vs plain data parallel: max relative {worst:.2g}")
tail = [s for s in c if s > 10]
if len(tail) != 10:
    print(f"FAIL zero1 resumed on 1 GPU: {len(tail)} steps after 10"); sys.exit()
worst = max(abs(c[s] - b[s]) / abs(b[s]) for s in tail)
print(("PASS" if worst <= 2e-2 else "FAIL") + f" zero1 stopped on 2 GPUs, resumed on 1: max relative {worst:.2g}")
PY
)
  while IFS= read -r line; do note "$line"; [[ $line == FAIL* ]] && fail=1; done <<< "$verdict"
else
  note "SKIP  ZeRO-1 over NCCL: needs two GPUs and mpirun (found ${ngpu:-0} GPUs)"
fi

# ZeRO stage $2 against stage $1 on 2 GPUs (20 steps; and with grad_accum 2),
# then stage $2 stopped at step 10 on 2 GPUs and resumed on 1: losses to 1e-3
# relative (NCCL's reduce and all-reduce may sum in different orders), the
# resumed tail to 2e-2. A stage-$1 run already there (an earlier part) is reused.
zero_stage_vs() {
  local base=$1 new=$2 d
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  local z=(--set train.steps=20 --set checkpoint.every=10 --set data.batch_size=4)
  local acc=(--set data.batch_size=2 --set data.grad_accum=2)
  for d in "z$base" "z${base}a"; do
    [ -f "$W/$d/metrics.jsonl" ] && continue
    local extra=(); [ "$d" = "z${base}a" ] && extra=("${acc[@]}")
    timeout 600 mpirun --oversubscribe -np 2 ./retort train "${common[@]}" "${z[@]}" ${extra[@]+"${extra[@]}"} \
      --device cuda --set dist.zero="$base" --set train.out_dir="$W/$d" > "$OUT_DIR/train_$d.log" 2>&1
  done
  timeout 600 mpirun --oversubscribe -np 2 ./retort train "${common[@]}" "${z[@]}" --device cuda \
    --set dist.zero="$new" --set train.out_dir="$W/z$new" > "$OUT_DIR/train_z$new.log" 2>&1
  timeout 600 mpirun --oversubscribe -np 2 ./retort train "${common[@]}" "${z[@]}" "${acc[@]}" \
    --device cuda --set dist.zero="$new" --set train.out_dir="$W/z${new}a" > "$OUT_DIR/train_z${new}a.log" 2>&1
  RETORT_STOP_AT_STEP=10 timeout 600 mpirun --oversubscribe -np 2 ./retort train "${common[@]}" \
    "${z[@]}" --device cuda --set dist.zero="$new" --set train.out_dir="$W/z${new}r" \
    > "$OUT_DIR/train_z${new}_stop.log" 2>&1
  ./retort train "${common[@]}" "${z[@]}" --set data.batch_size=8 --device cuda \
    --set train.out_dir="$W/z${new}r" --resume > "$OUT_DIR/train_z${new}_resume.log" 2>&1
  local verdict
  verdict=$(python3 - "$W" "$base" "$new" <<'PY'
import json, sys
w, base, new = sys.argv[1:4]
def losses(d):
    try:
        return {json.loads(l)["step"]: json.loads(l)["loss"] for l in open(f"{w}/{d}/metrics.jsonl") if '"loss"' in l}
    except OSError:
        return {}
def close(name, a, b, tol):
    if len(a) != 20 or len(b) != 20:
        print(f"FAIL {name}: runs incomplete ({len(a)}, {len(b)} steps)"); return
    worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
    print(("PASS" if worst <= tol else "FAIL") + f" {name}: max relative {worst:.2g}")
close(f"zero{new} vs zero{base} on 2 GPUs", losses(f"z{base}"), losses(f"z{new}"), 1e-3)
close(f"zero{new} vs zero{base} on 2 GPUs, grad_accum 2", losses(f"z{base}a"), losses(f"z{new}a"), 1e-3)
b, c = losses(f"z{new}"), losses(f"z{new}r")
tail = [s for s in c if s > 10]
if len(tail) != 10 or len(b) != 20:
    print(f"FAIL zero{new} resumed on 1 GPU: {len(tail)} steps after 10"); sys.exit()
worst = max(abs(c[s] - b[s]) / abs(b[s]) for s in tail)
print(("PASS" if worst <= 2e-2 else "FAIL") + f" zero{new} stopped on 2 GPUs, resumed on 1: max relative {worst:.2g}")
PY
)
  while IFS= read -r line; do note "$line"; [[ $line == FAIL* ]] && fail=1; done <<< "$verdict"
}

echo "== 6. ZeRO-2 over NCCL (two or more GPUs)"
# dist.zero=2 on CUDA reduces each block's gradient to its owners during
# backward (train/optim.c grads_ready, dist_reduce_scatter_add_device) into a
# device shard; the step is ZeRO-1's on the same elements.
if [ "${ngpu:-0}" -ge 2 ] && command -v mpirun >/dev/null; then
  zero_stage_vs 1 2
else
  note "SKIP  ZeRO-2 over NCCL: needs two GPUs and mpirun (found ${ngpu:-0} GPUs)"
fi

echo "== 7. ZeRO-3 over NCCL (two or more GPUs)"
# dist.zero=3 on CUDA keeps a bf16 shard of the parameters beside the fp32
# master shard; each block's are gathered (dist_gather_pieces) into one
# window before the model needs them, and AdamW writes the shard. The
# gathered values are the owners' bits and the update is ZeRO-2's on the same
# elements, so the runs should agree with part 6's to NCCL's rounding.
if [ "${ngpu:-0}" -ge 2 ] && command -v mpirun >/dev/null; then
  zero_stage_vs 2 3
else
  note "SKIP  ZeRO-3 over NCCL: needs two GPUs and mpirun (found ${ngpu:-0} GPUs)"
fi

rm -rf "$W"
echo
echo "== test-gpu summary"
printf '%s\n' "${results[@]}"
exit $fail
