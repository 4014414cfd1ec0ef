#!/usr/bin/env python3
"""Synthetic lookup-then-add task for the MT-CoT experiment (python3 stdlib only).

K symbols (A, B, ...) each carry a hidden digit value, fixed for the whole task.
A question is three symbols joined by '+', e.g. "C+H+M"; its answer is the sum of
their values (0..27). The gold explanation writes the lookups and the two
additions: "C=4 H=7 M=2 4+7=11 11+2=13" (its last number is the answer).

  gen    write the task files (teacher SFT data, student questions, test prompts)
  check  how many of an explanation JSONL's explanations are fully right
         (every lookup and sum) vs only right in their final answer
  table  mean ± sd over seeds of the students' answer accuracy (eval metrics)
  stats  students against a baseline: difference, permutation test, seeds won
  shuffle  the controls: every question paired with another question's gold explanation
         (train_shuffled_expl.jsonl), and the same with random digits (train_random_expl.jsonl)
  lookups  how often written lookups "X=d" are true, and copy the question's symbols
"""
import argparse
import glob
import json
import math
import os
import random
import re
import statistics
import sys

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# the teacher's prompts; run.sh passes the same strings to `retort explain`
COT_TEMPLATE = "Q {question}\nE "
RAT_TEMPLATE = "Q {question} ={answer}\nE "


def explanation(q, values):
    syms = q.split("+")
    v = [values[s] for s in syms]
    parts = [f"{s}={values[s]}" for s in syms]
    acc = v[0]
    for x in v[1:]:
        parts.append(f"{acc}+{x}={acc + x}")
        acc += x
    return " ".join(parts), acc


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def cmd_gen(a):
    rng = random.Random(a.seed)
    syms = LETTERS[: a.symbols]
    values = {s: rng.randrange(10) for s in syms}
    allq = [f"{x}+{y}+{z}" for x in syms for y in syms for z in syms]
    rng.shuffle(allq)
    need = a.teacher + a.train + a.test
    if need > len(allq):
        sys.exit(f"make_task: {need} questions asked, only {len(allq)} exist")
    tq = allq[: a.teacher]
    sq = allq[a.teacher : a.teacher + a.train]
    eq = allq[a.teacher + a.train : need]
    os.makedirs(a.out, exist_ok=True)
    json.dump({"values": values, "cot_template": COT_TEMPLATE, "rationalize_template": RAT_TEMPLATE},
              open(os.path.join(a.out, "values.json"), "w"), indent=1)
    # teacher: gold explanations of its own questions, in both prompt formats
    rows = []
    for q in tq:
        e, ans = explanation(q, values)
        rows.append({"prompt": COT_TEMPLATE.format(question=q), "completion": e})
        rows.append({"prompt": RAT_TEMPLATE.format(question=q, answer=ans), "completion": e})
    rng.shuffle(rows)
    write_jsonl(os.path.join(a.out, "teacher_sft.jsonl"), rows)
    # student questions: gold answers only (the explanations come from the teacher)
    write_jsonl(os.path.join(a.out, "train_q.jsonl"),
                [{"question": q, "answer": explanation(q, values)[1]} for q in sq])
    # gold explanations of the student questions (a reference condition, not the paper's)
    write_jsonl(os.path.join(a.out, "train_gold_expl.jsonl"),
                [{"question": q, "answer": explanation(q, values)[1],
                  "explanation": explanation(q, values)[0], "correct": True} for q in sq])
    # held-out test: the student is asked with the answer prefix
    write_jsonl(os.path.join(a.out, "test.jsonl"),
                [{"prompt": f"[answer] {q}\n", "reference": str(explanation(q, values)[1]),
                  "question": q} for q in eq])
    write_jsonl(os.path.join(a.out, "test_q.jsonl"),
                [{"question": q, "answer": explanation(q, values)[1]} for q in eq])
    print(f"{len(syms)} symbols, values {values}; teacher {len(tq)} questions "
          f"({len(rows)} sft lines), student {len(sq)}, test {len(eq)}")


def cmd_check(a):
    values = json.load(open(os.path.join(a.task, "values.json")))["values"]
    n = full = ans_ok = 0
    by_mode = {}
    for line in open(a.expl):
        if not line.strip():
            continue
        r = json.loads(line)
        gold, _ = explanation(r["question"], values)
        n += 1
        exact = r["explanation"].strip() == gold
        full += exact
        ans_ok += bool(r.get("correct"))
        m = by_mode.setdefault(r.get("mode", "?"), [0, 0, 0])
        m[0] += 1
        m[1] += exact
        m[2] += bool(r.get("correct"))
    out = {"file": a.expl, "explanations": n, "answer_correct": ans_ok, "fully_correct": full,
           "by_mode": {k: {"n": v[0], "fully_correct": v[1], "answer_correct": v[2]}
                       for k, v in by_mode.items()}}
    print(json.dumps(out))


def fmt(xs, digits=1):
    if not xs:
        return "–"
    m = statistics.mean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def acc_of(path):
    if not os.path.exists(path):
        return None
    m = json.load(open(path))
    return 100.0 * m["accuracy"]


def cmd_table(a):
    seeds = a.seeds.split()
    print("| student | α (answer) | explanations: answer right % | explanations: every step right % "
          "| answer accuracy % ([answer] prefix) | per seed | accuracy % of its explanations "
          "([explain] prefix) |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for name in a.names.split():
        kind, _, alpha = name.partition("-a")
        accs, eaccs, right, full = [], [], [], []
        for s in seeds:
            x = acc_of(os.path.join(a.dir, "eval", f"{name}-s{s}.metrics.json"))
            if x is not None:
                accs.append(x)
            x = acc_of(os.path.join(a.dir, "eval", f"{name}-s{s}.explain.metrics.json"))
            if x is not None:
                eaccs.append(x)
            c = os.path.join(a.dir, "expl", f"{kind}-s{s}.check.json")
            if os.path.exists(c):
                c = json.load(open(c))
                right.append(100.0 * c["answer_correct"] / c["explanations"])
                full.append(100.0 * c["fully_correct"] / c["explanations"])
        if kind == "gold":
            right, full = [100.0], [100.0]
        control = kind.startswith(("shuffled", "random")) or kind == "answer250"
        label = {"answer": "answer-only", "cot": "MT: CoT", "rationalize": "MT: rationalization",
                 "crop": "MT: CROP", "gold": "MT: gold explanations (reference)",
                 "shuffled": "control: another question's gold explanation + own answer",
                 "shuffled-eonly": "control: another question's gold explanation, no answer",
                 "random-eonly": "control: another question's explanation, random digits, no answer",
                 "answer250": "answer-only, 250 steps"}.get(kind, kind)
        no_expl = kind == "answer" or control
        print(f"| {label} | {alpha or '1 (one task)'} | {'–' if no_expl else fmt(right)} "
              f"| {'–' if no_expl else fmt(full)} | **{fmt(accs)}** "
              f"| {' / '.join(f'{x:.1f}' for x in accs)} | {fmt(eaccs)} |")


def cmd_stats(a):
    """Each named student against a baseline over the same seeds: the mean difference, a
    one-sided exact permutation test of it (unpaired: all splits of the 2n runs), and in how
    many seeds the student beats the baseline trained with the same seed."""
    import itertools
    seeds = a.seeds.split()

    def accs(n):
        return [acc_of(os.path.join(a.dir, "eval", f"{n}-s{s}.metrics.json")) for s in seeds]

    base = accs(a.baseline)
    for name in a.names.split():
        b = accs(name)
        d = statistics.mean(b) - statistics.mean(base)
        pool, n = base + b, len(b)
        hit = tot = 0
        for idx in itertools.combinations(range(2 * n), n):
            x = [pool[i] for i in idx]
            y = [pool[i] for i in range(2 * n) if i not in idx]
            tot += 1
            hit += (statistics.mean(x) - statistics.mean(y)) >= d - 1e-9
        wins = sum(bb > aa for aa, bb in zip(base, b))
        print(f"{name} - {a.baseline}: {d:+.1f} points, one-sided permutation p = {hit / tot:.3f}, "
              f"better in {wins}/{n} seeds; per seed {' '.join(f'{y - x:+.1f}' for x, y in zip(base, b))}")


def cmd_lookups(a):
    """Of the "X=d" lookups written in explanation files (field --field), how many give the
    true value of the symbol written, and how many of the first three copy the question's
    symbol in place."""
    values = json.load(open(os.path.join(a.task, "values.json")))["values"]
    tot = ok = copied = slots = 0
    for path in a.files:
        for line in open(path):
            if not line.strip():
                continue
            r = json.loads(line)
            qs = r["question"].split("+")
            pairs = re.findall(r"\b([A-Z])=(\d+)", r[a.field])
            for i, (sym, d) in enumerate(pairs):
                tot += 1
                ok += values.get(sym) == int(d)
            for i in range(3):
                slots += 1
                copied += i < len(pairs) and pairs[i][0] == qs[i]
    print(f"{len(a.files)} files: {ok}/{tot} written lookups give the written symbol's true value "
          f"({100.0 * ok / max(tot, 1):.1f} %); {copied}/{slots} of the three symbol slots copy the "
          f"question's symbol ({100.0 * copied / max(slots, 1):.1f} %)")


def cmd_shuffle(a):
    """A control: each student question paired with the gold explanation of ANOTHER student
    question (a fixed derangement), so the explanation task has the right text distribution
    but says nothing about its question."""
    rows = [json.loads(l) for l in open(os.path.join(a.task, "train_gold_expl.jsonl")) if l.strip()]
    rng = random.Random(a.seed)
    perm = list(range(len(rows)))
    while any(i == p for i, p in enumerate(perm)):
        rng.shuffle(perm)
    out = [dict(r, explanation=rows[p]["explanation"], correct=False) for r, p in zip(rows, perm)]
    write_jsonl(os.path.join(a.task, "train_shuffled_expl.jsonl"), out)
    # the same explanations with every looked-up digit redrawn at random (the additions
    # recomputed): the text's form without any true symbol value
    noise = []
    for r in out:
        syms = [t.split("=")[0] for t in r["explanation"].split()[:3]]
        e, _ = explanation("+".join(syms), {x: rng.randrange(10) for x in syms})
        noise.append(dict(r, explanation=e))
    write_jsonl(os.path.join(a.task, "train_random_expl.jsonl"), noise)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="cmd", required=True)
    g = sp.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--symbols", type=int, default=16)
    g.add_argument("--teacher", type=int, default=1500)
    g.add_argument("--train", type=int, default=500)
    g.add_argument("--test", type=int, default=300)
    c = sp.add_parser("check")
    c.add_argument("--task", required=True)
    c.add_argument("--expl", required=True)
    t = sp.add_parser("table")
    t.add_argument("--dir", required=True)
    t.add_argument("--names", required=True)
    t.add_argument("--seeds", default="1 2 3")
    st = sp.add_parser("stats")
    st.add_argument("--dir", required=True)
    st.add_argument("--baseline", required=True)
    st.add_argument("--names", required=True)
    st.add_argument("--seeds", default="1 2 3")
    sh = sp.add_parser("shuffle")
    sh.add_argument("--task", required=True)
    sh.add_argument("--seed", type=int, default=11)
    lk = sp.add_parser("lookups")
    lk.add_argument("--task", required=True)
    lk.add_argument("--field", default="explanation")
    lk.add_argument("files", nargs="+")
    a = p.parse_args()
    {"gen": cmd_gen, "check": cmd_check, "table": cmd_table, "stats": cmd_stats,
     "lookups": cmd_lookups, "shuffle": cmd_shuffle}[a.cmd](a)


if __name__ == "__main__":
    main()
