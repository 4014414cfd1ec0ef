"""tests/check_tensorboard.py OUT_DIR — reads OUT_DIR's TensorBoard event file
with TensorBoard's own reader (EventAccumulator) and checks that it holds
every number of OUT_DIR/metrics.jsonl, under the same name at the same step,
as the float32 it rounds to. Exit 0 when all match, 1 otherwise, 77 (skip)
when tensorboard is not installed. Run by tests/test_tensorboard.c."""
import glob
import json
import struct
import sys

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    print("SKIP: tensorboard is not installed in .venv (make .venv/bin/python installs it)")
    sys.exit(77)

out_dir = sys.argv[1]
files = glob.glob(f"{out_dir}/events.out.tfevents.*")
if len(files) != 1:
    sys.exit(f"expected one event file in {out_dir}, found {files}")
acc = EventAccumulator(files[0], size_guidance={"scalars": 0})
acc.Reload()
got = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}

want = {}
with open(f"{out_dir}/metrics.jsonl") as f:
    for line in f:
        rec = json.loads(line)
        for key, v in rec.items():
            if key == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            want.setdefault(key, {})[rec["step"]] = struct.unpack("f", struct.pack("f", v))[0]

bad = 0
if set(got) != set(want):
    print(f"tags differ: tensorboard {sorted(got)}, metrics.jsonl {sorted(want)}")
    bad += 1
n = 0
for tag, steps in want.items():
    for step, v in steps.items():
        n += 1
        if got.get(tag, {}).get(step) != v:
            print(f"{tag} at step {step}: tensorboard {got.get(tag, {}).get(step)}, "
                  f"metrics.jsonl {v}")
            bad += 1
print(f"tensorboard: {n} scalars over {len(want)} tags read by EventAccumulator, "
      f"{bad} mismatches")
sys.exit(1 if bad else 0)
