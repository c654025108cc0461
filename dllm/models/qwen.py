"""The Qwen2/Qwen3 transformer that Dream (bidirectional, shifted logits) and SDAR/TraDo
(block-causal, q/k norm) share, in the public checkpoints' layout:

`model.embed_tokens`, `model.layers.N.self_attn.{q,k,v,o}_proj` (+ `q_norm`, `k_norm` with
`qk_norm`; q/k/v biases with `qkv_bias`), `model.layers.N.mlp.{gate,up,down}_proj`,
`model.layers.N.{input,post_attention}_layernorm`, `model.norm`, `lm_head`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer

from dllm.errors import ConfigError
from dllm.models.attention import attention_backend
from dllm.models.base import DiffusionLMMixin, ValueModelMixin, init_weights
from dllm.models.cache import KVCache, rotate_and_cache
from dllm.models.chosen import LinearHead
from dllm.models.layers import RMSNorm, RotaryEmbedding, swiglu
from dllm.models.stack import run_stack


class QwenStyleConfig(PretrainedConfig):
    """Fields of the Qwen2/Qwen3 `config.json` that define the computation."""

    qkv_bias: bool = False
    qk_norm: bool = False

    def __init__(
        self,
        vocab_size: int = 151936,
        hidden_size: int = 4096,
        intermediate_size: int = 22016,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        max_position_embeddings: int = 32768,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = False,
        mask_token_id: int = 151666,
        attn_backend: str = "sdpa",
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.initializer_range = initializer_range
        self.mask_token_id = mask_token_id
        self.attn_backend = attn_backend
        # The reference code's kernel choice; dllm picks its own with `attn_backend`.
        kwargs.pop("attn_implementation", None)
        for key, supported in (("use_sliding_window", False), ("rope_scaling", None), ("hidden_act", "silu")):
            value = kwargs.get(key, supported)
            if value != supported:
                raise ConfigError(
                    f"{self.model_type}: {key}={value!r} is not supported (dllm implements {key}={supported!r})"
                )
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        if num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"{self.model_type}: num_attention_heads ({num_attention_heads}) must divide by "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )


class QwenStyleAttention(nn.Module):
    def __init__(self, config: QwenStyleConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        bias = config.qkv_bias
        self.q_proj = nn.Linear(config.hidden_size, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=False)
        if config.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.qk_norm = config.qk_norm
        self.attention = attention_backend(config.attn_backend)

    def forward(self, h: Tensor, cos, sin, mask, cache, layer, commit, replace_position) -> Tensor:
        batch, length, _ = h.shape
        q = self.q_proj(h).view(batch, length, self.n_heads, self.head_dim)
        k = self.k_proj(h).view(batch, length, self.n_kv_heads, self.head_dim)
        v = self.v_proj(h).view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = rotate_and_cache(
            q.transpose(1, 2), k.transpose(1, 2), v, cos, sin, cache, layer, commit, replace_position
        )
        return self.o_proj(self.attention(q, k, v, mask).transpose(1, 2).reshape(batch, length, -1))


class QwenStyleMLP(nn.Module):
    def __init__(self, config: QwenStyleConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return swiglu(x, self.gate_proj, self.up_proj, self.down_proj)


class QwenStyleDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: QwenStyleConfig) -> None:
        super().__init__()
        self.self_attn = QwenStyleAttention(config)
        self.mlp = QwenStyleMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None, layer=0, commit=False, replace_position=None) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer, commit, replace_position)
        return x + self.mlp(self.post_attention_layernorm(x))


class QwenStylePreTrainedModel(PreTrainedModel):
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["QwenStyleDecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.initializer_range)


class QwenStyleBackbone(QwenStylePreTrainedModel):
    """`embed_tokens`, `layers`, `norm`; full attention, or block-causal with `block_size`."""

    def __init__(self, config: QwenStyleConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(QwenStyleDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.block_size = getattr(config, "block_size", None)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        position_ids: Tensor | None,
        cache: KVCache | None = None,
        commit: bool = False,
        replace_position: int | None = None,
        block_size: int | None = None,
    ) -> Tensor:
        """Block-causal over blocks of `block_size` (default: the config's) for a block model."""
        blocks = (block_size or self.block_size) if self.block_size is not None else None
        return run_stack(
            self.embed_tokens, self.layers, self.norm, self.rotary, blocks, input_ids, attention_mask,
            position_ids, cache, commit, replace_position,
        )  # fmt: skip


class QwenStyleLM(DiffusionLMMixin, QwenStylePreTrainedModel):
    """Backbone + `lm_head`, with the dllm model contract."""

    def __init__(self, config: QwenStyleConfig) -> None:
        super().__init__(config)
        self.model = QwenStyleBackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.post_init()

    def output_logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden)

    def linear_head(self) -> LinearHead | None:
        return LinearHead.of(self.lm_head)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head


class QwenStyleValueModel(ValueModelMixin, QwenStylePreTrainedModel):
    """The backbone with a zero-initialised scalar `value_head` instead of `lm_head`."""

    def __init__(self, config: QwenStyleConfig) -> None:
        super().__init__(config)
        self.model = QwenStyleBackbone(config)
        self.add_value_head(config.hidden_size)
        self.post_init()
