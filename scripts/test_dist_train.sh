#!/usr/bin/env bash
# scripts/test_dist_train.sh — data-parallel training on CPUs under mpirun,
# against single-process runs with the same global batch:
#   1. 2 ranks x batch 2 == 1 rank x batch 4 (lm; GPT-2, and a Llama-family
#      model from tests/fixtures/cli_families/llama), and 3 ranks x 2 == 1 x 6
#   2. the same for DPO and ORPO pairs (2 ranks x 2 pairs == 1 rank x 4 pairs)
#   3. stopped (as by SIGTERM) at step 3 on 2 ranks and resumed on 1 rank,
#      and the reverse: the losses continue as the uninterrupted run's
#   4. a real SIGTERM to one of 2 ranks: both stop at the same step, rank 0
#      checkpoints, exit 0; resumed on 1 rank the run ends like an
#      uninterrupted one. Rank 1 signals itself at step 5
#      (RETORT_TEST_SIGNAL_AT_STEP), so the step is known and a fast machine
#      cannot finish the run before a signal from outside arrives
#   5. ZeRO-1 (sharded optimizer state) == plain data parallel, and a ZeRO-1
#      run stopped on 3 ranks resumes on 1
#   6. a stuck rank (it stops itself with SIGSTOP at a given step,
#      RETORT_TEST_STALL_AT_STEP): every rank exits non-zero once
#      dist.timeout_s has passed, with a message naming the stuck rank, and the
#      waiting rank idles instead of spinning (its CPU time while waiting is
#      printed and checked); rank 1 stuck on 2 ranks, then rank 0 on 3
#   7. per-task loss weights (lm and kd): 2 ranks x 2 == 1 rank x 4; data.mix
#      stopped on 2 ranks and resumed on 1 == the uninterrupted run
#   8. data.pack (sft): 2 ranks x 2 == 1 rank x 4, and stopped on 2 ranks,
#      resumed on 1
#   9. data.stream: 2 ranks x 2 == 1 rank x 4 (lm, sft with task weights, and
#      packed sft), and streamed runs (lm; data.mix; packed sft) stopped on 2
#      ranks resumed on 1
#  10. ZeRO-2 (dist.zero=2): == ZeRO-1 bit for bit and == plain data parallel
#      on 2 and 3 ranks, with data.grad_accum, LoRA, frozen tensors, data.pack
#      with train.recompute block, DPO and KD; stopped on 2 ranks, resumed on 1
#      and on 3
#  11. ZeRO-3 (dist.zero=3): == ZeRO-2 bit for bit (losses, grad norms and the
#      checkpoint files) on 2 and 3 ranks, GPT-2 and Llama, with LoRA, frozen
#      tensors, train.recompute block, data.grad_accum, data.pack, DPO and KD;
#      stopped on 2 ranks, resumed on 2, 1 and 3; eval.generate_every refused
#  12. dist.overlap (each block's reduction started during backward) ==
#      dist.overlap=false bit for bit (loss and grad_norm as written), with
#      every block its own bucket (dist.bucket_mb=0) and with the default
#      bucket: plain data parallelism and ZeRO-1 on 2 and 3 ranks, with
#      data.grad_accum 2, LoRA, frozen tensors, DPO, KD and data.pack with
#      train.recompute block; stopped on 2 ranks, resumed on 1 and on 3
# Losses are compared with a relative tolerance of 2e-5: the ranks' gradients
# are summed in a fixed order (train/dist.c), but a 4-sequence batch split 2+2
# adds its fp32 contributions in a different order than one 4-row matmul, so
# the runs agree to fp32 reduction-order rounding, not bit for bit (measured:
# up to 7e-9 relative over 8 lm steps, 4e-7 over 8 dpo steps, 8e-6 after 120
# lm steps as the rounding differences compound). Every run uses one thread,
# so the differences are deterministic, not noise. KEEP=1 keeps the run dirs. Prints "tests: P passed, F failed, S skipped".
set -u
BIN=${RETORT_BIN:-./retort}
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIP: mpirun not found; data-parallel training was not run (apt-get install openmpi-bin)"
  echo "tests: 0 passed, 0 failed, 1 skipped"
  exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
TOL=2e-5
dir=$(mktemp -d /tmp/retort-dist-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
pass=0; fail=0

# ---- data: an lm file and a pref file
awk 'BEGIN { srand(3); for (d = 0; d < 40; d++) { s = ""; n = 60 + int(rand() * 80);
       for (i = 0; i < n; i++) s = s sprintf("%c", 97 + (i * 7 + d + int(rand() * 3)) % 26);
       printf "{\"text\": \"%s\"}\n", s } }' > "$dir/lm.jsonl"
awk 'BEGIN { srand(5); for (i = 0; i < 40; i++) {
       printf "{\"prompt\": \"%c%c=\", \"chosen\": \"aab\", \"rejected\": \"xyz\"}\n", 97 + int(rand()*10), 97 + int(rand()*10) } }' > "$dir/pairs.jsonl"
"$BIN" data build --schema lm --input "$dir/lm.jsonl" --out "$dir/lm.h5" -q || exit 1
"$BIN" data build --schema pref --input "$dir/pairs.jsonl" --out "$dir/pairs.h5" -q || exit 1

SMALL="--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.vocab_size=257
  --set model.n_positions=32 --set data.seq_len=16 --set optim.lr=3e-3 --set optim.min_lr=3e-4
  --set optim.warmup_steps=1 --set train.steps=8 --set train.threads=1 --set checkpoint.every=1
  --set checkpoint.keep=0 --set train.log_every=100"

run1() { # out batch extra...
  local out=$1 b=$2; shift 2
  "$BIN" train -c configs/tiny.yaml $SMALL --set data.batch_size="$b" --set train.out_dir="$out" "$@" \
    > "$out.log" 2>&1
}
runN() { # np out batch extra...
  local np=$1 out=$2 b=$3; shift 3
  timeout 300 mpirun --oversubscribe -np "$np" "$BIN" train -c configs/tiny.yaml $SMALL \
    --set data.batch_size="$b" --set train.out_dir="$out" "$@" > "$out.log" 2>&1
}

# compare NAME A B: every step's loss in A/metrics.jsonl vs B/metrics.jsonl
compare() {
  local name=$1 a=$2 b=$3
  local res
  res=$(awk -v tol="$TOL" '
    function loss(line) { match(line, /"loss": [-0-9.e+]+/); return substr(line, RSTART + 8, RLENGTH - 8) + 0 }
    function step(line) { match(line, /"step": [0-9]+/); return substr(line, RSTART + 8, RLENGTH - 8) + 0 }
    FNR == NR { if ($0 ~ /"loss"/) A[step($0)] = loss($0); next }
    $0 ~ /"loss"/ { s = step($0); n++; d = loss($0) - A[s]; if (d < 0) d = -d;
                    r = d / (A[s] < 0 ? -A[s] : A[s]); if (r > worst) worst = r;
                    if (!(s in A) || r > tol) bad++ }
    END { printf "%d steps, max relative difference %.3g%s\n", n, worst, (bad || n == 0) ? " FAIL" : "" }' \
    "$a/metrics.jsonl" "$b/metrics.jsonl" 2>&1)
  if [ -s "$a/metrics.jsonl" ] && [ -s "$b/metrics.jsonl" ] && [[ "$res" != *FAIL* ]]; then
    echo "ok: $name: $res"; pass=$((pass + 1))
  else
    echo "FAIL: $name: $res"; fail=$((fail + 1))
    tail -5 "$b.log" 2>/dev/null
  fi
}

LM="--set data.train=$dir/lm.h5"
run1 "$dir/one4" 4 $LM || { echo "FAIL: single-process run"; cat "$dir/one4.log"; }
runN 2 "$dir/two2" 2 $LM || { echo "FAIL: mpirun -np 2"; tail -20 "$dir/two2.log"; }
compare "lm: 2 ranks x 2 == 1 rank x 4" "$dir/one4" "$dir/two2"
# a Llama-family model (GQA, RMSNorm, RoPE, SwiGLU, untied head) from its
# Hugging Face directory: the same split
LLAMA="$LM --set model.init=tests/fixtures/cli_families/llama"
run1 "$dir/llama4" 4 $LLAMA || { echo "FAIL: single-process llama run"; tail -20 "$dir/llama4.log"; }
runN 2 "$dir/llama2" 2 $LLAMA || { echo "FAIL: mpirun -np 2 llama"; tail -20 "$dir/llama2.log"; }
compare "llama: 2 ranks x 2 == 1 rank x 4" "$dir/llama4" "$dir/llama2"
run1 "$dir/one6" 6 $LM
# (dist.timeout_s=0: no deadline at all, the collectives as usual)
runN 3 "$dir/three2" 2 $LM --set dist.timeout_s=0 || { echo "FAIL: mpirun -np 3"; tail -20 "$dir/three2.log"; }
compare "lm: 3 ranks x 2 == 1 rank x 6" "$dir/one6" "$dir/three2"

# stop at step 3 on 2 ranks, resume on 1 rank (batch 4 = the same global batch)
RETORT_STOP_AT_STEP=3 runN 2 "$dir/stop2" 2 $LM
run1 "$dir/stop2" 4 $LM --resume
compare "lm: stopped on 2 ranks, resumed on 1" "$dir/one4" "$dir/stop2"
# and the reverse
RETORT_STOP_AT_STEP=3 run1 "$dir/stop1" 4 $LM
runN 2 "$dir/stop1" 2 $LM --resume
compare "lm: stopped on 1 rank, resumed on 2" "$dir/one4" "$dir/stop1"

# a real SIGTERM to one rank: every rank stops at the same step boundary and
# rank 0 checkpoints it; the run then resumes on 1 rank to the end. Rank 1
# sends itself the signal at the start of step 5, so the checkpoint is step 5.
LONG="--set train.steps=120 --set checkpoint.every=0"
run1 "$dir/long1" 4 $LM $LONG
RETORT_TEST_SIGNAL_AT_STEP=5 RETORT_TEST_RANK=1 runN 2 "$dir/sig" 2 $LM $LONG; rc=$?
ck=$(ls -d "$dir"/sig/step-* 2>/dev/null | wc -l)
last=$(ls -d "$dir"/sig/step-* 2>/dev/null | tail -1)
if [ $rc -eq 0 ] && [ "$ck" -eq 1 ] && [ -f "$last/DONE" ] && [ "$last" = "$dir/sig/step-00000005" ]; then
  echo "ok: SIGTERM to one of 2 ranks: both stopped, exit 0, one checkpoint ($(basename "$last"))"
  pass=$((pass + 1))
  run1 "$dir/sig" 4 $LM $LONG --resume
  compare "lm: SIGTERM on 2 ranks, resumed on 1, to step 120" "$dir/long1" "$dir/sig"
else
  echo "FAIL: SIGTERM to one rank: exit $rc, $ck checkpoints, last ${last:-none} (step-00000005 expected)"
  fail=$((fail + 1))
  tail -5 "$dir/sig.log"
fi

# a stuck rank: stall NP RANK NEEDLE — rank RANK of NP stops itself at step 4;
# every rank must exit non-zero after dist.timeout_s (3 s; 5 s more for the
# ranks that wait on rank 0) with a message holding NEEDLE, well before the
# 120 s limit, and the waiting rank must have used under half a second of CPU
# per second it waited.
stall() {
  local np=$1 r=$2 needle=$3 out="$dir/stall$1" rc t0 t1
  t0=$(date +%s)
  RETORT_TEST_STALL_AT_STEP=4 RETORT_TEST_RANK=$r timeout 120 mpirun --oversubscribe -np "$np" \
    "$BIN" train -c configs/tiny.yaml $SMALL --set data.batch_size=2 --set train.out_dir="$out" \
    $LM --set train.steps=100000 --set checkpoint.every=0 --set dist.timeout_s=3 > "$out.log" 2>&1
  rc=$?
  t1=$(date +%s)
  # the stopped rank printed its pid; mpirun kills it, but never leave one behind
  local pid
  pid=$(sed -n 's/.*(pid \([0-9]*\)): RETORT_TEST_STALL_AT_STEP.*/\1/p' "$out.log" | head -1)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  local cpu_ok
  cpu_ok=$(sed -n 's/.*this rank waited \([0-9.]*\) s, \([0-9.]*\) s of CPU.*/\1 \2/p' "$out.log" |
    awk 'NF == 2 { n++; if ($2 > 0.5 * $1 || $1 < 3) bad++ } END { print (n > 0 && !bad) ? "yes" : "no" }')
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -lt 128 ] && grep -q "$needle" "$out.log" &&
     grep -q "dist.timeout_s=3" "$out.log" && [ "$cpu_ok" = yes ] && [ $((t1 - t0)) -lt 100 ]; then
    echo "ok: rank $r of $np stuck: every rank exited ($rc) after $((t1 - t0)) s, naming it, without spinning"
    pass=$((pass + 1))
  else
    echo "FAIL: rank $r of $np stuck: exit $rc after $((t1 - t0)) s, CPU check $cpu_ok"
    fail=$((fail + 1))
    grep -v '^ \|^#' "$out.log" | tail -8
  fi
}
stall 2 1 "rank 0: rank 1 did not reach"
stall 3 0 "rank 0 (which gathers every rank's arrival"

# ZeRO-1: the optimizer state sharded over the ranks gives plain data
# parallelism's losses; its checkpoints hold the whole state (resume on 1 rank)
runN 2 "$dir/zero2" 2 $LM --set dist.zero1=true || { echo "FAIL: zero1"; tail -20 "$dir/zero2.log"; }
compare "zero1: 2 ranks == plain data parallel on 2 ranks" "$dir/two2" "$dir/zero2"
RETORT_STOP_AT_STEP=3 runN 3 "$dir/zstop" 2 $LM --set dist.zero1=true
run1 "$dir/zstop" 6 $LM --resume
compare "zero1: stopped on 3 ranks, resumed on 1" "$dir/one6" "$dir/zstop"

# DPO from the single run's checkpoint: pairs split over ranks
init=$(ls -d "$dir"/one4/step-* | tail -1)
DPO="--set objective.type=dpo --set data.train=$dir/pairs.h5 --set model.init=$init --set dpo.beta=0.5 --set data.seq_len=8"
run1 "$dir/dpo4" 4 $DPO || { echo "FAIL: single-process DPO"; tail -20 "$dir/dpo4.log"; }
runN 2 "$dir/dpo2" 2 $DPO || { echo "FAIL: mpirun -np 2 DPO"; tail -20 "$dir/dpo2.log"; }
compare "dpo: 2 ranks x 2 pairs == 1 rank x 4 pairs" "$dir/dpo4" "$dir/dpo2"

# ORPO (reference-free; the chosen rows' prompt tokens are NLL targets too): the same split
ORPO="--set objective.type=orpo --set data.train=$dir/pairs.h5 --set model.init=$init --set orpo.beta=0.5 --set data.seq_len=8"
run1 "$dir/orpo4" 4 $ORPO || { echo "FAIL: single-process ORPO"; tail -20 "$dir/orpo4.log"; }
runN 2 "$dir/orpo2" 2 $ORPO || { echo "FAIL: mpirun -np 2 ORPO"; tail -20 "$dir/orpo2.log"; }
compare "orpo: 2 ranks x 2 pairs == 1 rank x 4 pairs" "$dir/orpo4" "$dir/orpo2"

# per-task loss weights (objective.task_weights) on an sft file with a task
# column: each task's mean is over the step's tokens of that task on every
# rank, so 2 ranks x 2 == 1 rank x 4, for lm and for word-level KD (the
# single run's checkpoint as the teacher); and data.mix (two files as one
# stream) stopped on 2 ranks and resumed on 1 continues the same stream
awk 'BEGIN { srand(7); for (i = 0; i < 48; i++) { a = int(rand() * 9) + 1; b = int(rand() * 9) + 1;
       if (i % 3 == 0) printf "{\"prompt\": \"[e] %d+%d=\", \"completion\": \" %d plus %d is %d\", \"task\": \"explanation\"}\n", a, b, a, b, a + b;
       else printf "{\"prompt\": \"[a] %d+%d=\", \"completion\": \" %d\", \"task\": \"answer\"}\n", a, b, a + b } }' > "$dir/mt.jsonl"
awk 'BEGIN { srand(8); for (i = 0; i < 30; i++) { a = int(rand() * 9) + 1;
       printf "{\"prompt\": \"[a] %d*2=\", \"completion\": \" %d\", \"task\": \"answer\"}\n", a, 2 * a } }' > "$dir/mt2.jsonl"
"$BIN" data build --schema sft --input "$dir/mt.jsonl" --out "$dir/mt.h5" --task-field task -q || exit 1
"$BIN" data build --schema sft --input "$dir/mt2.jsonl" --out "$dir/mt2.h5" --task-field task -q || exit 1
TW=(--set "data.train=$dir/mt.h5" --set 'objective.task_weights={answer: 0.7, explanation: 0.3}')
run1 "$dir/tw4" 4 "${TW[@]}" || { echo "FAIL: single-process task weights"; tail -20 "$dir/tw4.log"; }
runN 2 "$dir/tw2" 2 "${TW[@]}" || { echo "FAIL: mpirun -np 2 task weights"; tail -20 "$dir/tw2.log"; }
compare "task weights (lm): 2 ranks x 2 == 1 rank x 4" "$dir/tw4" "$dir/tw2"
KDTW=("${TW[@]}" --set objective.type=kd --set "kd.teacher=$init" --set kd.alpha=0.5 --set kd.temperature=2)
run1 "$dir/kdtw4" 4 "${KDTW[@]}" || { echo "FAIL: single-process kd task weights"; tail -20 "$dir/kdtw4.log"; }
runN 2 "$dir/kdtw2" 2 "${KDTW[@]}" || { echo "FAIL: mpirun -np 2 kd task weights"; tail -20 "$dir/kdtw2.log"; }
compare "task weights (kd): 2 ranks x 2 == 1 rank x 4" "$dir/kdtw4" "$dir/kdtw2"
MIX=(--set data.train= --set data.val_fraction=0 --set "data.mix=[{path: $dir/mt.h5, weight: 0.6}, {path: $dir/mt2.h5, weight: 0.4}]"
     --set 'objective.task_weights={answer: 0.7, explanation: 0.3}')
run1 "$dir/mix4" 4 "${MIX[@]}" || { echo "FAIL: single-process data.mix"; tail -20 "$dir/mix4.log"; }
RETORT_STOP_AT_STEP=3 runN 2 "$dir/mixstop" 2 "${MIX[@]}"
run1 "$dir/mixstop" 4 "${MIX[@]}" --resume
compare "data.mix: stopped on 2 ranks, resumed on 1" "$dir/mix4" "$dir/mixstop"

# data.pack: the global micro-batch of world x batch rows is packed as one
# group, so 2 ranks x 2 packs and trains the rows of 1 rank x 4; and a packed
# run stopped on 2 ranks resumes on 1 (the held-back example included)
PK=(--set "data.train=$dir/mt.h5" --set data.pack=true --set data.seq_len=32)
run1 "$dir/pk4" 4 "${PK[@]}" || { echo "FAIL: single-process data.pack"; tail -20 "$dir/pk4.log"; }
runN 2 "$dir/pk2" 2 "${PK[@]}" || { echo "FAIL: mpirun -np 2 data.pack"; tail -20 "$dir/pk2.log"; }
compare "data.pack: 2 ranks x 2 == 1 rank x 4" "$dir/pk4" "$dir/pk2"
RETORT_STOP_AT_STEP=3 runN 2 "$dir/pkstop" 2 "${PK[@]}"
run1 "$dir/pkstop" 4 "${PK[@]}" --resume
compare "data.pack: stopped on 2 ranks, resumed on 1" "$dir/pk4" "$dir/pkstop"
# streamed data (data.stream=true): each rank reads only its rows of the
# global batch from disk, in the stateless permuted order, so 2 ranks x 2 ==
# 1 rank x 4, a streamed run stopped on 2 ranks resumes on 1, and the task
# weights, whose task ids each rank now reads for its own rows, agree too
ST=($LM --set data.stream=true)
run1 "$dir/st4" 4 "${ST[@]}" || { echo "FAIL: single-process data.stream"; tail -20 "$dir/st4.log"; }
runN 2 "$dir/st2" 2 "${ST[@]}" || { echo "FAIL: mpirun -np 2 data.stream"; tail -20 "$dir/st2.log"; }
compare "data.stream: 2 ranks x 2 == 1 rank x 4" "$dir/st4" "$dir/st2"
RETORT_STOP_AT_STEP=3 runN 2 "$dir/ststop" 2 "${ST[@]}"
run1 "$dir/ststop" 4 "${ST[@]}" --resume
compare "data.stream: stopped on 2 ranks, resumed on 1" "$dir/st4" "$dir/ststop"
TWS=("${TW[@]}" --set data.stream=true)
run1 "$dir/tws4" 4 "${TWS[@]}" || { echo "FAIL: single-process streamed task weights"; tail -20 "$dir/tws4.log"; }
runN 2 "$dir/tws2" 2 "${TWS[@]}" || { echo "FAIL: mpirun -np 2 streamed task weights"; tail -20 "$dir/tws2.log"; }
compare "data.stream with task weights: 2 ranks x 2 == 1 rank x 4" "$dir/tws4" "$dir/tws2"
MIXS=("${MIX[@]}" --set data.stream=true)
run1 "$dir/mixs4" 4 "${MIXS[@]}" || { echo "FAIL: single-process streamed data.mix"; tail -20 "$dir/mixs4.log"; }
RETORT_STOP_AT_STEP=3 runN 2 "$dir/mixsstop" 2 "${MIXS[@]}"
run1 "$dir/mixsstop" 4 "${MIXS[@]}" --resume
compare "data.stream with data.mix: stopped on 2 ranks, resumed on 1" "$dir/mixs4" "$dir/mixsstop"
# streamed and packed (data.stream=true, data.pack=true): every rank reads
# and packs the whole global group (an example's row depends on every length
# before it), in the streamed order, so 2 ranks x 2 == 1 rank x 4 and a run
# stopped on 2 ranks resumes on 1
PKS=("${PK[@]}" --set data.stream=true)
run1 "$dir/pks4" 4 "${PKS[@]}" || { echo "FAIL: single-process streamed data.pack"; tail -20 "$dir/pks4.log"; }
runN 2 "$dir/pks2" 2 "${PKS[@]}" || { echo "FAIL: mpirun -np 2 streamed data.pack"; tail -20 "$dir/pks2.log"; }
compare "data.stream with data.pack: 2 ranks x 2 == 1 rank x 4" "$dir/pks4" "$dir/pks2"
RETORT_STOP_AT_STEP=3 runN 2 "$dir/pksstop" 2 "${PKS[@]}"
run1 "$dir/pksstop" 4 "${PKS[@]}" --resume
compare "data.stream with data.pack: stopped on 2 ranks, resumed on 1" "$dir/pks4" "$dir/pksstop"

# generation-based evaluation (eval.generate_every) on 2 ranks: rank 0
# generates and sends the numbers, so every rank trains on and agrees on the
# best (eval.best_metric gen/ppl); the gen/ppl lines and the best step match
# the 1-rank run (the same tolerance: the weights differ by reduction order)
awk 'BEGIN { srand(9); for (i = 0; i < 6; i++) { s = ""; for (k = 0; k < 6; k++) s = s sprintf("%c", 97 + int(rand() * 26));
       printf "{\"prompt\": \"%s\", \"reference\": \"%s\"}\n", s, s } }' > "$dir/gen.jsonl"
GEN=($LM --set eval.generate_every=2 --set "eval.generate_input=$dir/gen.jsonl"
     --set eval.generate_max_new_tokens=4 --set eval.best_metric=gen/ppl)
run1 "$dir/gen4" 4 "${GEN[@]}" || { echo "FAIL: single-process generate_every"; tail -20 "$dir/gen4.log"; }
runN 2 "$dir/gen2" 2 "${GEN[@]}" || { echo "FAIL: mpirun -np 2 generate_every"; tail -20 "$dir/gen2.log"; }
compare "generate_every: 2 ranks x 2 == 1 rank x 4 (training)" "$dir/gen4" "$dir/gen2"
res=$(awk -v tol="$TOL" '
  function val(line) { match(line, /"gen\/ppl": [-0-9.e+]+/); return substr(line, RSTART + 11, RLENGTH - 11) + 0 }
  function step(line) { match(line, /"step": [0-9]+/); return substr(line, RSTART + 8, RLENGTH - 8) + 0 }
  FNR == NR { if ($0 ~ /"gen\/ppl"/) A[step($0)] = val($0); next }
  $0 ~ /"gen\/ppl"/ { s = step($0); n++; d = val($0) - A[s]; if (d < 0) d = -d; r = d / A[s];
                      if (r > worst) worst = r; if (!(s in A) || r > tol) bad++ }
  END { printf "%d gen lines, max relative difference %.3g%s\n", n, worst, (bad || n != 4) ? " FAIL" : "" }' \
  "$dir/gen4/metrics.jsonl" "$dir/gen2/metrics.jsonl" 2>&1)
b4=$(grep -o '"step": [0-9]*' "$dir/gen4/best/best.json" 2>/dev/null)
b2=$(grep -o '"step": [0-9]*' "$dir/gen2/best/best.json" 2>/dev/null)
if [[ "$res" != *FAIL* ]] && [ -n "$b4" ] && [ "$b4" = "$b2" ] && [ -f "$dir/gen2/best/DONE" ]; then
  echo "ok: generate_every on 2 ranks: $res, best at ${b2#\"step\": } as on 1 rank"; pass=$((pass + 1))
else
  echo "FAIL: generate_every on 2 ranks: $res; best ${b4:-none} (1 rank) vs ${b2:-none} (2 ranks)"; fail=$((fail + 1))
  tail -5 "$dir/gen2.log"
fi

# ZeRO-2 (dist.zero=2): gradients reduce-scattered block by block during
# backward into each rank's shard. With one micro-step the owner's sum of the
# ranks is the one plain data parallelism and ZeRO-1 form, added to a zeroed
# shard, so the runs must equal ZeRO-1's bit for bit (loss and grad_norm as
# written) and plain data parallelism's within TOL (the norm is summed over
# shards, as ZeRO-1's); with data.grad_accum 2 the ranks' micro-steps are
# summed before they are accumulated, a reduction-order difference (TOL).
# Checkpoints hold the whole state: stopped on 2 ranks, resumed on 1 and on 3.
# identical NAME A B: every step's loss and grad_norm, as written, are the same
identical() {
  local name=$1 a=$2 b=$3
  local fa fb
  fa=$(grep -o '"step": [0-9]*, "loss": [^,]*, "lr": [^,]*, "grad_norm": [^,]*' "$a/metrics.jsonl" 2>/dev/null)
  fb=$(grep -o '"step": [0-9]*, "loss": [^,]*, "lr": [^,]*, "grad_norm": [^,]*' "$b/metrics.jsonl" 2>/dev/null)
  if [ -n "$fa" ] && [ "$fa" = "$fb" ]; then
    echo "ok: $name: $(echo "$fa" | wc -l) steps bit for bit"; pass=$((pass + 1))
  else
    echo "FAIL: $name"; fail=$((fail + 1)); diff <(echo "$fa") <(echo "$fb") | head -4; tail -5 "$b.log" 2>/dev/null
  fi
}
runN 2 "$dir/z2two" 2 $LM --set dist.zero=2 || { echo "FAIL: zero2"; tail -20 "$dir/z2two.log"; }
compare "zero2: 2 ranks == plain data parallel on 2 ranks" "$dir/two2" "$dir/z2two"
identical "zero2: 2 ranks == zero1 on 2 ranks" "$dir/zero2" "$dir/z2two"
if grep -q "ZeRO-2: AdamW state and gradients sharded over 2 ranks" "$dir/z2two.log"; then
  echo "ok: zero2: the run says it shards the gradients"; pass=$((pass + 1))
else
  echo "FAIL: zero2: no ZeRO-2 line in the log"; fail=$((fail + 1))
fi
runN 3 "$dir/z2three" 2 $LM --set dist.zero=2 || { echo "FAIL: zero2 np 3"; tail -20 "$dir/z2three.log"; }
compare "zero2: 3 ranks == plain data parallel on 3 ranks" "$dir/three2" "$dir/z2three"
runN 3 "$dir/acc3" 1 $LM --set data.grad_accum=2 || { echo "FAIL: grad_accum np 3"; tail -20 "$dir/acc3.log"; }
runN 3 "$dir/z2acc3" 1 $LM --set data.grad_accum=2 --set dist.zero=2 || { echo "FAIL: zero2 grad_accum"; tail -20 "$dir/z2acc3.log"; }
compare "zero2 with data.grad_accum 2: 3 ranks == plain data parallel" "$dir/acc3" "$dir/z2acc3"
runN 2 "$dir/z2llama" 2 $LLAMA --set dist.zero=2 --set finetune.lora_r=4 || { echo "FAIL: zero2 lora"; tail -20 "$dir/z2llama.log"; }
runN 2 "$dir/llamalora" 2 $LLAMA --set finetune.lora_r=4 || { echo "FAIL: lora np 2"; tail -20 "$dir/llamalora.log"; }
compare "zero2 with LoRA (llama): 2 ranks == plain data parallel" "$dir/llamalora" "$dir/z2llama"
runN 2 "$dir/z2frozen" 2 $LM --set dist.zero=2 --set 'finetune.freeze=wte.weight,h.0.*' || { echo "FAIL: zero2 frozen"; tail -20 "$dir/z2frozen.log"; }
runN 2 "$dir/frozen" 2 $LM --set 'finetune.freeze=wte.weight,h.0.*' || { echo "FAIL: frozen np 2"; tail -20 "$dir/frozen.log"; }
compare "zero2 with frozen tensors: 2 ranks == plain data parallel" "$dir/frozen" "$dir/z2frozen"
runN 2 "$dir/z2pk" 2 "${PK[@]}" --set dist.zero=2 --set train.recompute=block || { echo "FAIL: zero2 pack"; tail -20 "$dir/z2pk.log"; }
compare "zero2 with data.pack and train.recompute block: 2 ranks == plain data parallel" "$dir/pk2" "$dir/z2pk"
runN 2 "$dir/z2dpo" 2 $DPO --set dist.zero=2 || { echo "FAIL: zero2 dpo"; tail -20 "$dir/z2dpo.log"; }
compare "zero2 dpo: 2 ranks == plain data parallel" "$dir/dpo2" "$dir/z2dpo"
runN 2 "$dir/z2kd" 2 "${KDTW[@]}" --set dist.zero=2 || { echo "FAIL: zero2 kd"; tail -20 "$dir/z2kd.log"; }
compare "zero2 kd: 2 ranks == plain data parallel" "$dir/kdtw2" "$dir/z2kd"
RETORT_STOP_AT_STEP=3 runN 2 "$dir/z2stop1" 2 $LM --set dist.zero=2
run1 "$dir/z2stop1" 4 $LM --resume
compare "zero2: stopped on 2 ranks, resumed on 1" "$dir/one4" "$dir/z2stop1"
RETORT_STOP_AT_STEP=3 runN 2 "$dir/z2stop3" 3 $LM --set dist.zero=2
runN 3 "$dir/z2stop3" 2 $LM --set dist.zero=2 --resume
compare "zero2: stopped on 2 ranks, resumed on 3" "$dir/one6" "$dir/z2stop3"

# ZeRO-3 (dist.zero=3): the parameters sharded too, each block's all-gathered
# into the model's window before its forward and backward (and its
# recomputation). The gathered values are the owners' bits and AdamW runs
# the same update on the same shard, so every run equals its ZeRO-2 run bit
# for bit (loss and grad_norm as written), and its checkpoints (model and
# optimizer files) byte for byte: a save gathers the whole parameters, so
# they do not depend on the sharding. Stopped on 2 ranks, resumed on 2 (bit
# for bit), on 1 and on 3 (within TOL: the world size changes the sums).
same_files() { # NAME A B: the last checkpoint's model and optimizer files, byte for byte
  local name=$1 a=$2/step-00000008 b=$3/step-00000008
  if cmp -s "$a/model.safetensors" "$b/model.safetensors" &&
     cmp -s "$a/optimizer.safetensors" "$b/optimizer.safetensors"; then
    echo "ok: $name: the checkpoints are the same bytes"; pass=$((pass + 1))
  else
    echo "FAIL: $name: the checkpoints differ"; fail=$((fail + 1))
  fi
}
runN 2 "$dir/z3two" 2 $LM --set dist.zero=3 || { echo "FAIL: zero3"; tail -20 "$dir/z3two.log"; }
identical "zero3: 2 ranks == zero2 on 2 ranks" "$dir/z2two" "$dir/z3two"
same_files "zero3 vs zero2 on 2 ranks" "$dir/z2two" "$dir/z3two"
if grep -q "ZeRO-3: AdamW state, gradients and parameters sharded over 2 ranks" "$dir/z3two.log"; then
  echo "ok: zero3: the run says it shards the parameters"; pass=$((pass + 1))
else
  echo "FAIL: zero3: no ZeRO-3 line in the log"; fail=$((fail + 1))
fi
runN 3 "$dir/z3three" 2 $LM --set dist.zero=3 || { echo "FAIL: zero3 np 3"; tail -20 "$dir/z3three.log"; }
identical "zero3: 3 ranks == zero2 on 3 ranks" "$dir/z2three" "$dir/z3three"
same_files "zero3 vs zero2 on 3 ranks" "$dir/z2three" "$dir/z3three"
runN 3 "$dir/z3acc3" 1 $LM --set data.grad_accum=2 --set dist.zero=3 || { echo "FAIL: zero3 grad_accum"; tail -20 "$dir/z3acc3.log"; }
identical "zero3 with data.grad_accum 2: 3 ranks == zero2" "$dir/z2acc3" "$dir/z3acc3"
runN 2 "$dir/z3llama" 2 $LLAMA --set dist.zero=3 --set finetune.lora_r=4 || { echo "FAIL: zero3 lora"; tail -20 "$dir/z3llama.log"; }
identical "zero3 with LoRA (llama): 2 ranks == zero2" "$dir/z2llama" "$dir/z3llama"
same_files "zero3 vs zero2 with LoRA (llama)" "$dir/z2llama" "$dir/z3llama"
runN 3 "$dir/z2llama3" 2 $LLAMA --set dist.zero=2 --set train.recompute=block || { echo "FAIL: zero2 llama np 3"; tail -20 "$dir/z2llama3.log"; }
runN 3 "$dir/z3llama3" 2 $LLAMA --set dist.zero=3 --set train.recompute=block || { echo "FAIL: zero3 llama np 3"; tail -20 "$dir/z3llama3.log"; }
identical "zero3 llama with train.recompute block: 3 ranks == zero2" "$dir/z2llama3" "$dir/z3llama3"
same_files "zero3 vs zero2 llama on 3 ranks" "$dir/z2llama3" "$dir/z3llama3"
runN 2 "$dir/z3frozen" 2 $LM --set dist.zero=3 --set 'finetune.freeze=wte.weight,h.0.*' || { echo "FAIL: zero3 frozen"; tail -20 "$dir/z3frozen.log"; }
identical "zero3 with frozen tensors: 2 ranks == zero2" "$dir/z2frozen" "$dir/z3frozen"
runN 2 "$dir/z3pk" 2 "${PK[@]}" --set dist.zero=3 --set train.recompute=block || { echo "FAIL: zero3 pack"; tail -20 "$dir/z3pk.log"; }
identical "zero3 with data.pack and train.recompute block: 2 ranks == zero2" "$dir/z2pk" "$dir/z3pk"
runN 2 "$dir/z3dpo" 2 $DPO --set dist.zero=3 || { echo "FAIL: zero3 dpo"; tail -20 "$dir/z3dpo.log"; }
identical "zero3 dpo: 2 ranks == zero2" "$dir/z2dpo" "$dir/z3dpo"
runN 2 "$dir/z3kd" 2 "${KDTW[@]}" --set dist.zero=3 || { echo "FAIL: zero3 kd"; tail -20 "$dir/z3kd.log"; }
identical "zero3 kd: 2 ranks == zero2" "$dir/z2kd" "$dir/z3kd"
# validation (every rank runs its forwards, so every rank gathers) and the
# best model, whose save gathers the parameters as a checkpoint's does
VAL=($LM --set data.val_fraction=0.2 --set eval.every=2 --set eval.best_metric=val_loss)
runN 2 "$dir/z2val" 2 "${VAL[@]}" --set dist.zero=2 || { echo "FAIL: zero2 val"; tail -20 "$dir/z2val.log"; }
runN 2 "$dir/z3val" 2 "${VAL[@]}" --set dist.zero=3 || { echo "FAIL: zero3 val"; tail -20 "$dir/z3val.log"; }
identical "zero3 with validation: 2 ranks == zero2" "$dir/z2val" "$dir/z3val"
if [ "$(grep -o '"val_loss": [^,}]*' "$dir/z2val/metrics.jsonl")" = "$(grep -o '"val_loss": [^,}]*' "$dir/z3val/metrics.jsonl")" ] &&
   grep -q val_loss "$dir/z3val/metrics.jsonl" &&
   cmp -s "$dir/z2val/best/model.safetensors" "$dir/z3val/best/model.safetensors"; then
  echo "ok: zero3: validation losses and the best model equal zero2's"; pass=$((pass + 1))
else
  echo "FAIL: zero3: validation losses or the best model differ from zero2's"; fail=$((fail + 1))
fi
RETORT_STOP_AT_STEP=3 runN 2 "$dir/z3stop2" 2 $LM --set dist.zero=3
runN 2 "$dir/z3stop2" 2 $LM --set dist.zero=3 --resume
identical "zero3: stopped on 2 ranks, resumed on 2" "$dir/z3two" "$dir/z3stop2"
RETORT_STOP_AT_STEP=3 runN 2 "$dir/z3stop1" 2 $LM --set dist.zero=3
run1 "$dir/z3stop1" 4 $LM --resume
compare "zero3: stopped on 2 ranks, resumed on 1" "$dir/one4" "$dir/z3stop1"
RETORT_STOP_AT_STEP=3 runN 2 "$dir/z3stop3" 3 $LM --set dist.zero=3
runN 3 "$dir/z3stop3" 2 $LM --set dist.zero=3 --resume
compare "zero3: stopped on 2 ranks, resumed on 3" "$dir/one6" "$dir/z3stop3"
# generation runs on rank 0 alone: refused with ZeRO-3, naming the way out
if runN 2 "$dir/z3gen" 2 "${GEN[@]}" --set dist.zero=3; then
  echo "FAIL: dist.zero=3 with eval.generate_every was accepted"; fail=$((fail + 1))
elif grep -q "set eval.generate_every 0" "$dir/z3gen.log"; then
  echo "ok: dist.zero=3 with eval.generate_every is refused with the way out"; pass=$((pass + 1))
else
  echo "FAIL: dist.zero=3 with eval.generate_every: unexpected message"; fail=$((fail + 1)); tail -5 "$dir/z3gen.log"
fi

# dist.overlap: the reduction of each block's gradient starts as its backward
# ends and is waited before clipping; only the step's last backward reduces,
# so the micro-steps accumulate locally as without overlap, and each element
# is summed by one owner in rank order as before: the runs must equal
# dist.overlap=false bit for bit. (Every run above also overlaps, by default,
# with 25 MiB buckets: one bucket per step for these models.)
overlap_pair() { # NAME NP BATCH ARGS...: off vs every block its own bucket
  local name=$1 np=$2 b=$3; shift 3
  local tag=${name//[^a-z0-9]/}
  runN "$np" "$dir/ovoff$tag" "$b" "$@" --set dist.overlap=false || { echo "FAIL: $name (off)"; tail -20 "$dir/ovoff$tag.log"; }
  runN "$np" "$dir/ovon$tag" "$b" "$@" --set dist.bucket_mb=0 || { echo "FAIL: $name (on)"; tail -20 "$dir/ovon$tag.log"; }
  identical "overlap: $name == dist.overlap=false" "$dir/ovoff$tag" "$dir/ovon$tag"
}
overlap_pair "lm on 2 ranks" 2 2 $LM
identical "overlap: lm on 2 ranks, 25 MiB buckets == dist.overlap=false" "$dir/ovofflmon2ranks" "$dir/two2"
if grep -q "gradient reduction overlapped with the backward pass" "$dir/ovonlmon2ranks.log" &&
   ! grep -q "gradient reduction overlapped" "$dir/ovofflmon2ranks.log"; then
  echo "ok: overlap: the run says it overlaps (and the run without does not)"; pass=$((pass + 1))
else
  echo "FAIL: overlap: setup line"; fail=$((fail + 1))
fi
overlap_pair "lm on 3 ranks" 3 2 $LM
overlap_pair "zero1 on 2 ranks" 2 2 $LM --set dist.zero=1
overlap_pair "zero1 on 3 ranks" 3 2 $LM --set dist.zero=1
overlap_pair "grad accum 2 on 3 ranks" 3 1 $LM --set data.grad_accum=2
overlap_pair "zero1 grad accum 2 on 3 ranks" 3 1 $LM --set data.grad_accum=2 --set dist.zero=1
overlap_pair "llama lora on 2 ranks" 2 2 $LLAMA --set finetune.lora_r=4
overlap_pair "frozen on 3 ranks" 3 2 $LM --set 'finetune.freeze=wte.weight,h.0.*'
overlap_pair "dpo on 2 ranks" 2 2 $DPO --set data.grad_accum=2
overlap_pair "kd on 2 ranks" 2 2 "${KDTW[@]}" --set dist.zero=1
overlap_pair "pack recompute on 2 ranks" 2 2 "${PK[@]}" --set train.recompute=block
# stop/resume across world sizes: stopped on 2 ranks, resumed on 1 and on 3,
# overlapped throughout, against the uninterrupted runs
RETORT_STOP_AT_STEP=3 runN 2 "$dir/ovstop1" 2 $LM --set dist.bucket_mb=0 --set dist.zero=1
run1 "$dir/ovstop1" 4 $LM --resume
compare "overlap: zero1 stopped on 2 ranks, resumed on 1" "$dir/one4" "$dir/ovstop1"
RETORT_STOP_AT_STEP=3 runN 2 "$dir/ovstop3" 3 $LM --set dist.bucket_mb=0
runN 3 "$dir/ovstop3" 2 $LM --set dist.bucket_mb=0 --resume
compare "overlap: stopped on 2 ranks, resumed on 3" "$dir/one6" "$dir/ovstop3"
# and resumed on 3 ranks with the overlap is the same as resumed without
RETORT_STOP_AT_STEP=3 runN 2 "$dir/ovstop3off" 3 $LM --set dist.bucket_mb=0
runN 3 "$dir/ovstop3off" 2 $LM --set dist.overlap=false --resume
identical "overlap: resumed on 3 ranks == resumed on 3 ranks with dist.overlap=false" "$dir/ovstop3off" "$dir/ovstop3"

echo "tests: $pass passed, $fail failed, 0 skipped"
[ $fail -eq 0 ]
