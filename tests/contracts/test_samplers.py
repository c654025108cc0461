"""Every registered sampler, built from its config, on every tiny model it is valid for."""

import inspect

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


# Each preset's reference and its sampler arguments with the reference's defaults, each marked
# whether it means what the preset's own default does (then the outputs must be equal). Not
# settings: the references' `model`, `prompt`, `gen_length`, `mask_id` (generate()'s inputs and
# the model's), SDAR's `stopping_criteria_idx` (here `stop_at_eos`), LLaDA's `is_mps`, Fast-dLLM's
# `step_callback`. REFERENCE_GEN_LENGTH is the references' own default, which their block sizes divide.
REFERENCE_GEN_LENGTH = 128
REFERENCE_DEFAULTS = {
    "llada": {  # ML-GSAI/LLaDA generate.py, generate()
        "steps": (128, True),
        "block_length": (128, True),
        "temperature": (0.0, True),
        "cfg_scale": (0.0, True),
        "remasking": ("low_confidence", True),
    },
    "fast_dllm": {  # NVlabs/Fast-dLLM llada/generate.py, generate() and its cached variants
        "steps": (128, True),  # dllm's None is gen_length
        "block_length": (128, False),
        "temperature": (0.0, True),
        "remasking": ("low_confidence", True),
        "threshold": (None, False),  # the LLaDA schedule, not parallel decoding above 0.9
        "factor": (None, True),
    },
    "sdar": {  # JetAstra/SDAR generate.py, block_diffusion_generate()
        "block_length": (8, False),
        "denoising_steps": (8, False),
        "temperature": (1.0, False),
        "top_k": (0, True),
        "top_p": (1.0, True),
        "remasking_strategy": ("low_confidence_dynamic", True),
        "confidence_threshold": (0.85, True),
        "eb_threshold": (None, True),  # read by entropy_bounded only
    },
    "dream": {  # Dream's generation_utils.py, DreamGenerationConfig
        "steps": (512, False),
        "alg": ("origin", False),
        "alg_temp": (None, True),
        "temperature": (0.0, True),
        "top_p": (None, True),
        "top_k": (None, True),
        "eps": (1e-3, True),
    },
}
# A default that only works with another: SDAR's 8 denoising steps are per block of its 8 tokens.
TOGETHER = {("sdar", "denoising_steps"): {"block_length": 8}}
REFERENCE_CASES = [(name, arg) for name, table in REFERENCE_DEFAULTS.items() for arg in table]
REFERENCE_MODELS = {"llada": "llada_tiny", "fast_dllm": "llada_tiny", "sdar": "sdar_tiny", "dream": "dream_tiny"}


def reference_run(name, prompts, **settings):
    torch.manual_seed(0)
    model = dllm.load_model(REFERENCE_MODELS[name]).eval()
    ids, mask = prompts
    sampler = dllm.build_sampler(name, **settings)
    out = sampler.generate(model, ids, mask, REFERENCE_GEN_LENGTH, torch.Generator().manual_seed(0))
    assert out.sequences.shape == (ids.shape[0], ids.shape[1] + REFERENCE_GEN_LENGTH)
    assert not (out.sequences == model.mask_token_id).any()
    return out


@pytest.mark.parametrize("name, arg", REFERENCE_CASES)
def test_a_reference_default_means_what_it_means_in_the_reference(name, arg, prompts):
    value, same_as_ours = REFERENCE_DEFAULTS[name][arg]
    assert arg in inspect.signature(dllm.SAMPLERS.get(name)).parameters, f"{name} lacks the reference's {arg}"
    out = reference_run(name, prompts, **{arg: value}, **TOGETHER.get((name, arg), {}))
    if same_as_ours:
        ours = reference_run(name, prompts)
        assert torch.equal(out.sequences, ours.sequences) and torch.equal(out.step_map, ours.step_map)
        assert out.nfe == ours.nfe


@pytest.mark.parametrize("name", REFERENCE_DEFAULTS)
def test_every_reference_default_at_once(name, prompts):
    reference_run(name, prompts, **{arg: value for arg, (value, _) in REFERENCE_DEFAULTS[name].items()})


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("sdar", {"remasking_strategy": "entropy_bounded", "eb_threshold": None}, "needs eb_threshold"),
        ("sdar", {"confidence_threshold": None}, "needs confidence_threshold"),
        ("diffusion", {"selection": "factor", "factor": None}, "needs factor"),
        ("llada", {"temperature": None}, "temperature"),
        ("dream", {"temperature": None}, "temperature"),
        ("dream", {"top_k": -1}, "top_k"),
    ],
)
def test_a_null_a_setting_needs_is_refused_at_construction(name, settings, message):
    with pytest.raises(ConfigError, match=message):
        dllm.build_sampler(name, **settings)
