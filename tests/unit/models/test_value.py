import pytest
import torch

import dllm
from dllm.models.base import load_value_model

FAMILIES = ["llada_tiny", "dream_tiny", "sdar_tiny"]


@pytest.mark.parametrize("preset", FAMILIES)
def test_fresh_value_model_predicts_zero_and_keeps_the_backbone_layout(preset, tmp_path):
    torch.manual_seed(0)
    policy = dllm.load_model(preset)
    policy.save_pretrained(tmp_path / "policy")
    value = load_value_model(tmp_path / "policy")
    ids = torch.randint(4, 100, (2, 8))
    out = value(ids)
    assert out.values.shape == (2, 8) and out.values.dtype == torch.float32
    assert torch.equal(out.values, torch.zeros(2, 8))
    keys = set(value.state_dict())
    assert {"value_head.weight", "value_head.bias"} <= keys
    backbone = {k for k in policy.state_dict() if k in keys}
    assert backbone == keys - {"value_head.weight", "value_head.bias"}  # the policy's backbone, minus its LM head
    for key in backbone:
        assert torch.equal(value.state_dict()[key], policy.state_dict()[key])


@pytest.mark.parametrize("preset", FAMILIES)
def test_value_checkpoint_round_trip(preset, tmp_path):
    value = load_value_model(preset)
    with torch.no_grad():
        value.value_head.weight.normal_()
        value.value_head.bias.fill_(0.5)
    value.save_pretrained(tmp_path)
    reloaded = dllm.load_model(tmp_path)  # its own checkpoint: loads as a value model
    assert type(reloaded) is type(value) and reloaded.is_value_model
    ids = torch.randint(4, 100, (1, 8))
    torch.testing.assert_close(reloaded(ids).values, value(ids).values)
    assert not torch.equal(value(ids).values, torch.zeros(1, 8))


def test_value_model_trains():
    value = load_value_model("sdar_tiny")
    optimizer = torch.optim.AdamW(value.parameters(), lr=1e-2)
    ids = torch.randint(4, 100, (4, 8))
    target = torch.linspace(-1, 1, 8).expand(4, 8)
    first = None
    for _ in range(30):
        loss = (value(ids).values - target).square().mean()
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first
