"""`llada`: LLaDA, a full-attention masked diffusion transformer, in the public checkpoint layout.

Parameter names follow the LLaDA-8B checkpoints (OLMo style): `model.transformer.wte`,
`model.transformer.blocks.N.{attn_norm,q_proj,k_proj,v_proj,attn_out,ff_norm,ff_proj,up_proj,
ff_out}`, `model.transformer.ln_f`, `model.transformer.ff_out`. Attention is bidirectional;
padding masks keys only; RoPE positions count from 0 over the whole input, padding included,
as in the reference modeling code.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer

from dllm.errors import ConfigError
from dllm.models.attention import attention_backend
from dllm.models.base import MODELS, DiffusionLMMixin, ModelPreset, ValueModelMixin, init_weights, register_family
from dllm.models.cache import KVCache, rotate_and_cache
from dllm.models.chosen import LinearHead, hooked
from dllm.models.layers import RMSNorm, RotaryEmbedding, swiglu
from dllm.models.stack import run_stack
from dllm.tokenizer import CHAR_VOCAB_SIZE

# Values of the public config.json that this implementation computes; any other is refused.
_SUPPORTED = {
    "block_type": "llama",
    "activation_type": "silu",
    "layer_norm_type": "rms",
    "rope": True,
    "alibi": False,
    "attention_layer_norm": False,
    "input_emb_norm": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "block_group_size": 1,
}


class LLaDAConfig(PretrainedConfig):
    """The fields of LLaDA's `config.json` that define the computation (others are kept, unused)."""

    model_type = "llada"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "max_position_embeddings": "max_sequence_length",
    }

    def __init__(
        self,
        d_model: int = 4096,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        n_layers: int = 32,
        mlp_hidden_size: int | None = 12288,
        mlp_ratio: int = 4,
        vocab_size: int = 126464,
        embedding_size: int | None = 126464,
        max_sequence_length: int = 4096,
        rope_theta: float = 500000.0,
        rms_norm_eps: float = 1e-5,
        weight_tying: bool = False,
        scale_logits: bool = False,
        init_std: float = 0.02,
        mask_token_id: int = 126336,
        eos_token_id: int | None = 126081,
        pad_token_id: int | None = 126081,
        attn_backend: str = "sdpa",
        **kwargs: Any,
    ) -> None:
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads or n_heads
        self.n_layers = n_layers
        self.mlp_ratio = mlp_ratio
        self.mlp_hidden_size = mlp_hidden_size or mlp_ratio * d_model
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size or vocab_size
        self.max_sequence_length = max_sequence_length
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.weight_tying = weight_tying
        self.scale_logits = scale_logits
        self.init_std = init_std
        self.mask_token_id = mask_token_id
        self.attn_backend = attn_backend
        for key, supported in _SUPPORTED.items():
            value = kwargs.get(key, supported)
            if value != supported and value is not None:
                raise ConfigError(f"llada: {key}={value!r} is not supported (dllm implements {key}={supported!r})")
        super().__init__(eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs)
        self.tie_word_embeddings = False  # LLaDA ties through `weight_tying`, without a second key
        if d_model % n_heads or n_heads % self.n_kv_heads:
            raise ConfigError(
                f"llada: d_model ({d_model}) must divide by n_heads ({n_heads}), "
                f"and n_heads by n_kv_heads ({self.n_kv_heads})"
            )
        if self.embedding_size < vocab_size:
            raise ConfigError(f"llada: embedding_size ({embedding_size}) must be >= vocab_size ({vocab_size})")


class LLaDABlock(GradientCheckpointingLayer):
    """Pre-norm block: x + attn_out(attn(attn_norm(x))), then x + ff_out(silu(ff_proj) * up_proj)."""

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = config.n_heads, config.n_kv_heads
        self.head_dim = config.d_model // config.n_heads
        kv_dim = self.n_kv_heads * self.head_dim
        self.attn_norm = RMSNorm(config.d_model, eps=config.rms_norm_eps)
        self.q_proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.k_proj = nn.Linear(config.d_model, kv_dim, bias=False)
        self.v_proj = nn.Linear(config.d_model, kv_dim, bias=False)
        self.attn_out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.ff_norm = RMSNorm(config.d_model, eps=config.rms_norm_eps)
        self.ff_proj = nn.Linear(config.d_model, config.mlp_hidden_size, bias=False)
        self.up_proj = nn.Linear(config.d_model, config.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(config.mlp_hidden_size, config.d_model, bias=False)
        self.attention = attention_backend(config.attn_backend)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
        commit: bool = False,
        replace_position: int | None = None,
    ) -> Tensor:
        batch, length, _ = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k, v = rotate_and_cache(q, k, v, cos, sin, cache, layer, commit, replace_position)
        attended = self.attention(q, k, v, mask).transpose(1, 2).reshape(batch, length, -1)
        x = x + self.attn_out(attended)
        return x + swiglu(self.ff_norm(x), self.ff_proj, self.up_proj, self.ff_out)


class LLaDAPreTrainedModel(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.init_std)


class LLaDAModel(LLaDAPreTrainedModel):
    """The backbone: `transformer.{wte, blocks, ln_f, ff_out}` as in the public checkpoints
    (`ff_out`, the output head, only `with_head`)."""

    def __init__(self, config: LLaDAConfig, with_head: bool = True) -> None:
        super().__init__(config)
        layers = {
            "wte": nn.Embedding(config.embedding_size, config.d_model),
            "blocks": nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
            "ln_f": RMSNorm(config.d_model, eps=config.rms_norm_eps),
        }
        if with_head and not config.weight_tying:
            layers["ff_out"] = nn.Linear(config.d_model, config.embedding_size, bias=False)
        self.transformer = nn.ModuleDict(layers)
        self.rotary = RotaryEmbedding(config.d_model // config.n_heads, config.rope_theta)
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
        block_size: int | None = None,  # full attention: no blocks to resize
    ) -> Tensor:
        t = self.transformer
        return run_stack(
            t.wte, t.blocks, t.ln_f, self.rotary, None, input_ids, attention_mask, position_ids, cache, commit,
            replace_position,
        )  # fmt: skip

    def logits(self, hidden: Tensor) -> Tensor:
        # The head is called as a module (not through its weight) so LoRA and hooks apply to it.
        if self.config.weight_tying:
            logits = F.linear(hidden, self.transformer.wte.weight)
        else:
            logits = self.transformer.ff_out(hidden)
        if self.config.scale_logits:
            logits = logits * self.logit_scale()
        return logits

    def logit_scale(self) -> float:
        return 1 / self.config.d_model**0.5 if self.config.scale_logits else 1.0

    def linear_head(self) -> LinearHead | None:
        """`logits` as tensors: a tied head is the embedding's weight (read as `logits` reads it)."""
        if self.config.weight_tying:
            embedding = self.transformer.wte
            return None if hooked(embedding) else LinearHead(embedding.weight, None, self.logit_scale())
        return LinearHead.of(self.transformer.ff_out, self.logit_scale())


class LLaDAModelLM(DiffusionLMMixin, LLaDAPreTrainedModel):
    """LLaDA with the dllm model contract; logits are not shifted (position i predicts token i)."""

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def output_logits(self, hidden: Tensor) -> Tensor:
        return self.model.logits(hidden)

    def linear_head(self) -> LinearHead | None:
        return self.model.linear_head()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.transformer.wte = value


class LLaDAValueModel(ValueModelMixin, LLaDAPreTrainedModel):
    """LLaDA's backbone without its output head, with a zero-initialised scalar `value_head`."""

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__(config)
        self.model = LLaDAModel(config, with_head=False)
        self.add_value_head(config.d_model)
        self.post_init()


register_family(LLaDAConfig, LLaDAModelLM, LLaDAValueModel)

llada = MODELS.register("llada")(ModelPreset(LLaDAConfig, LLaDAModelLM))


def _char_preset(**sizes: int) -> ModelPreset:
    """A freshly initialised LLaDA over the character tokenizer's vocabulary."""
    return ModelPreset(
        LLaDAConfig, LLaDAModelLM, vocab_size=CHAR_VOCAB_SIZE, embedding_size=None, mask_token_id=2,
        eos_token_id=1, pad_token_id=0, max_sequence_length=4096, rope_theta=10000.0, **sizes,
    )  # fmt: skip


llada_tiny = MODELS.register("llada_tiny")(_char_preset(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=128))
llada_small = MODELS.register("llada_small")(_char_preset(d_model=192, n_heads=6, n_layers=4, mlp_hidden_size=512))
