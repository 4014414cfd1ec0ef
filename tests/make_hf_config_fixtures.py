#!/usr/bin/env python3
"""Make the config.json fixtures that tests/test_hf_files.c reads:
tests/fixtures/configs/NAME/config.json and NAME/expected.json.

Two kinds of config.json:
  - as published on the Hugging Face Hub (transformers 4 spellings:
    rope_theta + rope_scaling, torch_dtype), copied here key for key for
    SmolLM2-135M, Llama-3.2-1B, TinyLlama-1.1B, Mistral-7B v0.1 and v0.3,
    Qwen2.5-0.5B, Qwen2.5-7B with YaRN as its model card sets it, Qwen3-0.6B,
    and a GPT-2 with the Mistral/Stanford attention scalings;
  - written by this transformers' save_pretrained (transformers 5 spellings:
    rope_parameters, dtype) for tiny configs of every family and every RoPE
    type retort implements (linear, llama3, yarn with mscale, beta and
    truncate), head_dim overrides, biases, MQA and sliding windows.
expected.json is check_hf_config.resolve: what transformers builds from it.

Run with: .venv/bin/python tests/make_hf_config_fixtures.py tests/fixtures
"""
import json
import os
import sys

from transformers import (GPT2Config, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_hf_config import resolve  # noqa: E402

HUB = {
    "smollm2_135m": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576,
        "initializer_range": 0.041666666666666664, "intermediate_size": 1536,
        "is_llama_config": True, "max_position_embeddings": 8192, "model_type": "llama",
        "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": False,
        "rope_scaling": None, "rope_theta": 100000, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.42.3", "use_cache": True,
        "vocab_size": 49152},
    "llama32_1b": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
        "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256},
    "tinyllama_1b": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
        "intermediate_size": 5632, "max_position_embeddings": 2048, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 22, "num_key_value_heads": 4,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.35.0",
        "use_cache": True, "vocab_size": 32000},
    "mistral_7b_v01": {
        "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 32000},
    "mistral_7b_v03": {
        "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": None,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.42.0.dev0", "use_cache": True, "vocab_size": 32768},
    "qwen25_05b": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
        "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 32768,
        "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
        "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 151936},
    "qwen25_7b_yarn": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584,
        "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 32768,
        "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
        "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 152064,
        "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768,
                         "type": "yarn"}},
    "qwen3_06b": {
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
        "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
        "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
        "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
        "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False,
        "vocab_size": 151936},
    "gpt2_scaled": {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
        "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_inner": None, "n_layer": 12,
        "n_positions": 1024, "reorder_and_upcast_attn": True, "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": True, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": "float32",
        "transformers_version": "4.21.0", "use_cache": True, "vocab_size": 50257},
}

TINY_LLAMA = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-5,
                  bos_token_id=1, eos_token_id=2)
SAVED = {
    "tiny_gpt2_noscale": GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=67, n_positions=16,
                                    scale_attn_weights=False, activation_function="gelu_pytorch_tanh",
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                    bos_token_id=66, eos_token_id=66),
    "tiny_llama_gqa_linear": LlamaConfig(**TINY_LLAMA, num_key_value_heads=2, tie_word_embeddings=False,
                                         rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                          "rope_theta": 5000.0}),
    "tiny_llama_mqa_bias_llama3": LlamaConfig(
        **TINY_LLAMA, num_key_value_heads=1, attention_bias=True, mlp_bias=True, head_dim=32,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16,
                         "rope_theta": 500000.0}),
    "tiny_llama_yarn": LlamaConfig(
        **TINY_LLAMA, num_key_value_heads=4,
        rope_parameters={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                         "beta_fast": 16.0, "beta_slow": 2.0, "mscale": 0.8, "mscale_all_dim": 0.5,
                         "truncate": False, "rope_theta": 10000.0}),
    "tiny_mistral_window": MistralConfig(**TINY_LLAMA, num_key_value_heads=2, sliding_window=8,
                                         head_dim=24),
    "tiny_qwen2_sliding": Qwen2Config(**TINY_LLAMA, num_key_value_heads=2, use_sliding_window=True,
                                      sliding_window=8, max_window_layers=0,
                                      tie_word_embeddings=True),
    "tiny_qwen3_bias": Qwen3Config(**TINY_LLAMA, num_key_value_heads=2, head_dim=32,
                                   attention_bias=True,
                                   rope_parameters={"rope_type": "yarn", "factor": 2.0,
                                                    "original_max_position_embeddings": 32,
                                                    "attention_factor": 1.25,
                                                    "rope_theta": 1000000.0}),
}


def main():
    out = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures", "configs")
    for name, cfg in HUB.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
    for name, cfg in SAVED.items():
        d = os.path.join(out, name)
        cfg.save_pretrained(d)
    for name in list(HUB) + list(SAVED):
        d = os.path.join(out, name)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(resolve(d), f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote", d)


if __name__ == "__main__":
    main()
