"""Every model preset follows the model contract."""

import pytest
import torch

import dllm

PRESETS = [name for name in dllm.MODELS.names() if name.endswith(("_tiny", "_small"))]


@pytest.mark.parametrize("name", PRESETS)
def test_model_contract(name, tmp_path):
    torch.manual_seed(0)
    model = dllm.load_model(name).eval()
    assert isinstance(model.mask_token_id, int)
    assert model.block_size is None or model.block_size > 0
    assert isinstance(model.shift_logits, bool)
    ids = torch.randint(4, 100, (2, 6))
    logits = model(ids, attention_mask=torch.ones_like(ids)).logits
    assert logits.shape[:2] == (2, 6) and logits.shape[2] >= len(dllm.load_tokenizer(name))
    # a decoder reads only its block's logits, a cache-filling forward none
    sliced = model(ids, attention_mask=torch.ones_like(ids), logits_slice=slice(2, 5)).logits
    torch.testing.assert_close(sliced, logits[:, 2:5])
    assert model(ids, logits_slice=slice(0, 0)).logits.shape == (2, 0, logits.shape[2])
    model.save_pretrained(tmp_path)
    assert torch.equal(dllm.load_model(tmp_path).eval()(ids).logits, model(ids).logits)


def test_tiny_presets_are_well_under_a_million_parameters():
    for name in PRESETS:
        if name.endswith("_tiny"):
            assert sum(p.numel() for p in dllm.load_model(name).parameters()) < 250_000
