"""`sdar`: SDAR block diffusion (the TraDo checkpoints use it), in the public checkpoint layout.

Qwen3 layout (q/k RMSNorm over the head dimension before RoPE, no biases, untied head);
blocks of `block_size` tokens counted from position 0: at inference a token attends its own
block and every earlier one (block-causal); training runs `[x_t ; x_0]` under the
block-diffusion mask (`dllm.models.masks`). Logits are not shifted. `model_type` "sdar".
"""

from __future__ import annotations

from typing import Any

from dllm.errors import ConfigError
from dllm.models.base import MODELS, ModelPreset, register_family
from dllm.models.qwen import QwenStyleConfig, QwenStyleLM, QwenStyleValueModel
from dllm.tokenizer import CHAR_VOCAB_SIZE


class SDARConfig(QwenStyleConfig):
    model_type = "sdar"
    qk_norm = True

    def __init__(
        self, block_size: int = 4, mask_token_id: int = 151669, attention_bias: bool = False, **kwargs: Any
    ) -> None:
        if attention_bias:
            raise ConfigError("sdar: attention_bias=True is not supported (the public checkpoints have no biases)")
        if block_size < 1:
            raise ConfigError(f"sdar: block_size must be positive, got {block_size}")
        self.block_size = block_size
        self.attention_bias = attention_bias
        super().__init__(mask_token_id=mask_token_id, **kwargs)


class SDARForCausalLM(QwenStyleLM):
    config_class = SDARConfig

    @property
    def block_size(self) -> int:
        return self.config.block_size


class SDARValueModel(QwenStyleValueModel):
    config_class = SDARConfig

    @property
    def block_size(self) -> int:
        return self.config.block_size


register_family(SDARConfig, SDARForCausalLM, SDARValueModel)

_CHAR = dict(
    vocab_size=CHAR_VOCAB_SIZE, mask_token_id=2, eos_token_id=1, pad_token_id=0, bos_token_id=None,
    max_position_embeddings=4096, rope_theta=10000.0, block_size=4,
)  # fmt: skip
sdar = MODELS.register("sdar")(ModelPreset(SDARConfig, SDARForCausalLM))
sdar_tiny = MODELS.register("sdar_tiny")(
    ModelPreset(SDARConfig, SDARForCausalLM, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, **_CHAR)
)  # fmt: skip
sdar_small = MODELS.register("sdar_small")(
    ModelPreset(SDARConfig, SDARForCausalLM, hidden_size=192, intermediate_size=512, num_hidden_layers=4,
                num_attention_heads=6, num_key_value_heads=2, head_dim=32, **_CHAR)
)  # fmt: skip
