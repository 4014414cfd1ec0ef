#!/usr/bin/env python3
"""Synthetic "translation" task for LMCOR (python3 stdlib only).

    make_task.py gen   --out DIR [--seed S] [--giant N] [--train N] [--test N]
    make_task.py score --lexicon DIR/lexicon.json --pred PRED.jsonl --field F [--label L] [--out F.json]
    make_task.py table --dir OUT [--seeds "1 2 3"]      (the markdown table run.sh prints)

The source is a sentence of MIN_LEN..MAX_LEN three-letter words ("KOT MIR BEM =");
the target translates every word with a fixed lexicon and writes the words in
REVERSED order (" bemo lalu kote").  Reversal plus a 40-word lexicon is what
makes the task hard for a 2 x 32 model trained on 1000 examples.

The giant is trained on its own, larger, data (giant.jsonl) in which the
lexicon has systematic errors -- the giant's "pretraining" got these wrong:
  * MISSPELL words: the gold word's last letter is replaced (a non-word, e.g.
    "kote" -> "kotu"); a corrector can fix these from the candidate alone;
  * CONFUSE pairs (a, b): a is translated as b's word; fixing needs the
    source (which of a or b is at the aligned position).
The giant is otherwise trained well, so its candidates hold every other word
right; the small models (corrector, direct fine-tuning) see the gold
train.jsonl only.

Files written by `gen`:
    lexicon.json   {"lexicon": src -> tgt, "misspell": {src: wrong}, "confuse": {src: other src}}
    giant.jsonl    {"prompt", "completion"} with the giant's systematic errors
    train.jsonl    {"prompt", "completion", "target"} gold (the small models' data;
                   "target" for correct build's --reference-field)
    test.jsonl     {"prompt", "reference"} gold, sources disjoint from train and giant

`score` reads JSONL predictions (field --field: "prediction" for retort eval
--predictions, "correction" / "candidates" (first) for correct run's output) and
reports exact match and word accuracy per word class (plain, misspelled-by-giant,
confused-by-giant), a word being right when it is the gold word at its position.
"""
import argparse
import json
import os
import random
import statistics

CONS = "bdfgklmnprstvz"
VOWS = "aeiou"
UPPER = "BCDFGHJKLMNPRSTVWXZ"
N_SRC = 40
MIN_LEN, MAX_LEN = 3, 4
PROMPT_END = " ="
N_MISSPELL = 4
N_CONFUSE = 2


def make_lexicon(rng):
    src, tgt = set(), set()
    while len(src) < N_SRC:
        src.add(rng.choice(UPPER) + rng.choice("AEIOU") + rng.choice(UPPER))
    src = sorted(src)
    lex = {}
    for s in src:
        while True:
            n = rng.choice([3, 4, 5])
            w = "".join((rng.choice(CONS) if i % 2 == 0 else rng.choice(VOWS)) for i in range(n))
            if w not in tgt:
                tgt.add(w)
                lex[s] = w
                break
    order = src[:]
    rng.shuffle(order)
    misspell = {}
    for s in order[:N_MISSPELL]:
        w = lex[s]
        pool = VOWS if w[-1] in VOWS else CONS
        while True:
            bad = w[:-1] + rng.choice(pool)
            if bad != w and bad not in tgt:
                break
        misspell[s] = bad
    confuse = {}
    rest = order[N_MISSPELL:]
    for i in range(N_CONFUSE):
        confuse[rest[2 * i]] = rest[2 * i + 1]
    return {"lexicon": lex, "misspell": misspell, "confuse": confuse}


def translate(lx, words, giant=False):
    out = []
    for w in words:
        if giant and w in lx["misspell"]:
            out.append(lx["misspell"][w])
        elif giant and w in lx["confuse"]:
            out.append(lx["lexicon"][lx["confuse"][w]])
        else:
            out.append(lx["lexicon"][w])
    return " ".join(reversed(out))


def gen(args):
    rng = random.Random(args.seed)
    lx = make_lexicon(rng)
    src = sorted(lx["lexicon"])
    seen = set()

    def sentences(n):
        res = []
        while len(res) < n:
            words = tuple(rng.choice(src) for _ in range(rng.randint(MIN_LEN, MAX_LEN)))
            if words in seen:
                continue
            seen.add(words)
            res.append(words)
        return res

    # drawn in this order so that --train N beyond the first 1000 leaves the giant's data
    # (and so the giant) alone: test, the first 1000 training sources, the giant's, the rest
    test = sentences(args.test)
    train = sentences(min(args.train, 1000))
    giant = sentences(args.giant)
    train += sentences(max(args.train - 1000, 0))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "lexicon.json"), "w") as f:
        json.dump(lx, f, indent=1)

    def write(name, rows):
        with open(os.path.join(args.out, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")

    p = lambda ws: " ".join(ws) + PROMPT_END
    write("giant.jsonl", [{"prompt": p(w), "completion": " " + translate(lx, w, giant=True)} for w in giant])
    write("train.jsonl", [{"prompt": p(w), "completion": " " + translate(lx, w),
                           "target": translate(lx, w)} for w in train])
    write("test.jsonl", [{"prompt": p(w), "reference": translate(lx, w)} for w in test])
    n_aff = sum(any(x in lx["misspell"] or x in lx["confuse"] for x in w) for w in test)
    print(f"lexicon {len(src)} words, misspelled {sorted(lx['misspell'])}, confused {lx['confuse']}; "
          f"giant {len(giant)}, train {len(train)}, test {len(test)} "
          f"({n_aff} test sources hold an affected word)")


def word_class(lx, w):
    if w in lx["misspell"]:
        return "misspell"
    if w in lx["confuse"]:
        return "confuse"
    return "plain"


def score_file(lx, path, field):
    n = em = 0
    right = {"plain": 0, "misspell": 0, "confuse": 0}
    total = {"plain": 0, "misspell": 0, "confuse": 0}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            words = r["prompt"][:-len(PROMPT_END)].split()
            hyp = r[field]
            if isinstance(hyp, list):
                hyp = hyp[0]
            hyp = hyp.strip().split()
            gold = [lx["lexicon"][w] for w in reversed(words)]
            n += 1
            em += hyp == gold
            for i, w in enumerate(reversed(words)):
                c = word_class(lx, w)
                total[c] += 1
                right[c] += i < len(hyp) and hyp[i] == gold[i]
    res = {"n": n, "exact_match": 100.0 * em / n}
    for c in total:
        res["word_acc_" + c] = 100.0 * right[c] / total[c] if total[c] else None
    return res


def score(args):
    lx = json.load(open(args.lexicon))
    res = score_file(lx, args.pred, args.field)
    res["label"] = args.label
    print(json.dumps(res))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


def mean_sd(vals, d=1):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{d}f} (1 seed)"
    return f"{statistics.mean(vals):.{d}f} ± {statistics.stdev(vals):.{d}f}"


def table(args):
    ev = os.path.join(args.dir, "eval")
    seeds = args.seeds.split()
    rows = [("giant greedy (4 x 64, errorful data)", "giant"),
            ("corrector (2 x 32) on the giant's pool", "corrector"),
            ("direct fine-tuning (2 x 32) on gold", "direct")]
    for label, key in [("corrector, 2x the steps (4000)", "corrector_long"),
                       ("direct fine-tuning, 2x the steps (4000)", "direct_long")]:
        if any(os.path.exists(os.path.join(ev, f"{key}-s{s}.score.json")) for s in seeds):
            rows.append((label, key))
    cols = [("EM %", "score", "exact_match"), ("BLEU", "metrics", "bleu"), ("chrF", "metrics", "chrf"),
            ("plain words %", "score", "word_acc_plain"),
            ("misspelled-by-giant words %", "score", "word_acc_misspell"),
            ("confused-by-giant words %", "score", "word_acc_confuse")]
    print("| model | " + " | ".join(c[0] for c in cols) + " | seeds |")
    print("|---|" + "---:|" * len(cols) + "---|")
    for label, key in rows:
        cells, got = [], []
        for _, kind, field in cols:
            vals = []
            for s in seeds:
                p = os.path.join(ev, f"{key}-s{s}.{kind}.json")
                if os.path.exists(p):
                    vals.append(json.load(open(p)).get(field))
                    if kind == "score":
                        got.append(s)
            cells.append(mean_sd(vals, 2 if kind == "metrics" else 1))
        print(f"| {label} | " + " | ".join(cells) + f" | {' '.join(sorted(set(got)))} |")
    kf = {}
    for key in ("corrector", "corrector_long"):
        for s in seeds:
            p = os.path.join(ev, f"{key}-s{s}.jsonl")
            if os.path.exists(p):
                kf.setdefault(key, []).append((s,) + kept_fixed(p))
    if kf:
        print()
        print("| corrector vs the giant's greedy output (test) | " + " | ".join(kf) + " |")
        print("|---|" + "---:|" * len(kf))
        for i, what in [(1, "giant right, correction still right (%)"),
                        (2, "giant wrong, correction right (%)"),
                        (3, "gold among the giant's 5 candidates (oracle EM %)")]:
            print(f"| {what} | " + " | ".join(mean_sd([r[i] for r in kf[k]]) for k in kf) + " |")
        for k in kf:
            print()
            print(f"{k} per seed: " + "; ".join(f"s{r[0]}: kept {r[1]:.1f}% of {r[4]}, fixed {r[2]:.1f}% "
                                              f"of {r[5]}, oracle {r[3]:.1f}%" for r in kf[k]))
    print()
    print("per seed (EM %):")
    for label, key in rows:
        vals = []
        for s in seeds:
            p = os.path.join(ev, f"{key}-s{s}.score.json")
            vals.append(f"s{s} {json.load(open(p))['exact_match']:.1f}" if os.path.exists(p) else f"s{s} –")
        print(f"- {label}: " + ", ".join(vals))


def kept_fixed(path):
    """Of the test lines the giant's greedy output got right, the share the corrector kept
    right; of those it got wrong, the share the corrector fixed; and how often the right
    target was among the giant's candidates at all (an oracle's pick)."""
    kept = fixed = n_right = n_wrong = oracle = n = 0
    for line in open(path):
        r = json.loads(line)
        gold, corr = r["reference"].split(), r["correction"].split()
        n += 1
        oracle += any(c.split() == gold for c in r["candidates"])
        if r["candidates"][0].split() == gold:
            n_right += 1
            kept += corr == gold
        else:
            n_wrong += 1
            fixed += corr == gold
    return (100.0 * kept / n_right if n_right else None, 100.0 * fixed / n_wrong if n_wrong else None,
            100.0 * oracle / n, n_right, n_wrong)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=11)
    g.add_argument("--giant", type=int, default=6000)
    g.add_argument("--train", type=int, default=4000)
    g.add_argument("--test", type=int, default=200)
    s = sub.add_parser("score")
    s.add_argument("--lexicon", required=True)
    s.add_argument("--pred", required=True)
    s.add_argument("--field", default="prediction")
    s.add_argument("--label", default="")
    s.add_argument("--out")
    t = sub.add_parser("table")
    t.add_argument("--dir", required=True)
    t.add_argument("--seeds", default="1 2 3")
    a = ap.parse_args()
    {"gen": gen, "score": score, "table": table}[a.cmd](a)


if __name__ == "__main__":
    main()
