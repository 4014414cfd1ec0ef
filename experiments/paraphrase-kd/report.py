#!/usr/bin/env python3
"""The paraphrase-kd results table (python3 stdlib; run.sh prints it to out/table.md).

    report.py --dir experiments/paraphrase-kd/out --seqkd-dir experiments/seq-kd/out [--seeds "1 2 3"]

Reads the make_task.py score files (../seq-kd/make_task.py: multi-reference BLEU,
validity, and for sampled evaluations the validity of every sample and the distinct
valid outputs per source, the repeat % of valid pairs) and retort eval's metrics files
(self-BLEU). The repeat % (of all pairs of valid samples of one source, the share that
are identical) measures diversity among the valid outputs alone; self-BLEU is also
lowered by wrong outputs. Greedy scores of
the teacher and of the gold and beam (seq-KD) students are seq-kd's own evaluations;
everything sampled is this experiment's. Each cell is the mean ± sample standard
deviation over the seeds (student training seed = candidate sampling seed = eval
sampling seed; the teacher is one model, so its spread is the sampling seed's alone),
followed by a per-seed table.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "seq-kd"))
from make_task import (gold_pair_repeat, load_json, mean_sd, min_max, params_of,  # noqa: E402
                       seed_values)

# key, label, where its greedy evaluation lives ("seqkd": seq-kd's eval/ under its own name)
ROWS = [("teacher", "teacher (gold data)", ("seqkd", "teacher")),
        ("gold", "student: gold targets", ("seqkd", "gold")),
        ("beam", "student: teacher's best beam (seq-KD)", ("seqkd", "seqkd")),
        ("sampled", "student: K sampled teacher candidates", ("own", "sampled")),
        ("nbest", "student: teacher's K-best beams", ("own", "nbest"))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--seqkd-dir", required=True)
    ap.add_argument("--seeds", default="1 2 3")
    a = ap.parse_args()
    seeds = a.seeds.split()
    cols = [("greedy", "greedy.score.json", "bleu_multi", "BLEU greedy"),
            ("greedy", "greedy.score.json", "valid", "valid % greedy"),
            ("sampled", "sampled.score.json", "sample_bleu_multi", "BLEU samples"),
            ("sampled", "sampled.score.json", "sample_valid", "valid % samples"),
            ("sampled", "sampled.metrics.json", "self_bleu", "self-BLEU (lower = more diverse)"),
            ("sampled", "sampled.score.json", "distinct_valid", "distinct valid / source"),
            ("sampled", "sampled.score.json", "distinct", "distinct / source"),
            ("sampled", "sampled.score.json", "valid_pair_repeat", "repeat % of valid pairs (lower = more diverse)")]

    def where(row, kind):
        key, _, (home, gkey) = row
        if kind == "greedy":
            d = a.seqkd_dir if home == "seqkd" else a.dir
            names = [gkey] if gkey == "teacher" else [f"{gkey}-s{s}" for s in seeds]
        else:
            d, names = a.dir, [f"{key}-s{s}" for s in seeds]
        return d, names

    def params(row):
        key, _, (home, gkey) = row
        if key == "teacher":
            return params_of(a.seqkd_dir, "teacher.log")
        d = a.seqkd_dir if home == "seqkd" else a.dir
        return params_of(d, f"student-{gkey}-s{seeds[0]}.log")

    print(f"Mean ± sample standard deviation over seeds {', '.join(seeds)} "
          f"(n = seeds with a sampled evaluation).\n")
    print("| model | params | n | " + " | ".join(c[3] for c in cols) + " |")
    print("|---|---:|---:|" + "---:|" * len(cols))
    for row in ROWS:
        d, names = where(row, "sampled")
        n = len(seed_values(d, names, "sampled.score.json", "sample_valid"))
        if not n:
            print(f"| {row[1]} | {params(row)} | 0 | (not run) |" + " |" * (len(cols) - 1))
            continue
        cells = []
        for kind, suffix, field, _ in cols:
            dd, nn = where(row, kind)
            digits = 2 if field.startswith("distinct") else 1
            cells.append(mean_sd(seed_values(dd, nn, suffix, field), digits))
        print(f"| {row[1]} | {params(row)} | {n} | " + " | ".join(cells) + " |")

    lex = load_json(os.path.join(a.seqkd_dir, "task", "lexicon.json"))
    with open(os.path.join(a.seqkd_dir, "task", "test.jsonl")) as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    print(f"\nThe gold distribution itself (register and synonyms uniform) repeats "
          f"{gold_pair_repeat(lex, prompts):.1f} % of pairs on these test sources.")
    print("\nPer seed (BLEU greedy / self-BLEU / repeat % of valid pairs), and ranges:\n")
    print("| model | " + " | ".join(f"seed {s}" for s in seeds) +
          " | range BLEU greedy | range self-BLEU | range repeat % |")
    print("|---|" + "---:|" * (len(seeds) + 3))
    for row in ROWS:
        gd, gnames = where(row, "greedy")
        sd_, snames = where(row, "sampled")
        cells = []
        for i, name in enumerate(snames):
            g = load_json(os.path.join(gd, "eval", f"{gnames[min(i, len(gnames) - 1)]}.greedy.score.json"))
            m = load_json(os.path.join(sd_, "eval", f"{name}.sampled.metrics.json"))
            s = load_json(os.path.join(sd_, "eval", f"{name}.sampled.score.json"))
            rep = s and s.get("valid_pair_repeat")
            cells.append(f"{g['bleu_multi']:.1f} / {m['self_bleu']:.1f} / "
                         f"{'' if rep is None else f'{rep:.1f}'}" if g and m and s else "")
        print(f"| {row[1]} | " + " | ".join(cells) +
              f" | {min_max(seed_values(gd, gnames, 'greedy.score.json', 'bleu_multi'))}"
              f" | {min_max(seed_values(sd_, snames, 'sampled.metrics.json', 'self_bleu'))}"
              f" | {min_max(seed_values(sd_, snames, 'sampled.score.json', 'valid_pair_repeat'))} |")


if __name__ == "__main__":
    main()
