import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import dllm
from dllm.errors import ConfigError, DllmError
from dllm.models.llada import LLaDAConfig, LLaDAModelLM

FIXTURES = Path(__file__).parents[2] / "fixtures"
BLOCK_KEYS = ("attn_norm", "q_proj", "k_proj", "v_proj", "attn_out", "ff_norm", "ff_proj", "up_proj", "ff_out")


def reference_key_shapes(d_model, n_layers, mlp, embedding_size, kv_dim=None, weight_tying=False):
    """The key -> shape layout of the public LLaDA checkpoints (block_type llama, no biases)."""
    kv_dim = kv_dim or d_model
    shapes = {"model.transformer.wte.weight": (embedding_size, d_model), "model.transformer.ln_f.weight": (d_model,)}
    if not weight_tying:
        shapes["model.transformer.ff_out.weight"] = (embedding_size, d_model)
    block_shapes = {
        "attn_norm": (d_model,),
        "ff_norm": (d_model,),
        "q_proj": (d_model, d_model),
        "k_proj": (kv_dim, d_model),
        "v_proj": (kv_dim, d_model),
        "attn_out": (d_model, d_model),
        "ff_proj": (mlp, d_model),
        "up_proj": (mlp, d_model),
        "ff_out": (d_model, mlp),
    }
    for i in range(n_layers):
        for name in BLOCK_KEYS:
            shapes[f"model.transformer.blocks.{i}.{name}.weight"] = block_shapes[name]
    return shapes


def test_tiny_keys_match_reference_layout(tiny_model):
    actual = {k: tuple(v.shape) for k, v in tiny_model.state_dict().items()}
    assert actual == reference_key_shapes(d_model=64, n_layers=2, mlp=128, embedding_size=100)


def test_public_8b_config_gives_the_8b_parameter_layout():
    raw = json.loads((FIXTURES / "llada_config" / "config.json").read_text())
    config = LLaDAConfig(**{k: v for k, v in raw.items() if k != "model_type"})
    with torch.device("meta"):
        model = LLaDAModelLM(config)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert actual == reference_key_shapes(d_model=4096, n_layers=32, mlp=12288, embedding_size=126464)
    assert sum(p.numel() for p in model.parameters()) == 8_015_581_184  # LLaDA-8B's index: 16,031,162,368 bytes in bf16
    assert model.mask_token_id == 126336 and model.config.eos_token_id == 126081


def test_weight_tying_drops_the_output_head():
    model = LLaDAModelLM(
        LLaDAConfig(d_model=32, n_heads=2, n_layers=1, mlp_hidden_size=64, vocab_size=50, weight_tying=True)
    )
    keys = set(model.state_dict())
    assert "model.transformer.ff_out.weight" not in keys
    x = torch.randint(0, 50, (1, 5))
    expected = (
        model.model.transformer.ln_f(
            model.model.transformer.blocks[0](
                model.model.transformer.wte(x), *model.model.rotary(torch.arange(5)), None
            )
        )
        @ model.model.transformer.wte.weight.T
    )
    torch.testing.assert_close(model(x).logits, expected)


def test_contract_attributes(tiny_model):
    assert tiny_model.mask_token_id == 2
    assert tiny_model.block_size is None
    assert tiny_model.shift_logits is False
    logits = tiny_model(torch.randint(4, 100, (3, 7))).logits
    assert logits.shape == (3, 7, 100)


def test_save_load_round_trip_is_exact(tiny_model, tmp_path):
    from tests.unit.models import family_checks

    family_checks.check_round_trips(tiny_model, tmp_path, "llada")
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), LLaDAModelLM)


def test_public_config_loads_through_auto_classes_without_remote_code(tmp_path):
    shutil.copy(FIXTURES / "llada_config" / "config.json", tmp_path / "config.json")
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, LLaDAConfig) and config.d_model == 4096 and config.hidden_size == 4096


def test_padding_masks_keys_only(tiny_model):
    """Changing the ids under padding changes nothing at real positions."""
    x = torch.randint(4, 100, (1, 8))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]])
    other = x.clone()
    other[0, :2] = torch.tensor([50, 60])
    a = tiny_model(x, attention_mask=mask).logits[:, 2:]
    b = tiny_model(other, attention_mask=mask).logits[:, 2:]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(tiny_model(x).logits[:, 2:], tiny_model(other).logits[:, 2:])


def test_attention_is_bidirectional(tiny_model):
    x = torch.randint(4, 100, (1, 6))
    changed = x.clone()
    changed[0, 5] = (x[0, 5] + 1 - 4) % 96 + 4
    assert not torch.allclose(tiny_model(x).logits[0, 0], tiny_model(changed).logits[0, 0])


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model):
    from tests.unit.models import family_checks

    family_checks.check_gradient_checkpointing(tiny_model)


def test_bf16_forward(tiny_model):
    model = tiny_model.to(torch.bfloat16)
    logits = model(torch.randint(4, 100, (1, 5))).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_unsupported_reference_options_are_refused():
    with pytest.raises(ConfigError, match="alibi=True is not supported"):
        LLaDAConfig(alibi=True)
    with pytest.raises(ConfigError, match="must divide by n_heads"):
        LLaDAConfig(d_model=30, n_heads=4)


def test_unknown_override_and_missing_checkpoint_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown model option 'd_modle' — did you mean 'd_model'"):
        dllm.load_model("llada_tiny", d_modle=3)
    with pytest.raises(DllmError, match="does not exist"):
        dllm.load_model(str(tmp_path / "nowhere"))
    with pytest.raises(DllmError, match="unknown model 'lada_tiny' — did you mean 'llada_tiny'"):
        dllm.load_model("lada_tiny")


def test_prefix_cache_is_exact(tiny_model):
    from tests.unit.models import family_checks

    family_checks.check_prefix_cache_is_exact(tiny_model)
    family_checks.check_uncommitted_forward_leaves_the_cache(tiny_model)
    family_checks.check_replace_position(tiny_model)
