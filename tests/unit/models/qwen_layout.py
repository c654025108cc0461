"""The Qwen2/Qwen3 checkpoint key layout shared by Dream and SDAR tests."""


def qwen_key_shapes(hidden, layers, intermediate, vocab, heads, kv_heads, head_dim, qkv_bias, qk_norm, tied=False):
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not tied:
        shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(layers):
        prefix = f"model.layers.{i}."
        shapes.update({
            prefix + "self_attn.q_proj.weight": (heads * head_dim, hidden),
            prefix + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            prefix + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
            prefix + "self_attn.o_proj.weight": (hidden, heads * head_dim),
            prefix + "mlp.gate_proj.weight": (intermediate, hidden),
            prefix + "mlp.up_proj.weight": (intermediate, hidden),
            prefix + "mlp.down_proj.weight": (hidden, intermediate),
            prefix + "input_layernorm.weight": (hidden,),
            prefix + "post_attention_layernorm.weight": (hidden,),
        })  # fmt: skip
        if qkv_bias:
            shapes.update({
                prefix + "self_attn.q_proj.bias": (heads * head_dim,),
                prefix + "self_attn.k_proj.bias": (kv_heads * head_dim,),
                prefix + "self_attn.v_proj.bias": (kv_heads * head_dim,),
            })  # fmt: skip
        if qk_norm:
            shapes[prefix + "self_attn.q_norm.weight"] = (head_dim,)
            shapes[prefix + "self_attn.k_norm.weight"] = (head_dim,)
    return shapes


def state_shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
