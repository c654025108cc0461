import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

import dllm
from dllm.errors import ConfigError
from dllm.models.dream import DreamConfig, DreamModel
from tests.unit.models import family_checks
from tests.unit.models.qwen_layout import qwen_key_shapes, state_shapes

FIXTURE = Path(__file__).parents[2] / "fixtures" / "dream_config"


@pytest.fixture
def model():
    torch.manual_seed(0)
    return dllm.load_model("dream_tiny").eval()


def test_tiny_keys_match_the_qwen2_layout(model):
    assert state_shapes(model) == qwen_key_shapes(64, 2, 128, 100, 4, 2, 16, qkv_bias=True, qk_norm=False)


def test_public_7b_config_gives_the_7b_layout():
    raw = json.loads((FIXTURE / "config.json").read_text())
    config = DreamConfig(**{k: v for k, v in raw.items() if k != "model_type"})
    with torch.device("meta"):
        big = DreamModel(config)
    assert state_shapes(big) == qwen_key_shapes(3584, 28, 18944, 152064, 28, 4, 128, qkv_bias=True, qk_norm=False)
    assert sum(p.numel() for p in big.parameters()) == 7_615_616_512  # Qwen2.5-7B's count
    assert big.mask_token_id == 151666 and big.shift_logits and big.block_size is None


def test_public_config_loads_through_auto_without_remote_code(tmp_path):
    shutil.copy(FIXTURE / "config.json", tmp_path / "config.json")
    assert isinstance(AutoConfig.from_pretrained(tmp_path), DreamConfig)


def test_round_trips(model, tmp_path):
    family_checks.check_round_trips(model, tmp_path, "Dream")


def test_prefix_cache_is_exact(model):
    family_checks.check_prefix_cache_is_exact(model)
    family_checks.check_uncommitted_forward_leaves_the_cache(model)
    family_checks.check_replace_position(model)


def test_gradient_checkpointing(model):
    family_checks.check_gradient_checkpointing(model)


def test_bidirectional_and_shifted(model):
    ids = torch.randint(4, 100, (1, 6))
    changed = ids.clone()
    changed[0, 5] = 50 if ids[0, 5] != 50 else 51
    assert not torch.allclose(model(ids).logits[0, 0], model(changed).logits[0, 0])
    from dllm.models.base import denoiser_logits

    shifted = denoiser_logits(model, ids, None)
    torch.testing.assert_close(shifted[:, 1:], model(ids).logits[:, :-1])


def test_unsupported_options_are_refused():
    with pytest.raises(ConfigError, match="use_sliding_window=True is not supported"):
        DreamConfig(use_sliding_window=True)
