"""The composable engine: each axis chosen independently, on scripted and tiny models."""

import pytest
import torch

import dllm
from dllm.errors import ConfigError
from dllm.samplers.diffusion import DiffusionSampler
from dllm.samplers.fast_dllm import FastDLLMSampler
from dllm.samplers.sdar import SDARSampler
from tests.unit.samplers.test_llada import fixed_logits, row_generators

# Per generated position: (probabilities of tokens 4..7). Confidence orders 0 > 1 > 2,
# the top-2 margin orders 1 > 0 > 2 (see tests/unit/samplers/test_policies.py).
ROWS = {0: [0.6, 0.35, 0.05, 0.0], 1: [0.5, 0.2, 0.15, 0.15], 2: [0.4, 0.3, 0.3, 0.0]}


def table_logits(rows, prompt_length, vocab=8):
    def logits_fn(input_ids):
        probs = torch.full((*input_ids.shape, vocab), 1.0 / vocab)
        for j, row in rows.items():
            probs[:, prompt_length + j] = torch.tensor([0.0] * 4 + row)
        return probs.clamp_min(1e-9).log()

    return logits_fn


@pytest.mark.parametrize(
    "score, step_map", [("confidence", [[0, 1, 2]]), ("margin", [[1, 0, 2]]), ("entropy", [[0, 2, 1]])]
)
def test_one_token_per_step_in_score_order(scripted_model, score, step_map):
    model = scripted_model(table_logits(ROWS, prompt_length=1))
    out = DiffusionSampler(score=score, stop_at_eos=False).generate(model, torch.tensor([[9]]), gen_length=3)
    assert out.step_map.tolist() == step_map and out.nfe == 3
    assert out.sequences[0, 1:].tolist() == [4, 4, 4]


def test_threshold_with_categorical_sampling_by_hand(scripted_model):
    probs = {0: (6, 0.95), 1: (7, 0.3), 2: (4, 0.92), 3: (5, 0.5)}
    model = scripted_model(fixed_logits(probs, prompt_length=1))
    sampler = DiffusionSampler(selection="threshold", threshold=0.9, stop_at_eos=False)
    out = sampler.generate(model, torch.tensor([[9]]), gen_length=4)
    assert out.step_map.tolist() == [[0, 2, 0, 1]] and out.nfe == 3  # .95 and .92, then .5, then .3


@pytest.mark.parametrize("selection", ["top_k", "threshold", "dynamic", "entropy_bounded", "sequential", "factor"])
@pytest.mark.parametrize("score", ["confidence", "margin", "entropy"])
@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_block_cache_is_exact_for_every_policy(selection, score, temperature, tokenizer):
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny").eval()
    batch = tokenizer(["12+345=", "7+8="], padding=True, return_tensors="pt")
    runs = [  # one generator per row: each row draws as it would alone, whatever the cache's forwards
        DiffusionSampler(steps=8, score=score, selection=selection, threshold=0.3, temperature=temperature, cache=cache)
        .generate(model, batch["input_ids"], batch["attention_mask"], 16, row_generators(2, 3))
        for cache in ("block", "none")
    ]  # fmt: skip
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    assert torch.equal(runs[0].step_map, runs[1].step_map)


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("preset", ["llada_tiny", "dream_tiny"])
def test_every_cache_on_every_full_attention_family(preset, cache, prompts):
    torch.manual_seed(0)
    model = dllm.load_model(preset).eval()
    ids, mask = prompts
    sampler = DiffusionSampler(block_length=4, selection="threshold", threshold=0.5, cache=cache, temperature=0.7)
    out = sampler.generate(model, ids, mask, gen_length=8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.sequences[:, : ids.shape[1]], ids)
    assert not (out.sequences == model.mask_token_id).any()
    assert (out.step_map >= 0).all() and out.step_map.max() < out.nfe


def test_the_presets_are_the_engine(prompts):
    """fast_dllm and sdar are the engine under their reference argument names."""
    torch.manual_seed(0)
    model = dllm.load_model("llada_tiny").eval()
    ids, mask = prompts
    preset = FastDLLMSampler(block_length=4, threshold=0.5, use_cache="prefix", stop_at_eos=False)
    engine = DiffusionSampler(
        block_length=4, sampling="gumbel", selection="threshold", threshold=0.5, cache="prefix", stop_at_eos=False
    )
    assert torch.equal(preset.generate(model, ids, mask, 8).sequences, engine.generate(model, ids, mask, 8).sequences)
    sdar = SDARSampler(remasking_strategy="low_confidence_static", denoising_steps=2)
    assert (sdar.policy.selection, sdar.cache, sdar.sampling) == ("top_k", "block", "categorical")


@pytest.mark.parametrize(
    "kwargs, model_block_size, message",
    [
        ({"cache": "block"}, None, "cache 'block' caches whole blocks of a block diffusion model"),
        ({"cache": "dual"}, 4, "cache 'dual' is for full-attention models"),
        ({"block_length": 6}, 4, r"gen_length \(16\) must be a multiple of block_length \(6\)"),
        ({"block_length": 4, "steps": 6}, None, r"steps \(6\) must be a multiple of the number of blocks"),
    ],
)
def test_impossible_layouts_are_refused(kwargs, model_block_size, message):
    with pytest.raises(ConfigError, match=message):
        DiffusionSampler(**kwargs).check_gen_length(16, model_block_size)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cache": "paged"}, "unknown cache 'paged'; choose one of none, prefix, dual, block"),
        ({"cfg_scale": 1.0, "cache": "dual"}, "needs cache none"),
        ({"selection": "threshold", "threshold": 1.5}, r"threshold must be in \(0, 1\]"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"sampling": "beam"}, "sampling must be 'gumbel' or 'categorical'"),
        ({"steps": 0}, "must be positive"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DiffusionSampler(**kwargs)


@pytest.mark.parametrize("block_length", [2, 8])
def test_a_block_model_decodes_in_another_block_size_with_the_exact_cache(block_length, tokenizer):
    """Block-size adaptation: a block-4 model decoding blocks of 2 or 8 attends in those blocks
    (per call), pads the prompt to them, and the block cache still equals recomputing."""
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny").eval()
    batch = tokenizer(["12+345=", "7+8="], padding=True, return_tensors="pt")
    runs = [
        DiffusionSampler(block_length=block_length, steps=16, cache=cache, temperature=0.8)
        .generate(model, batch["input_ids"], batch["attention_mask"], 16, row_generators(2, 1))
        for cache in ("block", "none")
    ]  # fmt: skip
    assert torch.equal(runs[0].sequences, runs[1].sequences) and runs[0].block_size == block_length
    native = DiffusionSampler(steps=16, cache="block").generate(model, batch["input_ids"], batch["attention_mask"], 16)
    assert native.block_size == 4
    by_hand = model(batch["input_ids"], block_size=8).logits
    assert not torch.allclose(by_hand, model(batch["input_ids"]).logits)  # the mask follows the per-call size
