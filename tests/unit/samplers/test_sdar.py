import math

import pytest
import torch

import dllm
from dllm.errors import ConfigError
from dllm.samplers.sdar import SDARSampler
from tests.unit.samplers.test_llada import EOS, VOCAB, fixed_logits, row_generators

PROMPT = torch.tensor([[9, 9, 9, 9]])  # one whole block: no alignment padding
PROBS = {0: (6, 0.5), 1: (7, 0.95), 2: (4, 0.9), 3: (5, 0.6)}


@pytest.fixture
def block_model(scripted_model):
    def make(probabilities, prompt_length=4):
        model = scripted_model(fixed_logits(probabilities, prompt_length))
        model.block_size = 4
        model.config.num_hidden_layers = 1
        return model

    return make


def decode(model, gen_length=4, **kwargs):
    kwargs = {"denoising_steps": 2, "use_cache": False, "stop_at_eos": False, **kwargs}
    return SDARSampler(**kwargs).generate(model, PROMPT, gen_length=gen_length)


def test_sequential_reveals_left_to_right(block_model):
    out = decode(block_model(PROBS), remasking_strategy="sequential")
    assert out.step_map.tolist() == [[0, 0, 1, 1]]
    assert out.sequences[0, 4:].tolist() == [6, 7, 4, 5]


def test_low_confidence_static_reveals_the_most_probable(block_model):
    out = decode(block_model(PROBS), remasking_strategy="low_confidence_static")
    assert out.step_map.tolist() == [[1, 0, 0, 1]]


def test_low_confidence_dynamic_takes_everything_above_the_threshold(block_model):
    model = block_model(PROBS)
    out = decode(model, remasking_strategy="low_confidence_dynamic", confidence_threshold=0.55)
    assert out.step_map.tolist() == [[1, 0, 0, 0]]  # .95, .9, .6 > .55 at once; .5 next
    all_at_once = decode(block_model(PROBS), remasking_strategy="low_confidence_dynamic", confidence_threshold=0.4)
    assert all_at_once.step_map.tolist() == [[0, 0, 0, 0]] and all_at_once.nfe == 1
    too_few = decode(block_model(PROBS), remasking_strategy="low_confidence_dynamic", confidence_threshold=0.92)
    assert too_few.step_map.tolist() == [[1, 0, 0, 1]]  # one above .92 < quota 2: the static choice


def entropy(p):
    rest = (1 - p) / (VOCAB - 1)
    return -p * math.log(p) - (VOCAB - 1) * rest * math.log(rest)


def test_entropy_bounded_takes_the_lowest_entropies_within_the_budget(block_model):
    ordered = sorted(entropy(p) for _, p in PROBS.values())  # positions 1, 2, 3, 0
    budget = ordered[0] + ordered[1] + 0.01  # room for exactly two
    out = decode(block_model(PROBS), remasking_strategy="entropy_bounded", eb_threshold=budget)
    # step 0: positions 1 and 2; then one at a time (3, then 0): each alone exceeds the budget
    assert out.step_map.tolist() == [[2, 0, 0, 1]] and out.nfe == 3
    tiny_budget = decode(block_model(PROBS), remasking_strategy="entropy_bounded", eb_threshold=1e-6, denoising_steps=4)
    assert tiny_budget.step_map.tolist() == [[3, 0, 1, 2]]  # at least one per step, lowest entropy first


def test_stops_as_soon_as_every_row_has_its_eos(block_model):
    model = block_model({0: (6, 0.9), 1: (EOS, 0.95)})
    out = SDARSampler(denoising_steps=4, use_cache=False).generate(model, PROMPT, gen_length=12)
    assert out.sequences[0, 4:].tolist() == [6, EOS] + [EOS] * 10
    # block 0, step 0: .9 and .95 clear the 0.85 threshold together; the row now has an EOS with
    # nothing masked before it, so it has stopped: nothing after it is ever decoded
    assert out.nfe == 1
    # the raw trajectory: nothing after the EOS was revealed, so it is masked at the step after the last
    assert out.raw_completions[0].tolist() == [6, EOS] + [model.mask_token_id] * 10
    assert out.step_map.tolist() == [[0, 0] + [1] * 10]


def test_cache_gives_the_same_tokens_as_recomputing(tokenizer):
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny").eval()
    batch = tokenizer(["12+345=", "7+8=", "hello world"], padding=True, return_tensors="pt")
    for strategy in ("sequential", "low_confidence_static", "low_confidence_dynamic", "entropy_bounded"):
        for temperature in (0.0, 0.8):
            outs = [
                SDARSampler(remasking_strategy=strategy, temperature=temperature, use_cache=cached, stop_at_eos=False)
                .generate(model, batch["input_ids"], batch["attention_mask"], 16, row_generators(3, 3))
                for cached in (True, False)
            ]  # fmt: skip
            assert torch.equal(outs[0].sequences, outs[1].sequences), (strategy, temperature)
            assert torch.equal(outs[0].step_map, outs[1].step_map)
            assert torch.equal(outs[0].overhang, outs[1].overhang)
            # the prompts' whole blocks' prefill, then one commit forward per block: 5 blocks, as the
            # 7- and 11-token prompts' tails (3 tokens each) share their blocks with the first masks
            assert outs[0].nfe == outs[1].nfe + 1 + 5


def test_bad_settings_are_refused(block_model):
    with pytest.raises(ConfigError, match=r"confidence_threshold must be in \(0, 1\]"):
        SDARSampler(confidence_threshold=0.0)
    with pytest.raises(ConfigError, match="remasking_strategy must be one of"):
        SDARSampler(remasking_strategy="low_confidence")
    with pytest.raises(ConfigError, match=r"denoising_steps \(8\) must not exceed block_length \(4\)"):
        SDARSampler(denoising_steps=8).generate(block_model(PROBS), PROMPT, gen_length=4)
    with pytest.raises(ConfigError, match=r"gen_length \(6\) must be a multiple of block_length \(4\)"):
        SDARSampler().generate(block_model(PROBS), PROMPT, gen_length=6)


@pytest.mark.parametrize("block_length", [2, 8])
def test_a_block_length_other_than_the_models_is_accepted_and_its_cache_exact(block_length, tokenizer):
    """docs/configuration.md: `block_length` need not equal the model's block size (block-size
    adaptation); it must divide gen_length and be at least denoising_steps. Shipped defaults
    (stop_at_eos on), a ragged batch."""
    from dllm.config import compose
    from dllm.run import plan

    plan(
        compose(
            ["model=sdar_tiny", "sampler=sdar", f"sampler.block_length={block_length}", "sampler.denoising_steps=2"]
        )
    )
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny").eval()
    assert model.block_size == 4
    batch = tokenizer(["12+345=", "7+8="], padding=True, return_tensors="pt")
    outs = [
        SDARSampler(block_length=block_length, denoising_steps=2, temperature=0.8, use_cache=cached)
        .generate(model, batch["input_ids"], batch["attention_mask"], 16, row_generators(2, 1))
        for cached in (True, False)
    ]  # fmt: skip
    assert torch.equal(outs[0].sequences, outs[1].sequences) and torch.equal(outs[0].step_map, outs[1].step_map)
    assert outs[0].block_size == block_length
    with pytest.raises(ConfigError, match=r"denoising_steps \(4\) must not exceed block_length \(2\)"):
        SDARSampler(block_length=2, denoising_steps=4).check_gen_length(16, model.block_size)
