#!/usr/bin/env python3
"""Make tests/fixtures/metrics.json, the expected values that tests/test_metrics.c
checks eval/metrics.c against.

Text: sentences drawn (fixed seed) from ../shared/data/text/{sotu,moby-dick}.txt
(public domain) as references; hypotheses are the same sentences corrupted
programmatically at strengths from none to total (word drops, swaps,
substitutions, punctuation, numbers, quotes, hyphens, HTML entities, Unicode
letters and spaces, case), so scores span 0..100; plus edge cases (empty
hypothesis, empty reference, identical, no overlap, shorter than 4 tokens).

Expected values:
  tokenize_13a     sacrebleu's Tokenizer13a()(line), for every line used here
  corpora          sacrebleu BLEU() corpus_score (defaults: 13a, exp smoothing,
                   no effective order) and CHRF() corpus_score (defaults)
  sentences        sacrebleu.sentence_bleu (exp, effective order), CHRF() on
                   the one pair, rouge-score RougeScorer(['rougeL']) fmeasure,
                   and exact match / token F1 as defined below
  self_bleu        groups of samples: the mean over i of
                   sentence_bleu(samples[i], samples[all j != i])
  exact match      float(hyp.strip() == ref.strip())
  token F1         SQuAD's F1 over str.split() tokens, case-sensitive, no
                   normalisation; 1 when both are empty, 0 when one is

Run from the repository root (needs ../shared and `pip install sacrebleu rouge-score`):
  .venv/bin/python tests/make_metrics_fixtures.py tests/fixtures
"""
import json
import os
import random
import re
import sys
from collections import Counter

import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

SHARED = "../shared/data/text"
SEED = 20240611

UNICODE_WORDS = ["café", "naïve", "Zürich", "façade", "—", "–", "…", "“quoted”", "‘single’",
                 "İstanbul", "\u212aelvin", "日本語", "😀", "Ωmega", "straße", "ﬁne", "½"]
UNICODE_SPACES = ["\u00a0", "\u2009", "\u3000", "\u0085", "\u2028", "\t", "\u200a", "\x1f"]
PUNCT_BITS = [",", ".", ";", ":", "!", "?", "(", ")", "[", "]", "\"", "'", "--", "...", "/",
              "$", "%", "&", "@", "#", "*", "+", "=", "<", ">", "{", "}", "|", "~", "^", "`", "\\"]
NUMBERS = ["1,000", "3.14", "1.5.", "2,5", "12-14", "1990s", "$4.50", "-7", "0.5,", "10,000,000",
           ".5", "5.", "1-", "3.-4", "7,a", "a,7", "x.1", "1.x"]
ENTITIES = ["&quot;", "&amp;", "&lt;", "&gt;", "&amp;quot;", "<skipped>", "&nbsp;", "&"]


def sentences(path, rng, count, paragraphs):
    text = open(path, encoding="utf-8").read()
    if paragraphs:  # moby-dick is hard-wrapped: one paragraph per blank-line block
        text = "\n".join(" ".join(p.split()) for p in text.split("\n\n"))
    cands = []
    for line in text.split("\n"):
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"“])", line):
            n = len(s.split())
            if 4 <= n <= 45:
                cands.append(s.strip())
    rng.shuffle(cands)
    return cands[:count]


def corrupt(s, strength, rng, vocab):
    """Applies each edit to each word with probability `strength`."""
    words = s.split()
    out = []
    for w in words:
        r = rng.random()
        if r < strength * 0.25:
            continue  # drop
        if r < strength * 0.5:
            w = rng.choice(vocab)  # substitute
        out.append(w)
    for i in range(len(out) - 1):  # adjacent swaps
        if rng.random() < strength * 0.3:
            out[i], out[i + 1] = out[i + 1], out[i]
    extras = [PUNCT_BITS, NUMBERS, UNICODE_WORDS, ENTITIES]
    for _ in range(int(len(out) * strength * 0.4) + (1 if rng.random() < strength else 0)):
        out.insert(rng.randrange(len(out) + 1), rng.choice(rng.choice(extras)))
    for i in range(len(out)):  # glue punctuation / hyphens to words, change case
        r = rng.random()
        if r < strength * 0.1:
            out[i] = out[i] + rng.choice([",", ".", "-", "'s", ")", "\""])
        elif r < strength * 0.15:
            out[i] = rng.choice(["(", "\"", "“", "-", "'"]) + out[i]
        elif r < strength * 0.2:
            out[i] = out[i].upper()
        elif r < strength * 0.25:
            out[i] = out[i] + "-" + rng.choice(vocab)
    seps = [" " if rng.random() >= strength * 0.15 else rng.choice(UNICODE_SPACES + ["  ", "-\n", "\n"])
            for _ in range(len(out))]
    text = "".join(w + (sep if i + 1 < len(out) else "") for i, (w, sep) in enumerate(zip(out, seps)))
    if rng.random() < strength * 0.2:
        text = rng.choice([" ", "\t", "\n", "\u00a0"]) + text + rng.choice(["  ", "\n", "-\n", " \u3000"])
    return text


def bleu_fields(score):
    return {"score": score.score, "bp": score.bp, "ratio": score.ratio,
            "precisions": list(score.precisions), "sys_len": score.sys_len,
            "ref_len": score.ref_len}


def token_f1(hyp, ref):
    h, r = hyp.split(), ref.split()
    if not h or not r:
        return float(h == r)
    same = sum((Counter(h) & Counter(r)).values())
    if same == 0:
        return 0.0
    p, rc = same / len(h), same / len(r)
    return 2 * p * rc / (p + rc)


def self_bleu(samples):
    return sum(sacrebleu.sentence_bleu(s, samples[:i] + samples[i + 1:]).score
               for i, s in enumerate(samples)) / len(samples)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    rng = random.Random(SEED)
    refs = (sentences(os.path.join(SHARED, "sotu.txt"), rng, 70, False) +
            sentences(os.path.join(SHARED, "moby-dick.txt"), rng, 70, True))
    rng.shuffle(refs)
    vocab = sorted({w for s in refs for w in s.split()})
    strengths = [(i / (len(refs) - 1)) ** 1.5 for i in range(len(refs))]  # more light edits
    rng.shuffle(strengths)
    pairs = [(corrupt(r, st, rng, vocab), r) for r, st in zip(refs, strengths)]
    # a second reference for the multi-reference corpus: a light corruption
    refs2 = [corrupt(r, 0.15, rng, vocab) for r in refs[:60]]

    other = refs[1:] + refs[:1]
    edge = [("", "A reference that is not empty."), ("The same sentence, word for word.",) * 2,
            ("zebra quokka axolotl", "Nothing in common here at all."), ("", ""), ("word", ""),
            ("Hi there", "Hi there friend"), ("  padded  ", "padded"), ("a b c", "c b a"),
            ("İstanbul \u212aelvin K", "istanbul kelvin k"), ("the the the the", "the cat the mat"),
            ("Fellow-Citizens of the Senate", "Fellow-Citizens of the Senate and House"),
            ("\u00a0x\u3000y\u0085", "x y"), ("UPPER case", "upper CASE"),
            ("1,000.5 dollars.", "1,000.5 dollars ."), ("&quot;x&quot; &amp; y", "\"x\" & y")]
    # short hypotheses against long references, and rearranged ones
    edge += [(" ".join(r.split()[:3]), r) for r in refs[:4]]
    edge += [(" ".join(reversed(r.split())), r) for r in refs[4:8]]
    edge += [(o, r) for o, r in zip(other[:6], refs[:6])]  # unrelated sentences
    all_pairs = pairs + edge

    n_main = len(all_pairs)
    short = [("a b", "a b"), ("c", "c d"), ("d e f", "d e f g"), ("", "x")]
    all_pairs += short + [(r, r) for r in refs[:8]] + [("", r) for r in refs[8:10]]

    bleu, chrf = BLEU(), CHRF()
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    tok = Tokenizer13a()
    sent_rows = []
    for hyp, ref in all_pairs:
        sent_rows.append({
            "hyp": hyp, "ref": ref, "hyp_13a": tok(hyp), "ref_13a": tok(ref),
            "sentence_bleu": sacrebleu.sentence_bleu(hyp, [ref]).score,
            "chrf": chrf.corpus_score([hyp], [[ref]]).score,
            "rouge_l": scorer.score(ref, hyp)["rougeL"].fmeasure,
            "exact": float(hyp.strip() == ref.strip()),
            "token_f1": token_f1(hyp, ref),
        })

    def corpus(name, rows, refs2=None):
        """rows index `sentences`; refs2, when given, is a second reference per row."""
        hyps = [all_pairs[i][0] for i in rows]
        streams = [[all_pairs[i][1] for i in rows]] + ([refs2] if refs2 else [])
        c = {"name": name, "rows": rows, "bleu": bleu_fields(bleu.corpus_score(hyps, streams))}
        if refs2:
            c["refs2"] = refs2
        else:
            c["chrf"] = chrf.corpus_score(hyps, streams).score
        return c

    by_strength = list(zip(range(len(pairs)), strengths))
    n_short = n_main + len(short)
    n_ident = n_short + 8
    corpora = [
        corpus("all", list(range(len(pairs)))),
        corpus("light", [i for i, st in by_strength if st < 0.3]),
        corpus("heavy", [i for i, st in by_strength if st > 0.7]),
        corpus("edge", list(range(len(pairs), n_main))),
        corpus("everything", list(range(len(all_pairs)))),
        corpus("two_refs", list(range(60)), refs2[:60]),
        corpus("short", list(range(n_main, n_short))),
        corpus("identical", list(range(n_short, n_ident))),
        corpus("unrelated", list(range(n_main - 6, n_main))),
        corpus("empty_hyps", list(range(n_ident, len(all_pairs)))),
    ]

    groups = []
    for g in range(24):
        base = refs[g]
        n = 2 + g % 5
        strength = [0.0, 0.1, 0.3, 0.6, 1.0][g % 5] if g < 20 else 0.5
        samples = [corrupt(base, strength, rng, vocab) for _ in range(n)]
        if g >= 20:  # samples from different sentences: low self-BLEU
            samples = [corrupt(refs[g + 10 * k], 0.2, rng, vocab) for k in range(n)]
        groups.append({"samples": samples, "self_bleu": self_bleu(samples)})
    groups.append({"samples": ["same words here", "same words here", "same words here"],
                   "self_bleu": self_bleu(["same words here"] * 3)})
    groups.append({"samples": ["", "something", ""], "self_bleu": self_bleu(["", "something", ""])})

    lines = refs2[:60] + ["a-\nb", "x<skipped>y", "-<skipped>\nz", "&amp;quot;", "U.S.A. and 3.14, 1,2 .5 5. ,x",
              "1-2 a-b 3- -4", "$5 (50%) {a} [b] |c| ~d^ `e` \\f @g #h", "trailing-\n", "a..b a,.b 1..2",
              "x,.5 y.,z 9,,9 9..9",
              "&amp;lt; &amp;gt; &amp;amp; &lt;&gt; &quot&amp"]
    seen, tok_rows = set(), []
    for line in lines:
        if line not in seen:
            seen.add(line)
            tok_rows.append({"in": line, "out": tok(line)})

    fixture = {
        "reference": f"sacrebleu {sacrebleu.__version__} (BLEU(), sentence_bleu, CHRF() defaults), "
                     "rouge-score RougeScorer(['rougeL']) default tokenizer",
        "tokenize_13a": tok_rows, "corpora": corpora, "sentences": sent_rows, "self_bleu": groups,
    }
    path = os.path.join(out, "metrics.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    bl = [r["sentence_bleu"] for r in sent_rows]
    summary = ", ".join("%s %.1f" % (c["name"], c["bleu"]["score"]) for c in corpora)
    print(f"wrote {path}: {os.path.getsize(path)} bytes, {len(sent_rows)} pairs "
          f"(sentence BLEU {min(bl):.1f}..{max(bl):.1f}), {len(corpora)} corpora "
          f"({summary}), "
          f"{len(groups)} self-BLEU groups, {len(tok_rows)} tokenizer lines")


if __name__ == "__main__":
    main()
