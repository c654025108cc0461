"""Every registered sampler, built from its config, on every tiny model it is valid for."""

import pytest
import torch

import dllm
from dllm.config import build_node, compose
from dllm.errors import ConfigError
from dllm.samplers.base import GenerationOutput

TINY_MODELS = [name for name in dllm.MODELS.names() if name.endswith("_tiny")]
GEN_LENGTH = 8


def sampler_from_config(name, model, **overrides):
    """The sampler as its config builds it; skips pairings the sampler refuses (e.g. a block
    decoder on a full-attention model — refused at config time too)."""
    cfg = compose([f"sampler={name}"] + [f"sampler.{k}={v}" for k, v in overrides.items()])
    sampler = build_node(cfg.sampler)
    try:
        sampler.check_gen_length(GEN_LENGTH, model.block_size)
    except ConfigError as refusal:
        pytest.skip(f"{name} is not valid for this model: {refusal}")
    return sampler


@pytest.fixture(params=TINY_MODELS)
def model(request):
    torch.manual_seed(0)
    return dllm.load_model(request.param).eval()


@pytest.mark.parametrize("name", dllm.SAMPLERS.names())
def test_sampler_contract(name, model, prompts):
    ids, mask = prompts
    sampler = sampler_from_config(name, model)
    out = sampler.generate(model, ids, mask, gen_length=GEN_LENGTH, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, GenerationOutput)
    assert out.sequences.shape == (ids.shape[0], ids.shape[1] + GEN_LENGTH)
    assert torch.equal(out.sequences[:, : ids.shape[1]], ids), "the prompt must be untouched"
    assert not (out.sequences == model.mask_token_id).any(), "no mask may be left"
    assert out.step_map.shape == (ids.shape[0], GEN_LENGTH)
    revealed = out.raw_completions != model.mask_token_id
    assert torch.equal(out.raw_completions[revealed], out.sequences[:, ids.shape[1] :][revealed])
    steps = out.step_map[revealed]
    assert steps.min() >= 0 and steps.max() < out.nfe, "steps are counted from 0 below nfe"
    assert (out.step_map[~revealed] > steps.max()).all(), "a position never revealed comes after the last step"
    assert out.nfe >= 1


@pytest.mark.parametrize("name", dllm.SAMPLERS.names())
def test_sampler_is_deterministic_at_temperature_zero(name, model, prompts):
    ids, mask = prompts
    sampler = sampler_from_config(name, model)
    first = sampler.generate(model, ids, mask, gen_length=GEN_LENGTH, generator=torch.Generator().manual_seed(1))
    second = sampler.generate(model, ids, mask, gen_length=GEN_LENGTH, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first.sequences, second.sequences)
    assert torch.equal(first.step_map, second.step_map)


@pytest.mark.parametrize("name", dllm.SAMPLERS.names())
def test_seed_reproduces_a_sample(name, model, prompts):
    ids, mask = prompts
    sampler = sampler_from_config(name, model, temperature=1.0)

    def draw(seed):
        return sampler.generate(model, ids, mask, GEN_LENGTH, torch.Generator().manual_seed(seed)).sequences

    assert torch.equal(draw(5), draw(5))
