#!/usr/bin/env python3
"""Synthetic "translation" task with several valid outputs per input (python3 stdlib only).

    make_task.py gen   --out DIR [--seed S] [--train N] [--test N]
    make_task.py score --lexicon DIR/lexicon.json --pred PRED.jsonl [--label NAME] [--out F.json]
    make_task.py table --dir OUT      (the markdown results table run.sh prints)

The source is a sentence of 3-5 pseudo-words.  Every source word has two
*registers* (think formal / informal), and in each register 1-2 synonyms.  A
valid translation translates word by word, monotonically, picks ONE register
for the whole sentence, and any synonym of that register for each word.  Gold
training targets sample the register (p = 0.5 each) and the synonyms (uniform)
independently per example, so the gold output distribution is strongly
multi-modal: up to 2 * 2^5 = 64 valid outputs per source.  Mixing registers
inside one sentence is the typical mode-averaging error and counts as invalid.

Files written by `gen` (JSONL lines are {"prompt", "completion"|"reference"}):
    lexicon.json       the lexicon (source word -> [register A synonyms, register B synonyms])
    train.jsonl        prompt + one sampled gold completion (training data)
    train_prompts.jsonl  prompts + "target" (the gold completion) for the teacher's kd generation
    test.jsonl         held-out prompts + "reference" (one sampled gold target, used for perplexity)

`score` reads a retort eval --predictions file and prints (and returns as JSON) the
corpus BLEU against ALL valid outputs (multi-reference, sacrebleu's definition:
clipped n-gram counts against the max over references, brevity penalty against the
closest reference length; with tokenize 13a this text is already tokenized), and
validity = fraction of predictions that are a valid translation (exact), plus
register-mixing and wrong-length rates for the invalid ones.
"""
import argparse
import itertools
import json
import math
import os
import random
from collections import Counter

CONS = "bdfgklmnprstvz"
VOWS = "aeiou"
N_SRC = 24          # source vocabulary
MIN_LEN, MAX_LEN = 3, 5
PROMPT_END = " ="   # the prompt is "w1 w2 w3 =", the completion " x1 x2 x3"


def pseudo_word(rng, syllables):
    return "".join(rng.choice(CONS) + rng.choice(VOWS) for _ in range(syllables))


def make_lexicon(rng):
    used = set()

    def fresh(syl):
        while True:
            w = pseudo_word(rng, syl)
            if w not in used:
                used.add(w)
                return w

    lex = {}
    while len(lex) < N_SRC:
        src = (fresh(1) + rng.choice(CONS)).upper()   # source words: KOT, MIR, ...
        regs = []
        for _ in range(2):              # two registers
            k = rng.choice([1, 2, 2])   # 1-2 synonyms per register
            regs.append([fresh(rng.choice([2, 2, 3])) for _ in range(k)])
        lex[src] = regs
    return lex


def sample_target(rng, lex, words):
    r = rng.randrange(2)
    return " ".join(rng.choice(lex[w][r]) for w in words)


def gen(args):
    rng = random.Random(args.seed)
    lex = make_lexicon(rng)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "lexicon.json"), "w") as f:
        json.dump(lex, f, indent=1)
    srcs = sorted(lex)
    seen = set()

    def sentence():
        while True:
            ws = tuple(rng.choice(srcs) for _ in range(rng.randint(MIN_LEN, MAX_LEN)))
            if ws not in seen:
                seen.add(ws)
                return ws

    train = [sentence() for _ in range(args.train)]
    test = [sentence() for _ in range(args.test)]   # disjoint from train
    with open(os.path.join(args.out, "train.jsonl"), "w") as f, \
         open(os.path.join(args.out, "train_prompts.jsonl"), "w") as g:
        for ws in train:
            p, c = " ".join(ws) + PROMPT_END, " " + sample_target(rng, lex, ws)
            f.write(json.dumps({"prompt": p, "completion": c}) + "\n")
            g.write(json.dumps({"prompt": p, "target": c}) + "\n")
    with open(os.path.join(args.out, "test.jsonl"), "w") as f:
        for ws in test:
            p, c = " ".join(ws) + PROMPT_END, " " + sample_target(rng, lex, ws)
            f.write(json.dumps({"prompt": p, "reference": c}) + "\n")
    print(f"task: {N_SRC} source words, {sum(len(a) + len(b) for a, b in lex.values())} target "
          f"words, {len(train)} train / {len(test)} test sentences -> {args.out}")


# ---------------------------------------------------------------- scoring

def valid_outputs(lex, words):
    outs = []
    for r in range(2):
        for combo in itertools.product(*[lex[w][r] for w in words]):
            outs.append(list(combo))
    return outs


def ngrams(toks, n):
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def classify(lex, words, hyp):
    """'valid', or the kind of error."""
    if len(hyp) != len(words):
        return "length"
    regs = []
    for w, h in zip(words, hyp):
        r = [i for i in range(2) if h in lex[w][i]]
        if not r:
            return "word"
        regs.append(set(r))
    if set.intersection(*regs):
        return "valid"
    return "mixed-register"


def score(args):
    with open(args.lexicon) as f:
        lex = json.load(f)
    match = [0] * 4
    total = [0] * 4
    hyp_len = ref_len = 0
    kinds = Counter()
    n = 0
    with open(args.pred) as f:
        for line in f:
            if not line.strip():
                continue
            o = json.loads(line)
            words = o["prompt"][: -len(PROMPT_END)].split()
            hyp = o["prediction"].split()
            refs = valid_outputs(lex, words)
            kinds[classify(lex, words, hyp)] += 1
            n += 1
            hyp_len += len(hyp)
            # closest reference length, ties to the shorter (sacrebleu)
            ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
            for k in range(1, 5):
                h = ngrams(hyp, k)
                maxref = Counter()
                for r in refs:
                    for g, c in ngrams(r, k).items():
                        if c > maxref[g]:
                            maxref[g] = c
                match[k - 1] += sum(min(c, maxref[g]) for g, c in h.items())
                total[k - 1] += max(len(hyp) - k + 1, 0)
    if min(match) == 0:
        bleu = 0.0
    else:
        lp = sum(math.log(m / t) for m, t in zip(match, total)) / 4
        bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / max(hyp_len, 1))
        bleu = 100 * bp * math.exp(lp)
    res = {"label": args.label, "n": n, "bleu_multi": round(bleu, 2),
           "valid": round(100.0 * kinds["valid"] / n, 2),
           "mixed_register": round(100.0 * kinds["mixed-register"] / n, 2),
           "wrong_word": round(100.0 * kinds["word"] / n, 2),
           "wrong_length": round(100.0 * kinds["length"] / n, 2)}
    print(json.dumps(res))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f)


def table(args):
    """Markdown table from out/eval/*.score.json, *.metrics.json and the training logs."""
    import re
    rows = [("teacher", "teacher (gold)", "teacher.log"),
            ("gold", "student: gold", "student-gold.log"),
            ("seqkd", "student: seq-KD", "student-seqkd.log"),
            ("seqinter", "student: seq-inter", "student-seqinter.log"),
            ("wordkd", "student: word-KD", "student-wordkd.log"),
            ("seqkd+wordkd", "student: seq-KD + word-KD", "student-seqkd+wordkd.log")]
    d = args.dir

    def load(p):
        try:
            with open(p) as f:
                return json.load(f)
        except OSError:
            return None

    print("| model | params | BLEU greedy | valid % greedy | mixed-reg % greedy | BLEU beam | "
          "valid % beam | mixed-reg % beam | ppl held-out gold | 1-ref BLEU greedy (retort eval) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, label, log in rows:
        params = ""
        try:
            with open(os.path.join(d, "logs", log)) as f:
                m = re.search(r"model: (\d+) parameters", f.read())
                params = m.group(1) if m else ""
        except OSError:
            pass
        g = load(os.path.join(d, "eval", key + ".greedy.score.json"))
        b = load(os.path.join(d, "eval", key + ".beam.score.json"))
        mg = load(os.path.join(d, "eval", key + ".greedy.metrics.json"))
        if not g:
            print(f"| {label} | {params} | (not run) |||||||")
            continue
        f2 = lambda x: "" if x is None else f"{x:.2f}"
        print(f"| {label} | {params} | {f2(g['bleu_multi'])} | {f2(g['valid'])} | "
              f"{f2(g['mixed_register'])} | {f2(b and b['bleu_multi'])} | {f2(b and b['valid'])} | "
              f"{f2(b and b['mixed_register'])} | {f2(mg and mg['ppl'])} | {f2(mg and mg['bleu'])} |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--train", type=int, default=3000)
    g.add_argument("--test", type=int, default=300)
    s = sub.add_parser("score")
    s.add_argument("--lexicon", required=True)
    s.add_argument("--pred", required=True)
    s.add_argument("--label", default="")
    s.add_argument("--out", default="")
    t = sub.add_parser("table")
    t.add_argument("--dir", required=True)
    a = ap.parse_args()
    {"gen": gen, "score": score, "table": table}[a.cmd](a)


if __name__ == "__main__":
    main()
