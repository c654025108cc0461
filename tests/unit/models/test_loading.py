"""Bad checkpoints get one clear error naming the file or field."""

import json

import pytest
import torch
from safetensors.torch import save_file

import dllm
from dllm.config import check_model_tokenizer
from dllm.errors import ConfigError, DllmError


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny")
    model.save_pretrained(tmp_path)
    return tmp_path, model


def test_unknown_model_type(saved):
    path, _ = saved
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "mamba"}))
    with pytest.raises(
        DllmError, match=r"config.json' declares model_type 'mamba'; dllm implements: Dream, llada, sdar"
    ):
        dllm.load_model(path)


def test_missing_shards(saved):
    path, model = saved
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    keys = sorted(weights)
    save_file({k: weights[k] for k in keys[:5]}, path / "model-00001-of-00002.safetensors")
    (path / "model.safetensors").unlink()
    index = {
        "weight_map": {
            k: ("model-00001-of-00002.safetensors" if i < 5 else "model-00002-of-00002.safetensors")
            for i, k in enumerate(keys)
        }
    }
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(DllmError, match=r"names 2 weight shards but 1 are missing: model-00002-of-00002.safetensors"):
        dllm.load_model(path)


def test_mismatched_shapes(saved):
    path, _ = saved
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(
        DllmError,
        match=r"tensor 'model.layers.0.mlp.down_proj.weight' has shape \[64, 128\] but config.json implies \[64, 96\]",
    ):
        dllm.load_model(path)


def test_tokenizer_without_a_mask_token(tokenizer):
    model = dllm.load_model("llada_tiny")
    tokenizer = dllm.load_tokenizer("char")
    tokenizer.mask_token = None
    check_model_tokenizer(model, tokenizer)  # the model's id exists in the vocabulary: adopted
    assert tokenizer.mask_token_id == model.mask_token_id
    big_id = dllm.load_model("llada_tiny", mask_token_id=99)
    tokenizer.mask_token = None
    check_model_tokenizer(big_id, tokenizer)
    assert tokenizer.mask_token_id == 99
    outside = dllm.load_model("llada_tiny", vocab_size=200, mask_token_id=150)
    tokenizer.mask_token = None
    with pytest.raises(ConfigError, match="has no mask token and no token with the model's mask_token_id 150"):
        check_model_tokenizer(outside, tokenizer)


@pytest.mark.parametrize(
    "preset, auto_class",
    [("llada_tiny", "AutoModel"), ("dream_tiny", "AutoModel"), ("sdar_tiny", "AutoModelForCausalLM")],
)
def test_a_downloaded_checkpoint_directory_loads_without_remote_code(preset, auto_class, tmp_path):
    """Sharded safetensors with an index, tokenizer files, the config's auto_map, and the
    remote-code file the hub ships (which must never be imported)."""
    import transformers

    torch.manual_seed(0)
    model = dllm.load_model(preset).eval()
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    dllm.load_tokenizer("char").save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "remote_code.Config", auto_class: "remote_code.Model"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "remote_code.py").write_text("raise RuntimeError('remote code must not run')\n")
    ids = torch.randint(4, 100, (1, 8))
    for loaded in (getattr(transformers, auto_class).from_pretrained(tmp_path), dllm.load_model(tmp_path)):
        assert type(loaded) is type(model)
        assert torch.equal(loaded.eval()(ids).logits, model(ids).logits)
    assert dllm.load_tokenizer(tmp_path).mask_token_id == model.mask_token_id
