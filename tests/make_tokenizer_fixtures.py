#!/usr/bin/env python3
"""Make the tokenizer fixtures that tests/test_tokenizer.c reads.

  tiktoken_text.json    for each of ../shared/data/text/{moby-dick,sotu}.txt:
                        the input's size and FNV-1a 64 hash, the number of
                        r50k_base (GPT-2) tokens, the FNV-1a 64 hash of the
                        whole id stream and of every CHUNK ids (to locate a
                        mismatch). Ids are hashed as uint32 little-endian.
  unicode_classes.json  the code points that the GPT-2 regex sees as letters
                        (\\p{L}), numbers (\\p{N}) and whitespace (\\s), as
                        ranges, probed from tiktoken's own regex engine.

The reference is tiktoken loaded offline from ../shared/data/gpt2/r50k_base.tiktoken
(GPT-2's pattern, "<|endoftext|>" = 50256). As a cross-check, Hugging Face
`tokenizers` built from encoder.json + vocab.bpe must give the same ids and the
same Unicode classes; the script stops if it does not.

Run from the repository root: .venv/bin/python tests/make_tokenizer_fixtures.py tests/fixtures
(needs `pip install tiktoken tokenizers` in the venv).
"""
import json
import os
import struct
import sys

import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

SHARED = "../shared/data"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
TEXTS = ["text/moby-dick.txt", "text/sotu.txt"]
CHUNK = 65536
FNV_OFFSET, FNV_PRIME, MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def fnv1a64(data, h=FNV_OFFSET):
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def ids_hash(ids):
    return fnv1a64(struct.pack(f"<{len(ids)}I", *ids))


def tiktoken_gpt2():
    ranks = load_tiktoken_bpe(os.path.join(SHARED, "gpt2/r50k_base.tiktoken"))
    return tiktoken.Encoding("r50k_base", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def hf_gpt2():
    tok = Tokenizer(models.BPE.from_file(os.path.join(SHARED, "gpt2/encoder.json"),
                                         os.path.join(SHARED, "gpt2/vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def text_fixture(enc, hf):
    files = {}
    for rel in TEXTS:
        raw = open(os.path.join(SHARED, rel), "rb").read()
        ids = enc.encode(raw.decode("utf-8"), allowed_special="all")
        hf_ids = hf.encode(raw.decode("utf-8")).ids
        if hf_ids != ids:
            first = next(i for i, (a, b) in enumerate(zip(ids, hf_ids)) if a != b)
            sys.exit(f"{rel}: tiktoken and tokenizers disagree at id {first}; fix the setup first")
        print(f"{rel}: {len(raw)} bytes, {len(ids)} tokens (tiktoken = tokenizers)")
        files[rel] = {
            "bytes": len(raw),
            "text_fnv1a64": f"{fnv1a64(raw):016x}",
            "tokens": len(ids),
            "fnv1a64": f"{ids_hash(ids):016x}",
            "chunks": [f"{ids_hash(ids[i:i + CHUNK]):016x}" for i in range(0, len(ids), CHUNK)],
        }
    return {"reference": f"tiktoken {tiktoken.__version__}, r50k_base from r50k_base.tiktoken",
            "hash": "FNV-1a 64 over the ids as uint32 little-endian",
            "chunk": CHUNK, "files": files}


def ranges(cps):
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def unicode_fixture():
    """Each class through tiktoken's regex engine: an Encoding whose pattern is
    the class alone and whose vocabulary is the 256 bytes encodes a character
    to something exactly when the class matches it."""
    byte_ranks = {bytes([i]): i for i in range(256)}
    scalars = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, scalars))
    classes = {}
    for name, pattern in [("L", r"\p{L}"), ("N", r"\p{N}"), ("S", r"\s")]:
        probe = tiktoken.Encoding(f"probe_{name}", pat_str=pattern, mergeable_ranks=byte_ranks,
                                  special_tokens={})
        members = [c for c in scalars if probe.encode_ordinary(chr(c))]
        # the same class through tokenizers' engine (Oniguruma): what it removes
        split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
        rest = set()
        for piece, _ in split.pre_tokenize_str(text):
            rest.update(map(ord, piece))
        if set(scalars) - rest != set(members):
            sys.exit(f"\\p{{{name}}}: tiktoken and tokenizers disagree; fix the setup first")
        classes[name] = ranges(members)
        print(f"class {name}: {len(members)} code points in {len(classes[name])} ranges "
              "(tiktoken = tokenizers)")
    return {"reference": f"tiktoken {tiktoken.__version__} regex engine (tokenizers agrees)",
            "classes": classes}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(out, exist_ok=True)
    enc, hf = tiktoken_gpt2(), hf_gpt2()
    with open(os.path.join(out, "tiktoken_text.json"), "w") as f:
        json.dump(text_fixture(enc, hf), f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "unicode_classes.json"), "w") as f:
        json.dump(unicode_fixture(), f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out}/tiktoken_text.json and {out}/unicode_classes.json")


if __name__ == "__main__":
    main()
