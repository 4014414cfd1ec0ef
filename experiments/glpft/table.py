"""experiments/glpft/table.py OUT SEED... — the GLPFT experiment's table: for
each setup and metric the mean ± sample standard deviation over the seeds
(out/seed-S/<setup>.json, written by `retort agent --metrics`), then each
seed's Act EM and success, and each stage's final training loss (the mean of
its last five logged losses, averaged over seeds)."""
import json
import statistics
import sys

COLS = [("planning_accuracy", "Plan acc"), ("action_em", "Act EM"),
        ("tool_name_accuracy", "Tool name"), ("hallucination_rate", "Halluc."),
        ("arg_f1", "Arg F1"), ("rouge_l", "ROUGE-L"), ("success_rate", "Success (e2e)"),
        ("e2e_rouge_l", "e2e ROUGE-L")]
SETUPS = [("single", "(i) single model", ["all"]),
          ("multi", "(ii) 3 models, no global", ["planner", "caller", "summarizer"]),
          ("glpft", "(iii) GLPFT", ["planner", "caller", "summarizer"])]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def final_loss(path):
    losses = []
    try:
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if "loss" in rec:
                    losses.append(rec["loss"])
    except FileNotFoundError:
        return None
    return statistics.mean(losses[-5:]) if losses else None


def spread(values):
    if not values:
        return "-"
    m = statistics.mean(values)
    if len(values) < 2:
        return f"{m:.2f}"
    return f"{m:.2f} ± {statistics.stdev(values):.2f}"


def main():
    out, seeds = sys.argv[1], sys.argv[2:]
    print(f"Mean ± sample standard deviation over seeds {', '.join(seeds)} (percent).\n")
    print("| setup | seeds | " + " | ".join(c[1] for c in COLS) + " | train loss |")
    print("|---|---|" + "---|" * (len(COLS) + 1))
    per_seed = {}
    for name, label, stages in SETUPS:
        runs = [(s, load(f"{out}/seed-{s}/{name}.json")) for s in seeds]
        runs = [(s, m) for s, m in runs if m is not None]
        if not runs:
            continue
        per_seed[label] = runs
        cells = []
        for key, _ in COLS:
            vals = [m[key] * 100 for _, m in runs if m.get(key) is not None]
            cells.append(spread(vals))
        losses = []
        for st in stages:
            vals = [final_loss(f"{out}/seed-{s}/{name}/{st}/metrics.jsonl") for s, _ in runs]
            vals = [v for v in vals if v is not None]
            losses.append(f"{statistics.mean(vals):.2f}" if vals else "-")
        print(f"| {label} | {len(runs)} | " + " | ".join(cells) + " | " + " / ".join(losses) + " |")
    print("\nPer seed (Act EM / Success e2e, percent):\n")
    print("| setup | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|" + "---|" * len(seeds))
    for label, runs in per_seed.items():
        by = dict(runs)
        cells = [f"{by[s]['action_em'] * 100:.2f} / {by[s]['success_rate'] * 100:.2f}"
                 if s in by else "-" for s in seeds]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
