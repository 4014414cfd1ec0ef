#!/usr/bin/env python3
"""Check that Hugging Face `tokenizers` loads a tokenizer.json and encodes a
text to the same ids as retort.

    retort tokenizer train --vocab-size 500 corpus.txt -o tok.json
    retort tokenizer encode --tokenizer tok.json --input text.txt > ids.txt
    .venv/bin/python tests/check_tokenizer_json.py tok.json text.txt ids.txt

ids.txt holds the ids separated by whitespace (what `retort tokenizer encode`
prints). Exits 0 when the ids match and decode back to the text, 1 when not
(naming the first difference), 2 on bad arguments. With --train-check N it
also trains tokenizers' own BpeTrainer (ByteLevel, vocab N, "<|endoftext|>")
on the text as one sequence and compares its merges with tok.json's.
"""
import argparse
import json
import sys

import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers


def merges_of(tokenizer_json):
    return [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("tokenizer_json")
    ap.add_argument("text")
    ap.add_argument("ids")
    ap.add_argument("--train-check", type=int, metavar="N", default=0)
    a = ap.parse_args()

    tok = Tokenizer.from_file(a.tokenizer_json)
    pre = json.load(open(a.tokenizer_json)).get("pre_tokenizer") or {}
    pre = (pre.get("pretokenizers") or [pre])[0] if pre.get("type") == "Sequence" else pre
    prefix_space = bool(pre.get("add_prefix_space"))  # then the ids hold spaces the text lacks
    text = open(a.text, encoding="utf-8", newline="").read()
    ours = [int(x) for x in open(a.ids).read().split()]
    theirs = tok.encode(text).ids
    ok = True
    if theirs != ours:
        ok = False
        n = min(len(ours), len(theirs))
        first = next((i for i in range(n) if ours[i] != theirs[i]), n)
        print(f"MISMATCH: retort {len(ours)} ids, tokenizers {len(theirs)}; first difference at "
              f"{first}: retort {ours[first:first + 5]}, tokenizers {theirs[first:first + 5]}")
    elif tok.decode(ours, skip_special_tokens=False) != text and not prefix_space:
        ok = False
        print("MISMATCH: the ids match but do not decode back to the text")
    else:
        print(f"ok: {len(ours)} ids identical to tokenizers {tokenizers.__version__}, "
              + ("(decoding not compared: add_prefix_space adds spaces)" if prefix_space
                 else "and they decode back to the text"))

    if a.train_check:
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=a.train_check, special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        hf.train_from_iterator([text], trainer)
        mine = merges_of(json.load(open(a.tokenizer_json)))
        ref = merges_of(json.loads(hf.to_str()))
        if mine != ref:
            ok = False
            first = next((i for i, (x, y) in enumerate(zip(mine, ref)) if x != y),
                         min(len(mine), len(ref)))
            print(f"TRAIN MISMATCH: {len(mine)} merges vs BpeTrainer's {len(ref)}; "
                  f"first difference at {first}")
        else:
            print(f"ok: {len(mine)} merges identical to BpeTrainer's")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
