import pytest
import torch

import dllm
from dllm.errors import ConfigError
from dllm.samplers.diffusion import DiffusionSampler
from dllm.samplers.fast_dllm import FastDLLMSampler
from dllm.samplers.llada import LLaDASampler
from tests.recording import RecordingModel
from tests.unit.samplers.test_llada import fixed_logits


def test_threshold_decoding_by_hand(scripted_model):
    probs = {0: (6, 0.95), 1: (7, 0.3), 2: (4, 0.92), 3: (5, 0.5)}
    model = scripted_model(fixed_logits(probs, prompt_length=1))
    out = FastDLLMSampler(block_length=4, threshold=0.9, use_cache="none", stop_at_eos=False).generate(
        model, torch.tensor([[9]]), gen_length=4
    )
    # step 0: .95 and .92 reach 0.9; then the top one alone each step: .5, then .3
    assert out.step_map.tolist() == [[0, 2, 0, 1]] and out.nfe == 3


@pytest.mark.parametrize("preset", ["llada_tiny", "dream_tiny"])
def test_without_cache_and_threshold_it_is_the_llada_decoder(preset, prompts):
    torch.manual_seed(0)
    model = dllm.load_model(preset).eval()
    ids, mask = prompts
    expected = LLaDASampler(steps=16, block_length=8, stop_at_eos=False).generate(model, ids, mask, 16)
    out = FastDLLMSampler(steps=16, block_length=8, threshold=None, use_cache="none", stop_at_eos=False).generate(
        model, ids, mask, 16
    )
    assert torch.equal(out.sequences, expected.sequences) and torch.equal(out.step_map, expected.step_map)


def calls(model):
    """(input length, committed cache length, replace_position) per forward."""
    return [(call.length, call.cache_length, call.replace_position) for call in model.calls]


def fast_dllm(cache):
    return FastDLLMSampler(steps=8, block_length=4, threshold=None, use_cache=cache, stop_at_eos=False)


def engine(cache):
    return DiffusionSampler(steps=8, block_length=4, sampling="gumbel", cache=cache, stop_at_eos=False)


@pytest.mark.parametrize(
    "sampler, preset, query",
    [
        (fast_dllm, "llada_tiny", 6),
        (fast_dllm, "dream_tiny", 6),  # as Fast-dLLM's Dream decoder: from the block, logits shifted inside it
        (engine, "dream_tiny", 5),  # the engine: from the position whose logits predict the block's first token
    ],
)
def test_cache_modes_recompute_what_fast_dllm_recomputes(sampler, preset, query):
    torch.manual_seed(0)
    model = RecordingModel(dllm.load_model(preset).eval())
    prompt = torch.randint(4, 100, (1, 6))
    # later steps run over the row's slot of the whole canvas (14 positions): the prefix cache recomputes
    # from `query` to the end, the dual cache the block's 4 positions from `query`
    for mode, expected_later_call in (("prefix", (14 - query, 14, None)), ("dual", (4, 14, None))):
        model.calls.clear()
        sampler(mode).generate(model, prompt, gen_length=8)
        assert calls(model)[0] == (14, 0, None)  # each block starts with a full forward that fills the cache
        assert calls(model)[1] == expected_later_call  # block 0, step 1
        assert len(model.calls) == 8 and calls(model)[4] == (14, 0, None)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_a_cached_block_of_a_shifted_model_starts_with_its_first_token_alone(mode):
    """As Fast-dLLM's Dream decoder: whatever the rule, the full forward reveals the block's first token only."""
    torch.manual_seed(0)
    model = dllm.load_model("dream_tiny").eval()
    prompt = torch.randint(4, 100, (1, 6))

    def step_map(cache):
        sampler = FastDLLMSampler(block_length=4, threshold=1e-9, use_cache=cache, stop_at_eos=False)
        return sampler.generate(model, prompt, gen_length=8).step_map.tolist()

    # every token reaches the threshold: the rest of the block follows in one step (at once without a cache)
    assert step_map(mode) == [[0, 1, 1, 1, 2, 3, 3, 3]]
    assert step_map("none") == [[0, 0, 0, 0, 1, 1, 1, 1]]


def test_approximate_caches_agree_closely_on_a_confident_model(prompts):
    """On a model that is sure of itself, caching changes (almost) nothing."""
    torch.manual_seed(0)
    model = dllm.load_model("llada_tiny").eval()
    with torch.no_grad():
        model.model.transformer.ff_out.weight.mul_(50.0)
    ids, mask = prompts
    runs = {
        mode: FastDLLMSampler(steps=16, block_length=8, threshold=None, use_cache=mode, stop_at_eos=False)
        .generate(model, ids, mask, 16).sequences
        for mode in ("none", "prefix", "dual")
    }  # fmt: skip
    for mode in ("prefix", "dual"):
        assert (runs[mode] == runs["none"]).float().mean() >= 0.9


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="threshold or factor, not both"):
        FastDLLMSampler(threshold=0.9, factor=1.0)
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\]"):
        FastDLLMSampler(threshold=1.5)
    with pytest.raises(ConfigError, match="use_cache must be none, prefix or dual"):
        FastDLLMSampler(use_cache="block")
    with pytest.raises(ConfigError, match="use sampler=sdar"):
        FastDLLMSampler().check_gen_length(32, model_block_size=4)
    with pytest.raises(ConfigError, match=r"gen_length \(12\) must be a multiple of block_length \(8\)"):
        FastDLLMSampler(block_length=8).check_gen_length(12)
