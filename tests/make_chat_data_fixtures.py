#!/usr/bin/env python3
"""Make the references tests/test_chat_data.c checks `retort data build` with chat
templates against: transformers' apply_chat_template (token ids and
return_assistant_tokens_mask) for SFT conversations, TRL's DPOTrainer for
conversational preference pairs, and transformers' generate() for --chat.

    .venv/bin/python tests/make_chat_data_fixtures.py tests/fixtures/chat_data

Writes into the directory:
  */tokenizer.json       a byte-level BPE trained with Hugging Face `tokenizers` on
                         the start of Moby-Dick (../shared/data/text/moby-dick.txt),
                         VOCAB tokens, with the added special tokens of both
                         families below; ByteLevel post-processor with
                         trim_offsets false (as Qwen2 and Llama 3 ship it)
  qwen/, zephyr/         tokenizer directories: that tokenizer.json and a
                         tokenizer_config.json whose chat_template is the family's
                         template as its model ships it (no {% generation %}):
                         qwen: Qwen/Qwen2.5-7B-Instruct's template (ChatML, tools;
                         tokenizer_config.json of the Hub repository), eos
                         <|im_end|>; zephyr: TinyLlama/TinyLlama-1.1B-Chat-v1.0's
                         (Zephyr's <|user|> ... </s>), eos </s>
  qwen/generation.jinja, zephyr/generation.jinja
                         the same templates with {% generation %} around each
                         assistant turn's content and end-of-turn token: they
                         render the same text, and transformers marks their
                         assistant tokens (without the blocks it marks none)
  sft_qwen.jsonl, sft_zephyr.jsonl   {"messages": [...], "tools": [...]} lines
  pairs_qwen.jsonl       TRL's conversational preference lines (explicit prompt)
  pairs_implicit.jsonl   the same without prompts (TRL's extract_prompt)
  model/                 a tiny GPT-2 (qwen tokenizer files beside it) trained to
                         answer a user turn in ChatML and end with <|im_end|>
  expected.json          "sft_qwen", "sft_zephyr": per line apply_chat_template's
                         input_ids and assistant_masks (generation template);
                         "pairs_qwen", "pairs_implicit": DPOTrainer's prompt_ids,
                         chosen_ids, rejected_ids (max_length None);
                         "generate": for PROMPTS, the chat-wrapped prompt ids and
                         transformers' greedy continuation, stopping at <|im_end|>;
                         "eval": the summed log-prob of each GEN_TASK reference and
                         <|im_end|> after its wrapped question, and the token count;
                         "agent": the planner's first prompt wrapped as a user turn
"""
import copy
import json
import os
import shutil
import sys

import torch
import transformers
import trl
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel
from trl import DPOConfig, DPOTrainer

SHARED = "../shared/data"
VOCAB = 420
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "</s>"]

# Qwen/Qwen2.5-7B-Instruct, tokenizer_config.json "chat_template" (Hub repository)
QWEN = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# The two assistant branches of QWEN with {% generation %} around what follows
# "<|im_start|>assistant\n" up to and including <|im_end|>; same output text.
QWEN_GEN_PLAIN_OLD = """    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"""
QWEN_GEN_PLAIN_NEW = """    {%- if message.role == "assistant" and not message.tool_calls %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}{{- message.content + '<|im_end|>' }}{%- endgeneration %}
        {{- '\\n' }}
    {%- elif (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"""
QWEN_GEN_CALLS_OLD = """        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}"""
QWEN_GEN_CALLS_NEW = """        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- generation %}
        {%- if message.content %}
            {{- message.content + '\\n' }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {%- if not loop.first %}
                {{- '\\n' }}
            {%- endif %}
            {{- '<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}"""

# TinyLlama/TinyLlama-1.1B-Chat-v1.0, tokenizer_config.json "chat_template" (Hub repository)
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
          "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
          "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  "
          "+ message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n"
          "{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
ZEPHYR_GEN_OLD = "{{ '<|assistant|>\n'  + message['content'] + eos_token }}"
ZEPHYR_GEN_NEW = ("{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + eos_token }}"
                  "{% endgeneration %}\n")  # trim_blocks eats one newline after the tag

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather at a place.",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]}}}]

SFT_QWEN = [
    {"messages": [{"role": "system", "content": "You are a sailor."},
                  {"role": "user", "content": "Where is the whale?"},
                  {"role": "assistant", "content": "Off the starboard bow."}]},
    {"messages": [{"role": "user", "content": "Call me Ishmael."},
                  {"role": "assistant", "content": "Hello, Ishmael."},
                  {"role": "user", "content": "How deep is the sea?"},
                  {"role": "assistant", "content": "Deeper than the mast is tall."}]},
    {"messages": [{"role": "user", "content": "What is the weather in Nantucket?"},
                  {"role": "assistant", "content": "",
                   "tool_calls": [{"type": "function", "function": {
                       "name": "get_weather", "arguments": {"location": "Nantucket"}}}]},
                  {"role": "tool", "content": "{\"temperature\": 12, \"sky\": \"fog\"}"},
                  {"role": "assistant", "content": "Foggy, 12 degrees."}],
     "tools": TOOLS},
    {"messages": [{"role": "user", "content": "Caf\u00e9 \u65e5\u672c \U0001F40B?"},
                  {"role": "assistant", "content": "Na\u00efve \u2713 \u00fcber"}]},
]
SFT_ZEPHYR = [
    {"messages": [{"role": "system", "content": "You are a sailor."},
                  {"role": "user", "content": "Where is the whale?"},
                  {"role": "assistant", "content": "Off the starboard bow."}]},
    {"messages": [{"role": "user", "content": "Call me Ishmael."},
                  {"role": "assistant", "content": "Hello, Ishmael."},
                  {"role": "user", "content": "How deep is the sea?"},
                  {"role": "assistant", "content": "Deeper than the mast is tall."}]},
    {"messages": [{"role": "user", "content": "Caf\u00e9 \u65e5\u672c \U0001F40B?"},
                  {"role": "assistant", "content": "Na\u00efve \u2713 \u00fcber"}]},
]
PAIRS_QWEN = [
    {"prompt": [{"role": "user", "content": "Is the whale white?"}],
     "chosen": [{"role": "assistant", "content": "Yes, white as snow."}],
     "rejected": [{"role": "assistant", "content": "No."}]},
    {"prompt": [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Call me Ishmael."},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Where do we sail?"}],
     "chosen": [{"role": "assistant", "content": "To the Pacific."}],
     "rejected": [{"role": "assistant", "content": "Nowhere at all, the ship stays."}]},
    {"prompt": [{"role": "user", "content": "Weather in Nantucket?"}],
     "chosen": [{"role": "assistant", "content": "I will check.",
                 "tool_calls": [{"type": "function", "function": {
                     "name": "get_weather", "arguments": {"location": "Nantucket"}}}]}],
     "rejected": [{"role": "assistant", "content": "Sunny."}],
     "tools": json.dumps(TOOLS)},
]
PAIRS_IMPLICIT = [
    {"chosen": [{"role": "user", "content": "Is the whale white?"},
                {"role": "assistant", "content": "Yes, white as snow."}],
     "rejected": [{"role": "user", "content": "Is the whale white?"},
                  {"role": "assistant", "content": "No."}]},
    {"chosen": [{"role": "user", "content": "Call me Ishmael."},
                {"role": "assistant", "content": "Hello, Ishmael."}],
     "rejected": [{"role": "user", "content": "Call me Ishmael."},
                  {"role": "assistant", "content": "Who?"}]},
]
GEN_TASK = [("Where is the whale?", "Off the bow."), ("Call me Ishmael.", "Hello, Ishmael."),
            ("How deep is the sea?", "Very deep."), ("Is the whale white?", "Yes, white.")]
PROMPTS = ["Where is the whale?", "Call me Ishmael.", "Is the whale white?"]
MAX_NEW = 12


def make_tokenizer(path):
    text = open(os.path.join(SHARED, "text/moby-dick.txt"), encoding="utf-8").read()[:200000]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text.split("\n\n"), trainer=trainer)
    tok.save(path)


def write_tokenizer_dir(d, tok_json, template, eos):
    os.makedirs(d, exist_ok=True)
    shutil.copy(tok_json, os.path.join(d, "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos,
           "pad_token": "<|endoftext|>", "bos_token": None, "unk_token": None,
           "model_max_length": 4096, "chat_template": template}
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return AutoTokenizer.from_pretrained(d)


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def sft_expected(tok, rows, gen_template):
    out = []
    for r in rows:
        plain = tok.apply_chat_template(r["messages"], tools=r.get("tools"), tokenize=True,
                                        return_dict=True)
        marked = tok.apply_chat_template(r["messages"], tools=r.get("tools"), tokenize=True,
                                         return_dict=True, return_assistant_tokens_mask=True,
                                         chat_template=gen_template)
        text = tok.apply_chat_template(r["messages"], tools=r.get("tools"), tokenize=False)
        marked_text = tok.apply_chat_template(r["messages"], tools=r.get("tools"),
                                              tokenize=False, chat_template=gen_template)
        if text != marked_text or plain["input_ids"] != marked["input_ids"]:
            sys.exit(f"the generation template renders other text than the model's; fix it:\n"
                     f"{text!r}\n{marked_text!r}")
        assert sum(marked["assistant_masks"]) > 0
        out.append({"input_ids": marked["input_ids"], "assistant_masks": marked["assistant_masks"],
                    "text": text})
    return out


def trl_pairs(tok, rows, model):
    args = DPOConfig(output_dir="/tmp/retort-trl-chat", max_length=None, report_to=[],
                     bf16=False, use_cpu=True, per_device_train_batch_size=1)
    # Dataset.from_list takes its columns from the first row: give every row the tools column
    if any("tools" in r for r in rows):
        rows = [{"tools": None} | r for r in rows]
    t = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=Dataset.from_list(rows),
                   processing_class=tok)
    shutil.rmtree("/tmp/retort-trl-chat", ignore_errors=True)
    return [{"prompt_ids": list(r["prompt_ids"]), "chosen_ids": list(r["chosen_ids"]),
             "rejected_ids": list(r["rejected_ids"])} for r in t.train_dataset]


def train_chat_model(tok, d):
    """A tiny GPT-2 taught to answer GEN_TASK's questions in ChatML."""
    torch.manual_seed(5)
    V = len(tok)
    cfg = GPT2Config(vocab_size=V, n_positions=96, n_embd=24, n_layer=2, n_head=2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
                     eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
    model = GPT2LMHeadModel(cfg)
    seqs = [tok.apply_chat_template([{"role": "user", "content": q},
                                     {"role": "assistant", "content": a}], tokenize=True,
                                    return_dict=True)["input_ids"] for q, a in GEN_TASK]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    L = max(len(s) for s in seqs)
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    ids = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
    labels = torch.tensor([s + [-100] * (L - len(s)) for s in seqs])
    for _ in range(200):
        loss = model(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(os.path.dirname(d), "qwen", f), os.path.join(d, f))
    gens = []
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                      return_dict=True, add_generation_prompt=True)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        top2 = torch.topk(logits, 2).values
        out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False,
                             eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                             pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"))
        new = out[0, len(ids):].tolist()
        gens.append({"prompt": p, "prompt_ids": ids, "new_ids": new,
                     "text": tok.decode([t for t in new if t != tok.convert_tokens_to_ids("<|im_end|>")]),
                     "top2_gap": float(top2[0] - top2[1])})
    # eval --chat: log p(reference + <|im_end|> | wrapped prompt), summed over the references
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    logp_sum, count = 0.0, 0
    for q, a in GEN_TASK:
        p_ids = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=True,
                                        return_dict=True, add_generation_prompt=True)["input_ids"]
        r_ids = tok(a, add_special_tokens=False)["input_ids"] + [im_end]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([p_ids + r_ids])).logits[0].double(), -1)
        for j, t in enumerate(r_ids):
            logp_sum += float(lp[len(p_ids) + j - 1, t])
        count += len(r_ids)
    ev = {"prompts": [q for q, _ in GEN_TASK], "references": [a for _, a in GEN_TASK],
          "ref_logp_sum": logp_sum, "ref_tokens": count}
    return model, gens, ev


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/chat_data"
    os.makedirs(out, exist_ok=True)
    tok_json = os.path.join(out, ".tokenizer.json")
    make_tokenizer(tok_json)
    qwen_gen = QWEN.replace(QWEN_GEN_PLAIN_OLD, QWEN_GEN_PLAIN_NEW).replace(
        QWEN_GEN_CALLS_OLD, QWEN_GEN_CALLS_NEW)
    zephyr_gen = ZEPHYR.replace(ZEPHYR_GEN_OLD, ZEPHYR_GEN_NEW)
    assert qwen_gen.count("generation %}") == 4 and zephyr_gen.count("generation %}") == 2
    qwen = write_tokenizer_dir(os.path.join(out, "qwen"), tok_json, QWEN, "<|im_end|>")
    zephyr = write_tokenizer_dir(os.path.join(out, "zephyr"), tok_json, ZEPHYR, "</s>")
    # beside the tokenizer_config.json that gives them their special tokens
    for name, text in [("qwen/generation.jinja", qwen_gen), ("zephyr/generation.jinja", zephyr_gen)]:
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    write_jsonl(os.path.join(out, "sft_qwen.jsonl"), SFT_QWEN)
    write_jsonl(os.path.join(out, "sft_zephyr.jsonl"), SFT_ZEPHYR)
    write_jsonl(os.path.join(out, "pairs_qwen.jsonl"), PAIRS_QWEN)
    write_jsonl(os.path.join(out, "pairs_implicit.jsonl"), PAIRS_IMPLICIT)
    sft_q = sft_expected(qwen, SFT_QWEN, qwen_gen)
    sft_z = sft_expected(zephyr, SFT_ZEPHYR, zephyr_gen)
    model, gens, ev = train_chat_model(qwen, os.path.join(out, "model"))
    # agent --chat: the planner's prompt (eval/agent.h's rendering up to its header) as a user turn
    agent_text = "<|user|>\nWhat is 2 + 3?\n<|planner|>\n"
    agent_ids = qwen.apply_chat_template([{"role": "user", "content": agent_text}], tokenize=True,
                                         return_dict=True, add_generation_prompt=True)["input_ids"]
    for g in gens:
        if g["top2_gap"] < 1e-3:
            sys.exit(f"near tie in the first greedy step of {g['prompt']!r}; change the seed")
    expected = {
        "reference": f"transformers {transformers.__version__}, TRL {trl.__version__}",
        "sft_qwen": sft_q,
        "sft_zephyr": sft_z,
        "pairs_qwen": trl_pairs(qwen, PAIRS_QWEN, model),
        "pairs_implicit": trl_pairs(qwen, PAIRS_IMPLICIT, model),
        "generate": gens,
        "eval": ev,
        "agent": {"query": "What is 2 + 3?", "prompt_ids": agent_ids},
        "end_of_turn": {"qwen": qwen.convert_tokens_to_ids("<|im_end|>"),
                        "zephyr": zephyr.convert_tokens_to_ids("</s>")},
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
    os.remove(tok_json)  # each directory holds its copy
    print(f"wrote {out}: generations {[g['text'] for g in gens]}")


if __name__ == "__main__":
    main()
