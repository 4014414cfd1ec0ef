#!/usr/bin/env python3
"""Make the tokenizer.json fixtures that tests/test_tokjson.c reads.

Every tokenizer here is built with Hugging Face `tokenizers` itself: a small
BPE trained on public text (the first 200 KB of ../shared/data/text/moby-dick.txt,
Project Gutenberg, and the stress texts below), with the pipeline of a
real model family configured as that family's tokenizer.json has it:

  llama3     Split(the Llama 3 / cl100k regex, Isolated) + ByteLevel(use_regex
             false), BPE ignore_merges, TemplateProcessing "<|begin_of_text|> $A"
             inside Sequence[ByteLevel, TemplateProcessing], ByteLevel decoder
  qwen2      NFC normalizer, Split(the Qwen2 regex) + ByteLevel, ByteLevel
             post-processor and decoder
  llama2     SentencePiece-style (Llama 2 / TinyLlama): normalizer
             Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer, BPE with
             byte_fallback, fuse_unk and "<unk>", "<s> $A", decoders
             Replace + ByteFallback + Fuse + Strip
  mistral    SentencePiece-style with the Metaspace pre-tokenizer
             (prepend_scheme first, split false) and a Metaspace decoder
  smollm     Digits(individual) + ByteLevel(use_regex true)
  gpt2       ByteLevel alone (GPT-2's shape: bpe.c encodes it alone)
  kitchen    every other option once: NFKC, Lowercase, Strip, Replace with a
             regex, Split behaviors (MergedWithPrevious, MergedWithNext,
             Contiguous, Removed, invert), Punctuation, WhitespaceSplit, a
             char-level BPE with an unk token but no byte fallback, added tokens
             with single_word, lstrip, rstrip and normalized, decoders Replace,
             Fuse and Strip
  metaspace  Metaspace(prepend always, split true) + Whitespace-free words,
             Digits(contiguous), a Metaspace decoder with prepend never
  wsplit     Whitespace pre-tokenizer, ByteLevel(add_prefix_space true) last

For each, every text of the stress corpus (below: CJK, Arabic, emoji with
ZWJ, combining marks, digit runs, whitespace runs, tabs and newlines, special
tokens inside text, invalid UTF-8) is encoded without and with special tokens
and decoded with and without skip_special_tokens; expected.json holds the ids
and texts. A text given as bytes that are not UTF-8 is handed to tokenizers
as bytes.decode("utf-8", "replace") — the rule retort states for such input —
while the C test gives retort the raw bytes. A longer text (64 KB of
moby-dick.txt from offset 200000, not seen in training) is checked by its id
count and the FNV-1a 64 hash of its ids.

Run from the repository root: .venv/bin/python tests/make_tokenizer_json_fixtures.py tests/fixtures/tokjson
"""
import json
import os
import struct
import sys

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

SHARED = "../shared/data"
LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
              r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
             r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
VOCAB = 700
FNV_OFFSET, FNV_PRIME, MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1

STRESS = [
    "Hello world! How's it going? I'm fine, you'll see. DON'T SHOUT, they'RE here.",
    "日本語のテキストと中文混合，还有한국어도 있어요。東京 2024年3月15日",
    "مرحبا بالعالم، كيف حالك؟ ١٢٣٤ وشكرا",
    "Family: \U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 flags \U0001F1EB\U0001F1F7"
    "\U0001F1EF\U0001F1F5 skin \U0001F44D\U0001F3FD love \u2764\uFE0F!!",
    "e\u0301 vs \u00e9, A\u030A vs \u212B, \ufb01ne ligature, \uff26\uff55\uff4c\uff4c width, "
    "\u2460\u2461\u2462, \u0130stanbul, \u03a3\u0391\u03a3 \u1f48\u0394\u03a5\u03a3\u03a3\u0395\u038e\u03a3",
    "1234567890 3.14159 1,000,000 00042 \u0663\u0664\u0665 \u00b2\u00b3 x2y33z444",
    "a  b   c\t\td\n\n\ne \r\n f\u00a0g\u3000h   \n  ",
    "def f(x):\n\treturn x  # comment\n\n\nclass A:\n    pass\n",
    "<|endoftext|>text<s>more</s> <|im_start|>user\nhi<|im_end|> [MASK] mask [mask]",
    "the  <sep>  marker,  word<sep>word and ok<sep>",
    "",
    " ",
    "\n\n",
    "   leading and trailing   ",
    "naïve café résumé Ærøskøbing Ђорђе Ελληνικά",
    "\u2581already has metaspace \u2581\u2581 chars and <0x0A> literal",
    "a" * 300 + " " + "supercalifragilistic" * 5,
    "replacement \ufffd char and zero\u200bwidth and tab\tend",
    b"valid \xff\xfe invalid \xe6\x97 truncated \xc3( end \xed\xa0\x80 surrogate",
    b"\xf0\x9f\x98 cut emoji and \x80 lone continuation",
]


def fnv1a64(data, h=FNV_OFFSET):
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def ids_hash(ids):
    return fnv1a64(struct.pack(f"<{len(ids)}I", *ids))


def corpus():
    moby = open(os.path.join(SHARED, "text/moby-dick.txt"), encoding="utf-8", newline="").read()
    lines = moby[:200000].splitlines()
    lines += [t for t in STRESS if isinstance(t, str)] * 3
    return lines, moby[200000:265536], len(moby[:200000].encode("utf-8"))


def byte_level_trainer(specials):
    return trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def template(first, specials):
    return processors.TemplateProcessing(single=f"{first} $A", pair=f"{first} $A {first} $B",
                                         special_tokens=[(first, specials[first])])


def llama3(lines):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, byte_level_trainer(specials))
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        template("<|begin_of_text|>", {"<|begin_of_text|>": tok.token_to_id("<|begin_of_text|>")})])
    return tok, {"eos_token": "<|end_of_text|>", "bos_token": "<|begin_of_text|>"}


def qwen2(lines):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(lines, byte_level_trainer(specials))
    return tok, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}


BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def sentencepiece_model(lines, limit_alphabet=120):
    """A Llama-style BPE: <unk> <s> </s>, the 256 byte tokens, then pieces, all in
    model.vocab (trained over Metaspace words, as SentencePiece pieces never cross
    a word start); characters outside the kept alphabet fall back to bytes."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=VOCAB + 256, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"] + BYTE_TOKENS,
                                  limit_alphabet=limit_alphabet)
    tok.train_from_iterator(lines, trainer)
    spec = json.loads(tok.to_str())
    # the byte tokens are vocabulary pieces in Llama's file, not added tokens
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] not in BYTE_TOKENS]
    for t in spec["added_tokens"]:
        t["normalized"] = False
    return spec


def llama2(lines):
    spec = sentencepiece_model(lines)
    for t in spec["added_tokens"]:  # as OpenLLaMA's file has them: matched, and decoded,
        t["normalized"] = t["content"] != "</s>"  # in the normalizer's spelling "▁<s>"
    spec["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    spec["pre_tokenizer"] = None
    spec["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = template("<s>", {"<s>": tok.token_to_id("<s>")})
    return tok, {"eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}


def mistral(lines):
    spec = sentencepiece_model(lines, limit_alphabet=150)
    spec["normalizer"] = None
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                             "prepend_scheme": "first", "split": False}
    spec["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}]}
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = template("<s>", {"<s>": tok.token_to_id("<s>")})
    return tok, {"eos_token": "</s>", "bos_token": "<s>"}


def smollm(lines):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(lines, byte_level_trainer(specials))
    return tok, {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}


def gpt2(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.train_from_iterator(lines, byte_level_trainer(["<|endoftext|>"]))
    return tok, None


def kitchen(lines):
    tok = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Strip(left=True, right=False),
        normalizers.Replace(Regex(r"\d{4,}"), "####"), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[.,;:]"), behavior="merged_with_previous"),
        pre_tokenizers.Split("-", behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"\p{N}+"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[\p{L}\p{M}\p{N}'#]+|\S"), behavior="removed", invert=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
        pre_tokenizers.WhitespaceSplit()])
    # (Strip with right > 0 panics in tokenizers 0.23 on a string shorter than it)
    tok.decoder = decoders.Sequence([decoders.Replace("#", "\u00a4"), decoders.Fuse(),
                                     decoders.Strip(content="x", left=2, right=0)])
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["[UNK]", "[PAD]"],
                                  limit_alphabet=60, show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=True, single_word=True,
                                       normalized=False, special=True)])
    tok.add_tokens([AddedToken("<SEP>", lstrip=True, normalized=True),  # matched as "<sep>"
                    AddedToken("mask", single_word=True, normalized=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="[PAD] $A [PAD] [PAD]", special_tokens=[("[PAD]", tok.token_to_id("[PAD]"))])
    return tok, {"eos_token": "[PAD]"}


def metaspace(lines):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Metaspace(replacement="_", prepend_scheme="always", split=True)])
    tok.decoder = decoders.Metaspace(replacement="_", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "</s>"],
                                  limit_alphabet=90, show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok, {"eos_token": "</s>"}


def wsplit(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, byte_level_trainer(["<|endoftext|>"]))
    return tok, None


BUILDERS = [llama3, qwen2, llama2, mistral, smollm, gpt2, kitchen, metaspace, wsplit]


def as_text(t):
    return t.decode("utf-8", "replace") if isinstance(t, bytes) else t


def as_bytes(t):
    return t if isinstance(t, bytes) else t.encode("utf-8")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokjson"
    lines, held_out, held_out_at = corpus()
    expected = {"reference": f"tokenizers {tokenizers.__version__}",
                "rule": "bytes that are not UTF-8 go to tokenizers as "
                        "bytes.decode('utf-8', 'replace')",
                "texts": [as_bytes(t).hex() for t in STRESS], "tokenizers": {}}
    for build in BUILDERS:
        name = build.__name__
        tok, config = build(lines)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
        if config is not None:
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(config, f, indent=1)
                f.write("\n")
        # what retort reads is the file, so the reference is the file reloaded
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        cases = []
        for t in STRESS:
            text = as_text(t)
            plain = tok.encode(text, add_special_tokens=False).ids
            special = tok.encode(text, add_special_tokens=True).ids
            cases.append({"ids": plain, "ids_special": special,
                          "decode": tok.decode(plain, skip_special_tokens=False),
                          "decode_skip": tok.decode(special, skip_special_tokens=True)})
        long_ids = tok.encode(held_out, add_special_tokens=False).ids
        expected["tokenizers"][name] = {
            "vocab_size": tok.get_vocab_size(), "cases": cases,
            "long": {"tokens": len(long_ids), "fnv1a64": f"{ids_hash(long_ids):016x}"}}
        print(f"{name}: vocab {tok.get_vocab_size()}, held-out text {len(long_ids)} tokens")
    expected["long_text"] = {"file": "text/moby-dick.txt", "offset": held_out_at,
                             "bytes": len(held_out.encode("utf-8")),
                             "fnv1a64": f"{fnv1a64(held_out.encode('utf-8')):016x}"}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out}/expected.json")


if __name__ == "__main__":
    main()
