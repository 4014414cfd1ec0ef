#!/usr/bin/env python3
"""What transformers builds from a config.json, and whether two config.json
files build the same model.

  .venv/bin/python tests/check_hf_config.py SOURCE_DIR WRITTEN_DIR [SOURCE WRITTEN ...]

resolve(dir) loads dir/config.json with AutoConfig, builds the model on
PyTorch's meta device (no memory, no weights; a 7B config costs nothing) and
reads off every choice that changes the forward pass as the modeling code
made it: sizes, heads, key/value heads, head size, biases present on each
projection, q/k norms, a tied head, the sliding window of each layer, the
normalization epsilon, GPT-2's attention scalings, and the rotary inverse
frequencies and attention scaling its RoPE init function computes (float32,
compared exactly). make_hf_config_fixtures.py records it beside each fixture
as expected.json; the command line compares two directories and exits
non-zero, naming the fields, when they differ (tests/test_hf_files.c runs it
on what hf_config_write wrote back). Exit 77 when transformers is missing."""
import json
import sys
import warnings

try:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
except ImportError:  # the C test reports a visible skip
    sys.exit(77)


def resolve(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = AutoConfig.from_pretrained(d)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
    out = {"model_type": cfg.model_type, "class": type(model).__name__}
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    out["tied"] = bool(tied)
    out["vocab_size"] = cfg.vocab_size
    if cfg.model_type == "gpt2":
        blocks = model.transformer.h
        attn = blocks[0].attn
        out.update(n_layer=len(blocks), n_head=attn.num_heads, n_embd=cfg.n_embd,
                   n_positions=cfg.n_positions, eps=float(blocks[0].ln_1.eps),
                   intermediate=blocks[0].mlp.c_fc.weight.shape[1],
                   scale_attn_weights=bool(attn.scale_attn_weights),
                   scale_attn_by_inverse_layer_idx=bool(attn.scale_attn_by_inverse_layer_idx))
        return out
    layers = model.model.layers
    a, mlp = layers[0].self_attn, layers[0].mlp
    hs = a.head_dim
    out.update(
        n_layer=len(layers),
        n_embd=cfg.hidden_size,
        n_head=a.q_proj.weight.shape[0] // hs,
        n_kv_head=a.k_proj.weight.shape[0] // hs,
        head_dim=hs,
        intermediate=mlp.gate_proj.weight.shape[0],
        n_positions=cfg.max_position_embeddings,
        eps=float(model.model.norm.variance_epsilon),
        q_bias=a.q_proj.bias is not None,
        k_bias=a.k_proj.bias is not None,
        v_bias=a.v_proj.bias is not None,
        o_bias=a.o_proj.bias is not None,
        mlp_bias=mlp.gate_proj.bias is not None,
        qk_norm=hasattr(a, "q_norm"),
        scaling=float(a.scaling),
        hidden_act=str(type(mlp.act_fn).__name__),
    )
    if cfg.model_type == "mistral":
        windows = [cfg.sliding_window] * len(layers)
    else:
        windows = [getattr(l.self_attn, "sliding_window", None) for l in layers]
    out["sliding_window"] = windows
    rope = cfg.rope_parameters
    rtype = rope["rope_type"]
    if rtype == "default":
        inv, scale = type(model.model.rotary_emb).compute_default_rope_parameters(cfg, device="cpu")
    else:
        inv, scale = ROPE_INIT_FUNCTIONS[rtype](cfg, device="cpu")
    out.update(rope_type=rtype, rope_theta=float(rope["rope_theta"]),
               inv_freq=[float(x) for x in inv.float().tolist()], attention_scaling=float(scale))
    return out


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: check_hf_config.py SOURCE_DIR WRITTEN_DIR [SOURCE_DIR WRITTEN_DIR ...]")
    failed = 0
    for src, out in zip(args[0::2], args[1::2]):
        a, b = resolve(src), resolve(out)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        for k in diff:
            print(f"{k}: {src}: {a.get(k)!r}  {out}: {b.get(k)!r}"[:400])
        failed += bool(diff)
        if not diff:
            print(f"{out}: transformers builds the same {a['class']} as from {src}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
