"""`dream`: Dream (and DiffuCoder), a bidirectional masked diffusion LM initialised from an
autoregressive Qwen2, in the public checkpoint layout.

Qwen2 layout with q/k/v biases; attention is bidirectional; logits are shifted: the output
at position i-1 predicts token i (`shift_logits = True`), as Dream's decoder reads them.
`model_type` "Dream" as in the public `config.json`.
"""

from __future__ import annotations

from typing import Any

from dllm.models.base import MODELS, ModelPreset, register_family
from dllm.models.qwen import QwenStyleConfig, QwenStyleLM, QwenStyleValueModel
from dllm.tokenizer import CHAR_VOCAB_SIZE


class DreamConfig(QwenStyleConfig):
    model_type = "Dream"
    qkv_bias = True

    def __init__(self, mask_token_id: int = 151666, pad_token_id: int | None = 151643, **kwargs: Any) -> None:
        super().__init__(mask_token_id=mask_token_id, pad_token_id=pad_token_id, **kwargs)


class DreamModel(QwenStyleLM):
    config_class = DreamConfig
    shift_logits = True


class DreamValueModel(QwenStyleValueModel):
    config_class = DreamConfig


register_family(DreamConfig, DreamModel, DreamValueModel)

_CHAR = dict(
    vocab_size=CHAR_VOCAB_SIZE, mask_token_id=2, eos_token_id=1, pad_token_id=0, bos_token_id=None,
    max_position_embeddings=4096, rope_theta=10000.0,
)  # fmt: skip
dream = MODELS.register("dream")(ModelPreset(DreamConfig, DreamModel))
dream_tiny = MODELS.register("dream_tiny")(
    ModelPreset(DreamConfig, DreamModel, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, **_CHAR)
)  # fmt: skip
dream_small = MODELS.register("dream_small")(
    ModelPreset(DreamConfig, DreamModel, hidden_size=192, intermediate_size=512, num_hidden_layers=4,
                num_attention_heads=6, num_key_value_heads=2, **_CHAR)
)  # fmt: skip
