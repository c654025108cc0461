import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import dllm
from dllm.algorithms.denoise import noisy_outputs
from dllm.errors import ConfigError
from dllm.models.sdar import SDARConfig, SDARForCausalLM
from tests.unit.models import family_checks
from tests.unit.models.qwen_layout import qwen_key_shapes, state_shapes

FIXTURE = Path(__file__).parents[2] / "fixtures" / "sdar_config"


@pytest.fixture
def model():
    torch.manual_seed(0)
    return dllm.load_model("sdar_tiny").eval()


def test_tiny_keys_match_the_qwen3_layout(model):
    assert state_shapes(model) == qwen_key_shapes(64, 2, 128, 100, 4, 2, 16, qkv_bias=False, qk_norm=True)


def test_public_4b_config_gives_the_4b_layout():
    raw = json.loads((FIXTURE / "config.json").read_text())
    config = SDARConfig(**{k: v for k, v in raw.items() if k != "model_type"})
    with torch.device("meta"):
        big = SDARForCausalLM(config)
    assert state_shapes(big) == qwen_key_shapes(2560, 36, 9728, 151936, 32, 8, 128, qkv_bias=False, qk_norm=True)
    # SDAR-4B-Chat's index: 8,822,848,512 bytes in bf16, 399 tensors
    assert sum(p.numel() for p in big.parameters()) * 2 == 8_822_848_512
    assert len(big.state_dict()) == 399
    assert big.mask_token_id == 151669 and big.block_size == 4 and not big.shift_logits


def test_public_config_loads_through_auto_without_remote_code(tmp_path):
    shutil.copy(FIXTURE / "config.json", tmp_path / "config.json")
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SDARConfig)


def test_round_trips(model, tmp_path):
    family_checks.check_round_trips(model, tmp_path, "sdar")
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), SDARForCausalLM)


def test_one_forward_equals_two_block_forwards_through_the_cache(model):
    ids = torch.randint(4, 100, (2, 8))
    full = model(ids).logits
    first = model(ids[:, :4], use_cache=True)
    second = model(ids[:, 4:], past_key_values=first.past_key_values, use_cache=True)
    torch.testing.assert_close(first.logits, full[:, :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second.logits, full[:, 4:], atol=1e-5, rtol=1e-5)
    assert second.past_key_values.length == 8


def test_cache_semantics(model):
    family_checks.check_prefix_cache_is_exact(model)
    family_checks.check_uncommitted_forward_leaves_the_cache(model)


def test_block_causal_without_a_mask(model):
    ids = torch.randint(4, 100, (1, 8))
    changed = ids.clone()
    changed[0, 6] = 50 if ids[0, 6] != 50 else 51
    a, b = model(ids).logits, model(changed).logits
    assert torch.equal(a[:, :4], b[:, :4])  # block 0 never sees block 1
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    changed_early = ids.clone()
    changed_early[0, 1] = 50 if ids[0, 1] != 50 else 51
    assert not torch.allclose(model(changed_early).logits[:, 0], a[:, 0])  # bidirectional in a block


def test_training_forward_matches_inference_on_clean_blocks(model):
    """With x_t = x_0, the noisy half of [x_t ; x_0] sees what inference sees: its own block and
    the clean earlier blocks — so its logits equal the block-causal forward's."""
    ids = torch.randint(4, 100, (2, 8))
    training = noisy_outputs(model, ids, ids, torch.ones_like(ids), 4)
    torch.testing.assert_close(training, model(ids).logits, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing(model):
    family_checks.check_gradient_checkpointing(model)


def test_bad_block_settings_are_refused(model):
    with pytest.raises(ConfigError, match="block_size must be positive"):
        SDARConfig(block_size=0)


def test_block_training_counts_blocks_from_each_rows_first_real_token(model):
    """A 6-token sequence (a partial last block) scored from position 2 (inside block 0) gives the
    same logits alone and left-padded by 3 columns: blocks and positions are the row's own."""
    torch.manual_seed(0)
    ids = torch.randint(4, 100, (1, 6))
    noisy = ids.clone()
    noisy[0, [2, 4]] = model.mask_token_id
    alone = noisy_outputs(model, noisy, ids, torch.ones_like(ids), 4, noisy_from=2)
    pad = torch.zeros(1, 3, dtype=torch.long)
    mask = torch.cat([pad, torch.ones_like(ids)], 1)
    padded = noisy_outputs(model, torch.cat([pad, noisy], 1), torch.cat([pad, ids], 1), mask, 4, noisy_from=5)
    assert alone.shape == (1, 4, model.config.vocab_size)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
