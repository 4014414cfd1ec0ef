#!/usr/bin/env python3
"""Synthetic "translation" task with several valid outputs per input (python3 stdlib only).

    make_task.py gen   --out DIR [--seed S] [--train N] [--test N]
    make_task.py score --lexicon DIR/lexicon.json --pred PRED.jsonl [--label NAME] [--out F.json]
    make_task.py table --dir OUT [--seeds "1 2 3"]   (the markdown tables run.sh prints)
    make_task.py targets --lexicon DIR/lexicon.json --h5 TRAIN.h5 [--out F.json]
                       (what a training file teaches: needs h5py, e.g. .venv/bin/python)

experiments/paraphrase-kd/report.py imports this file (scoring, seed aggregation).

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
register-mixing and wrong-length rates for the invalid ones.  When the lines
also carry "samples" (retort eval --samples N), the same scores are computed over
every sample (sample_bleu_multi, sample_valid) with the mean number of distinct
outputs and of distinct VALID outputs per prompt (a diversity measure that, unlike
self-BLEU, does not reward wrong outputs), and valid_pair_repeat: of all pairs of valid
samples of the same prompt, the % that are identical (an estimate of the collision
probability of the model's valid outputs, which does not depend on how many samples are
valid; 6.25 for a uniform choice among 16 outputs).
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


class MultiRefBleu:
    """Corpus BLEU against all valid outputs (sacrebleu's definition, see the top)."""

    def __init__(self):
        self.match = [0] * 4
        self.total = [0] * 4
        self.hyp_len = self.ref_len = 0

    def add(self, hyp, refs):
        self.hyp_len += len(hyp)
        # closest reference length, ties to the shorter (sacrebleu)
        self.ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for k in range(1, 5):
            h = ngrams(hyp, k)
            maxref = Counter()
            for r in refs:
                for g, c in ngrams(r, k).items():
                    if c > maxref[g]:
                        maxref[g] = c
            self.match[k - 1] += sum(min(c, maxref[g]) for g, c in h.items())
            self.total[k - 1] += max(len(hyp) - k + 1, 0)

    def score(self):
        if min(self.match) == 0:
            return 0.0
        lp = sum(math.log(m / t) for m, t in zip(self.match, self.total)) / 4
        bp = 1.0 if self.hyp_len > self.ref_len else math.exp(1 - self.ref_len / max(self.hyp_len, 1))
        return 100 * bp * math.exp(lp)


def score(args):
    with open(args.lexicon) as f:
        lex = json.load(f)
    bleu, sbleu = MultiRefBleu(), MultiRefBleu()
    kinds, skinds = Counter(), Counter()
    n = n_samples = distinct = distinct_valid = valid_pairs = same_pairs = 0
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
            bleu.add(hyp, refs)
            if "samples" in o:
                seen = set()
                valid_counts = Counter()
                for smp in o["samples"]:
                    toks = smp.split()
                    kind = classify(lex, words, toks)
                    skinds[kind] += 1
                    n_samples += 1
                    sbleu.add(toks, refs)
                    if kind == "valid":
                        valid_counts[tuple(toks)] += 1
                    if tuple(toks) not in seen:
                        seen.add(tuple(toks))
                        distinct += 1
                        distinct_valid += kind == "valid"
                nv = sum(valid_counts.values())
                valid_pairs += nv * (nv - 1) // 2
                same_pairs += sum(c * (c - 1) // 2 for c in valid_counts.values())
    res = {"label": args.label, "n": n, "bleu_multi": round(bleu.score(), 2),
           "valid": round(100.0 * kinds["valid"] / n, 2),
           "mixed_register": round(100.0 * kinds["mixed-register"] / n, 2),
           "wrong_word": round(100.0 * kinds["word"] / n, 2),
           "wrong_length": round(100.0 * kinds["length"] / n, 2)}
    if n_samples:
        res.update({"samples_per_prompt": round(n_samples / n, 2),
                    "sample_bleu_multi": round(sbleu.score(), 2),
                    "sample_valid": round(100.0 * skinds["valid"] / n_samples, 2),
                    "sample_mixed_register": round(100.0 * skinds["mixed-register"] / n_samples, 2),
                    "distinct": round(distinct / n, 3),
                    "distinct_valid": round(distinct_valid / n, 3),
                    "valid_pair_repeat": round(100.0 * same_pairs / valid_pairs, 2)
                    if valid_pairs else None})
    print(json.dumps(res))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f)


def gold_pair_repeat(lex, prompts):
    """The repeat % of pairs that the gold distribution itself gives (register p = 1/2, each
    synonym uniform), averaged over the prompts: the collision probability
    sum_r (1/2)^2 prod_w 1/|synonyms(w, r)|."""
    total = 0.0
    for p in prompts:
        words = p[: -len(PROMPT_END)].split()
        total += sum(0.25 * math.prod(1.0 / len(lex[w][r]) for w in words) for r in range(2))
    return 100.0 * total / len(prompts)


# ---------------------------------------------------------------- tables over seeds

def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None


def seed_values(d, names, suffix, field):
    """field of eval/NAME.SUFFIX for each NAME that has it (one per seed)."""
    out = []
    for name in names:
        j = load_json(os.path.join(d, "eval", f"{name}.{suffix}"))
        if j is not None and j.get(field) is not None:
            out.append(j[field])
    return out


def mean_sd(vals, digits=1):
    """'mean ± sample sd' ('x' alone for one value; '' for none)."""
    if not vals:
        return ""
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{m:.{digits}f}"
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def min_max(vals, digits=1):
    return f"{min(vals):.{digits}f}–{max(vals):.{digits}f}" if vals else ""


def params_of(d, log):
    import re
    try:
        with open(os.path.join(d, "logs", log)) as f:
            m = re.search(r"model: (\d+) parameters", f.read())
            return m.group(1) if m else ""
    except OSError:
        return ""


def targets(args):
    """Diagnostics of a training file (sft or kd HDF5: tokens, offsets, loss_mask; byte
    tokens): how many targets are valid, mixed-register or wrong, the register split, the
    mean entropy (bits) of the synonym chosen in each (source word, register) slot that has
    two synonyms, and the distinct targets per source."""
    import h5py
    with open(args.lexicon) as f:
        lex = json.load(f)
    with h5py.File(args.h5, "r") as h:
        toks, offs, mask = h["tokens"][:], h["offsets"][:], h["loss_mask"][:]
    kinds, regs = Counter(), Counter()
    choice = {}                         # (word, register) -> Counter of synonyms
    per_source = {}
    for i in range(len(offs) - 1):
        t, m = toks[offs[i]:offs[i + 1]], mask[offs[i]:offs[i + 1]]
        prompt = bytes(int(x) for x, k in zip(t, m) if not k and x < 256).decode(errors="replace")
        target = bytes(int(x) for x, k in zip(t, m) if k and x < 256).decode(errors="replace")
        words = prompt.strip()[: -len(PROMPT_END.strip())].split()
        hyp = target.split()
        kind = classify(lex, words, hyp)
        kinds[kind] += 1
        per_source.setdefault(prompt, set()).add(target)
        if kind == "valid":
            r = 0 if all(h in lex[w][0] for w, h in zip(words, hyp)) else 1
            regs[r] += 1
            for w, h in zip(words, hyp):
                if len(lex[w][r]) == 2:
                    choice.setdefault((w, r), Counter())[h] += 1
    n = sum(kinds.values())
    ent = [-sum(c / sum(cs.values()) * math.log2(c / sum(cs.values())) for c in cs.values())
           for cs in choice.values()]
    res = {"file": args.h5, "examples": n, "sources": len(per_source),
           "valid": kinds["valid"], "mixed_register": kinds["mixed-register"],
           "wrong_word": kinds["word"], "wrong_length": kinds["length"],
           "register_a": regs[0], "register_b": regs[1],
           "synonym_slots": len(ent), "synonym_entropy_bits": round(sum(ent) / max(len(ent), 1), 3),
           "distinct_targets_per_source": round(sum(len(v) for v in per_source.values())
                                                / max(len(per_source), 1), 3)}
    print(json.dumps(res))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f)


SEQKD_ROWS = [("teacher", "teacher (gold data)"),
              ("gold", "student: gold"),
              ("seqkd", "student: seq-KD"),
              ("seqinter", "student: seq-inter"),
              ("wordkd", "student: word-KD"),
              ("seqkd+wordkd", "student: seq-KD + word-KD")]


def table(args):
    """Markdown tables from out/eval/*.score.json and *.metrics.json: mean ± sample standard
    deviation over the students' seeds (the teacher is one model, decoded deterministically),
    then each seed's values and their min–max range."""
    d = args.dir
    seeds = args.seeds.split()
    cols = [("greedy.score.json", "bleu_multi", "BLEU greedy"),
            ("greedy.score.json", "valid", "valid % greedy"),
            ("greedy.score.json", "mixed_register", "mixed-reg % greedy"),
            ("beam.score.json", "bleu_multi", "BLEU beam"),
            ("beam.score.json", "valid", "valid % beam"),
            ("beam.score.json", "mixed_register", "mixed-reg % beam"),
            ("greedy.metrics.json", "ppl", "ppl held-out gold")]
    names_of = lambda key: [key] if key == "teacher" else [f"{key}-s{s}" for s in seeds]
    print(f"Mean ± sample standard deviation over seeds {', '.join(seeds)} (n = seeds that finished).\n")
    print("| model | params | n | " + " | ".join(c[2] for c in cols) + " |")
    print("|---|---:|---:|" + "---:|" * len(cols))
    for key, label in SEQKD_ROWS:
        names = names_of(key)
        log = "teacher.log" if key == "teacher" else f"student-{names[0]}.log"
        n = len(seed_values(d, names, "greedy.score.json", "valid"))
        if not n:
            print(f"| {label} | | 0 | (not run) |" + " |" * (len(cols) - 1))
            continue
        cells = [mean_sd(seed_values(d, names, f, k), 3 if k == "ppl" else 1) for f, k, _ in cols]
        print(f"| {label} | {params_of(d, log)} | {n} | " + " | ".join(cells) + " |")
    print("\nPer seed (valid % greedy / valid % beam), and the range over seeds:\n")
    print("| model | " + " | ".join(f"seed {s}" for s in seeds) + " | range greedy | range beam |")
    print("|---|" + "---:|" * (len(seeds) + 2))
    for key, label in SEQKD_ROWS[1:]:
        names = names_of(key)
        cells = []
        for name in names:
            g = load_json(os.path.join(d, "eval", f"{name}.greedy.score.json"))
            b = load_json(os.path.join(d, "eval", f"{name}.beam.score.json"))
            cells.append(f"{g['valid']:.1f} / {b['valid']:.1f}" if g and b else "")
        g = seed_values(d, names, "greedy.score.json", "valid")
        b = seed_values(d, names, "beam.score.json", "valid")
        print(f"| {label} | " + " | ".join(cells) + f" | {min_max(g)} | {min_max(b)} |")


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
    t.add_argument("--seeds", default="1 2 3")
    x = sub.add_parser("targets")
    x.add_argument("--lexicon", required=True)
    x.add_argument("--h5", required=True)
    x.add_argument("--out", default="")
    a = ap.parse_args()
    {"gen": gen, "score": score, "table": table, "targets": targets}[a.cmd](a)


if __name__ == "__main__":
    main()
