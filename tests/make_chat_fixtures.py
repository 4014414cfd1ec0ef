#!/usr/bin/env python3
"""Make the chat template fixtures that tests/test_chat_template.c reads.

The templates are real ones, committed beside the fixtures with their sources
in tests/fixtures/chat_templates/SOURCES.md. For each template this renders
the conversations below as transformers renders them, and writes cases.json:

  time       the Unix time strftime_now was fixed to (read as UTC)
  templates  file -> {"family", "bos_token", "eos_token"} (the tokens the
             family's tokenizer_config.json names; null when it has none)
  conversations  name -> {"messages", "tools"}
  cases      one per (template, conversation, add_generation_prompt, extra):
             "output" (apply_chat_template(tokenize=False)) and "spans" (the
             {% generation %} blocks as byte offsets [start, end) into the
             UTF-8 output: transformers' generation_indices, which are
             character offsets, converted), or "error" and "error_type" where
             transformers raises (the template refuses the conversation, or
             fails on it).
  snippets   the short templates of snippets.txt (one feature of the language
             each: whitespace control, scoping, filters, tests, methods, Python
             printing and arithmetic, errors), each rendered with SNIPPET_VARS
             and the messages of SNIPPET_MESSAGES: "source" and "output" and
             "spans", or "error" and "error_type"
  dirs       the template directories under dirs/ loaded with AutoTokenizer
             (chat_template.jinja and additional_chat_templates/ beside a
             tokenizer_config.json, a list of named templates, special tokens
             as AddedToken objects, a legacy special_tokens_map.json), each
             rendered with and without tools.

The output is rendered twice, through a tokenizer's apply_chat_template and
through render_jinja_template with return_assistant_tokens_mask (which gives
the spans); the script stops when the two texts differ. strftime_now reads
datetime.now(), which is patched to TIME.

Run from the repository root:
  .venv/bin/python tests/make_chat_fixtures.py tests/fixtures/chat_templates
With --bench instead, it times transformers' apply_chat_template on the case
tests/test_chat_template.c times (Qwen3, the tool-use conversation) and writes
nothing.
"""
import datetime as dt
import json
import os
import shutil
import sys

from tokenizers import Tokenizer, models
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils import chat_template_utils
from transformers.utils.chat_template_utils import _normalize_chat_messages, render_jinja_template

TIME = dt.datetime(2024, 7, 26, 13, 45, 7)
TIME_UNIX = int(TIME.replace(tzinfo=dt.timezone.utc).timestamp())


class FixedDatetime(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return TIME


chat_template_utils.datetime = FixedDatetime

LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
QWEN = (None, "<|im_end|>")
GEMMA = ("<bos>", "<eos>")
DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
COHERE = ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>")
MISTRAL = ("<s>", "</s>")

# file -> (family, (bos, eos), extra variables to render with besides none)
TEMPLATES = {
    "llama3.jinja": ("Llama 3", LLAMA3, []),
    "llama3_training.jinja": ("Llama 3 (generation-marked)", LLAMA3, []),
    "llama3_1.jinja": ("Llama 3.1", LLAMA3, []),
    "llama3_2.jinja": ("Llama 3.2", LLAMA3, []),
    "qwen2_5.jinja": ("Qwen2.5", QWEN, []),
    "qwen2_5_training.jinja": ("Qwen2.5 (generation-marked)", QWEN, []),
    "qwen3.jinja": ("Qwen3", QWEN, [{"enable_thinking": False}]),
    "qwen3_training.jinja": ("Qwen3 (generation-marked)", QWEN, [{"enable_thinking": False}]),
    "qwen3_5_think.jinja": ("Qwen3.5", QWEN, [{"enable_thinking": False}]),
    "gemma.jinja": ("Gemma, Gemma 2", GEMMA, []),
    "gemma_training.jinja": ("Gemma (generation-marked)", GEMMA, []),
    "gemma3.jinja": ("Gemma 3", GEMMA, []),
    "phi3.jinja": ("Phi-3", ("<s>", "<|endoftext|>"), []),
    "phi3_training.jinja": ("Phi-3 (generation-marked)", ("<s>", "<|endoftext|>"), []),
    "phi3_5.jinja": ("Phi-3.5", ("<s>", "<|endoftext|>"), []),
    "phi4_mini.jinja": ("Phi-4-mini", ("<|endoftext|>", "<|endoftext|>"), []),
    "deepseekv3.jinja": ("DeepSeek-V3", DEEPSEEK, []),
    "deepseekv3_training.jinja": ("DeepSeek-V3 (generation-marked)", DEEPSEEK, []),
    "deepseek_r1_distill_qwen.jinja": ("DeepSeek-R1-Distill-Qwen", DEEPSEEK, []),
    "cohere.jinja": ("Command-R", COHERE, []),
    "cohere2.jinja": ("Command R7B", COHERE, []),
    "cohere2_training.jinja": ("Command R7B (generation-marked)", COHERE, []),
    "glm4moe.jinja": ("GLM-4.5", (None, "<|endoftext|>"), []),
    "gptoss.jinja": ("gpt-oss", ("<|startoftext|>", "<|return|>"), [{"reasoning_effort": "high"}]),
    "lfm2.jinja": ("LFM2", ("<|startoftext|>", "<|im_end|>"), []),
    "nemotron_3_nano.jinja": ("Nemotron 3 Nano", ("<s>", "<|im_end|>"), []),
    "mistral_v0_3.jinja": ("Mistral 7B Instruct v0.3", MISTRAL, []),
    "mistral_small_3_1.jinja": ("Mistral Small 3.1", MISTRAL, []),
    "hermes_2_pro_tool_use.jinja": ("Hermes 2 Pro (tool use)", ("<|begin_of_text|>", "<|im_end|>"), []),
    "chatml.jinja": ("ChatML (SmolLM, Qwen1.5 style)", ("<|im_start|>", "<|im_end|>"), []),
    "zephyr.jinja": ("Zephyr, TinyLlama-Chat", MISTRAL, []),
}

SYSTEM = "You are a helpful assistant. Answer briefly."
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                     "description": "The temperature unit."}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "What to look for."},
            "max_results": {"type": "integer", "description": "How many results."},
            "filters": {"type": "array", "items": {"type": "string"},
                        "description": "Optional filters."}},
            "required": ["query"]}}},
]


def tool_turns(arguments):
    call = {"id": "callA1b2C", "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "callA1b2C", "name": "get_weather",
         "content": "{\"temperature\": 21, \"condition\": \"sunny\"}"},
        {"role": "assistant", "content": "It is sunny and 21 °C in Paris."},
        {"role": "user", "content": "And should I take an umbrella?"},
    ]


CONVERSATIONS = {
    "multi_turn": {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "And of Japan? Answer in one word."},
        {"role": "assistant", "content": "Tokyo."},
        {"role": "user", "content": "Thanks! One more: of Peru?"},
    ], "tools": None},
    "sft": {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another one, bigger."},
        {"role": "assistant", "content": "13 is a bigger prime."},
    ], "tools": None},
    "no_system": {"messages": [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road? To get to the other side."},
    ], "tools": None},
    "tools": {"messages": tool_turns({"city": "Paris", "unit": "celsius"}), "tools": TOOLS},
    "tools_str_args": {"messages": tool_turns("{\"city\": \"Paris\", \"unit\": \"celsius\"}"),
                       "tools": TOOLS},
    "reasoning": {"messages": [
        {"role": "user", "content": "Is 91 prime?"},
        {"role": "assistant", "reasoning_content": "91 = 7 * 13, so it is not prime.",
         "content": "No: 91 = 7 × 13."},
        {"role": "user", "content": "Is 97 prime?"},
        {"role": "assistant", "reasoning_content": "97 has no divisor up to 9.",
         "content": "Yes, 97 is prime."},
    ], "tools": None},
    "unicode": {"messages": [
        {"role": "system", "content": "  Réponds en français, s'il te plaît.  \n"},
        {"role": "user", "content": "Grüße aus 日本 🤖! Quote: \"x\" 'y' \\ back\tslash\nnew line  "},
        {"role": "assistant", "content": "\n Bonjour ! ✨ — voilà.\n\n"},
        {"role": "user", "content": "Ça va ?"},
    ], "tools": None},
}
# add_generation_prompt is rendered both ways for these; False only for the rest
BOTH_WAYS = {"multi_turn", "tools", "unicode"}


def make_tokenizer(bos, eos):
    vocab = {"a": 0}
    for t in (bos, eos):
        if t is not None and t not in vocab:
            vocab[t] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def byte_spans(text, spans):
    return [[len(text[:s].encode()), len(text[:e].encode())] for s, e in spans]


def render(template, tokenizer, conv, agp, extra):
    messages, tools = conv["messages"], conv["tools"]
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools, chat_template=template,
                                             add_generation_prompt=agp, tokenize=False, **extra)
    except Exception as e:  # the template refuses or fails: the C side must too
        return {"error": str(e), "error_type": type(e).__name__}
    rendered, spans = render_jinja_template(
        conversations=[_normalize_chat_messages(messages)], tools=tools, chat_template=template,
        return_assistant_tokens_mask=True, add_generation_prompt=agp,
        **{**tokenizer.special_tokens_map, **extra})
    if rendered[0] != text:
        sys.exit("render_jinja_template and apply_chat_template disagree")
    return {"output": text, "spans": byte_spans(text, spans[0])}


def tokenizer_files(out_dir, config, bos, eos):
    """A tiny tokenizer.json and the given tokenizer_config.json in out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    vocab = {"a": 0, bos: 1, eos: 2}
    Tokenizer(models.BPE(vocab=vocab, merges=[])).save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)


SIMPLE = ("{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}"
          "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
TOOL_USE = "{{ bos_token }}[tools: {{ tools | map(attribute='function.name') | join(', ') }}]" + SIMPLE
ADDED = lambda s: {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                   "single_word": False, "special": True}


def make_dirs(out):
    """Template directories in the layouts transformers reads, with what
    AutoTokenizer renders from each."""
    base = os.path.join(out, "dirs")
    shutil.rmtree(base, ignore_errors=True)
    decoder = {"1": ADDED("<s>"), "2": ADDED("</s>")}
    # a list of named templates in tokenizer_config.json, special tokens as AddedToken objects
    tokenizer_files(os.path.join(base, "config_list"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "added_tokens_decoder": decoder,
        "bos_token": {"__type": "AddedToken", **ADDED("<s>")}, "eos_token": "</s>",
        "chat_template": [{"name": "default", "template": SIMPLE},
                          {"name": "tool_use", "template": TOOL_USE}]}, "<s>", "</s>")
    # chat_template.jinja and additional_chat_templates/ override the config's template
    d = os.path.join(base, "jinja_files")
    tokenizer_files(d, {"tokenizer_class": "PreTrainedTokenizerFast", "added_tokens_decoder": decoder,
                        "bos_token": "<s>", "eos_token": "</s>",
                        "chat_template": "this config template is overridden"}, "<s>", "</s>")
    with open(os.path.join(d, "chat_template.jinja"), "w") as f:
        f.write(SIMPLE + "\n")
    os.makedirs(os.path.join(d, "additional_chat_templates"))
    with open(os.path.join(d, "additional_chat_templates", "tool_use.jinja"), "w") as f:
        f.write(TOOL_USE)
    # no added_tokens_decoder: special_tokens_map.json overrides the config's tokens
    d = os.path.join(base, "legacy_map")
    tokenizer_files(d, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                        "eos_token": "<unused>", "chat_template": SIMPLE}, "<s>", "</s>")
    with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": ADDED("</s>")}, f)
    conv = CONVERSATIONS["multi_turn"]["messages"]
    cases = {}
    for name in ("config_list", "jinja_files", "legacy_map"):
        tok = AutoTokenizer.from_pretrained(os.path.join(base, name))
        cases[name] = {
            "bos_token": tok.special_tokens_map.get("bos_token"),
            "eos_token": tok.special_tokens_map.get("eos_token"),
            "plain": tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False),
            "with_tools": tok.apply_chat_template(conv, tools=TOOLS, add_generation_prompt=True,
                                                  tokenize=False),
        }
    return cases


SNIPPET_MESSAGES = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
SNIPPET_VARS = {"d": {"a": 1, "b": [1, 2], "items": 5, "get": "G"}, "msgs": SNIPPET_MESSAGES,
                "s": "Hello", "n": None}


def read_snippets(path):
    with open(path, encoding="utf-8", newline="") as f:  # keep \r\n: a snippet tests it
        body = f.read().split("%%%%\n", 1)[1]
    return body[:-1].split("\n%%%%\n")


def render_snippet(source):
    try:
        rendered, spans = render_jinja_template(
            conversations=[SNIPPET_MESSAGES], chat_template=source,
            return_assistant_tokens_mask=True, **SNIPPET_VARS)
    except Exception as e:
        return {"source": source, "error": str(e), "error_type": type(e).__name__}
    return {"source": source, "output": rendered[0], "spans": byte_spans(rendered[0], spans[0])}


def bench(out):
    import time
    with open(os.path.join(out, "qwen3.jinja"), encoding="utf-8") as f:
        template = f.read()
    conv = CONVERSATIONS["tools"]
    tokenizer = make_tokenizer(*QWEN)
    render = lambda: tokenizer.apply_chat_template(conv["messages"], tools=conv["tools"],
                                                   chat_template=template, add_generation_prompt=True,
                                                   tokenize=False)
    render()
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        render()
    dt = time.perf_counter() - t0
    print(f"transformers apply_chat_template, qwen3.jinja on the tool-use conversation: "
          f"{n / dt:.0f} renders/s ({dt / n * 1e6:.1f} us each)")


def main():
    if "--bench" in sys.argv:
        args = [a for a in sys.argv[1:] if a != "--bench"]
        return bench(args[0] if args else "tests/fixtures/chat_templates")
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/chat_templates"
    cases = []
    for file, (family, (bos, eos), extras) in TEMPLATES.items():
        with open(os.path.join(out, file), encoding="utf-8") as f:
            template = f.read()
        tokenizer = make_tokenizer(bos, eos)
        for conv_name, conv in CONVERSATIONS.items():
            for extra in [{}] + extras:
                for agp in ([False, True] if conv_name in BOTH_WAYS else [False]):
                    case = {"template": file, "conversation": conv_name,
                            "add_generation_prompt": agp, "extra": extra}
                    case.update(render(template, tokenizer, conv, agp, extra))
                    cases.append(case)
    doc = {
        "time": TIME_UNIX,
        "templates": {f: {"family": fam, "bos_token": bos, "eos_token": eos}
                      for f, (fam, (bos, eos), _) in TEMPLATES.items()},
        "conversations": CONVERSATIONS,
        "cases": cases,
        "snippet_messages": SNIPPET_MESSAGES,
        "snippet_vars": SNIPPET_VARS,
        "snippets": [render_snippet(src) for src in read_snippets(os.path.join(out, "snippets.txt"))],
        "dirs": make_dirs(out),
    }
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    ok = sum("output" in c for c in cases)
    print(f"{len(cases)} cases ({ok} rendered, {len(cases) - ok} refused by the template) "
          f"over {len(TEMPLATES)} templates")


if __name__ == "__main__":
    main()
