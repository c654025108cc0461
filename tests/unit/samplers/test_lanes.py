"""Per-row progress and continuous batching: every row of a batch decodes as it decodes alone."""

import pytest
import torch

import dllm
from dllm.errors import ConfigError
from dllm.samplers.lanes import Lanes, row_generators
from tests.unit.algorithms.rl_helpers import EarlyEOS

EOS = 1
# ragged prompts of every block phase (blocks of 4): rows stop at EOS at different steps
PROMPTS = ["12+345=", "7+8=", "99*9=1", "1=", "314+15=", "2*3=", "8-5=", "123456789+1="]
CASES = {
    # label: (model, sampler, options)
    "llada": ("llada_tiny", "llada", {"steps": 16, "block_length": 4}),
    "llada cfg": ("llada_tiny", "llada", {"steps": 16, "block_length": 4, "cfg_scale": 0.5}),
    "fast_dllm none": ("llada_tiny", "fast_dllm", {"block_length": 4, "threshold": 0.3, "use_cache": "none"}),
    "fast_dllm prefix": ("llada_tiny", "fast_dllm", {"block_length": 4, "threshold": 0.3, "use_cache": "prefix"}),
    "fast_dllm dual": ("llada_tiny", "fast_dllm", {"block_length": 4, "threshold": 0.3, "use_cache": "dual"}),
    "fast_dllm dual fixed": ("llada_tiny", "fast_dllm", {"block_length": 4, "threshold": None, "steps": 8}),
    "fast_dllm factor prefix": ("llada_tiny", "fast_dllm", {"block_length": 8, "threshold": None, "factor": 2.0,
                                                             "use_cache": "prefix"}),
    "fast_dllm dream prefix": ("dream_tiny", "fast_dllm", {"block_length": 4, "threshold": 0.3, "use_cache": "prefix"}),
    "fast_dllm dream dual": ("dream_tiny", "fast_dllm", {"block_length": 4, "threshold": 0.3, "use_cache": "dual"}),
    "diffusion dream dual": ("dream_tiny", "diffusion", {"block_length": 4, "threshold": 0.3, "cache": "dual",
                                                          "selection": "threshold", "sampling": "gumbel"}),
    "sdar static": ("sdar_tiny", "sdar", {"remasking_strategy": "low_confidence_static", "denoising_steps": 2}),
    "sdar dynamic": ("sdar_tiny", "sdar", {"confidence_threshold": 0.3}),
    "sdar dynamic no cache": ("sdar_tiny", "sdar", {"confidence_threshold": 0.3, "use_cache": False}),
    "sdar block 8": ("sdar_tiny", "sdar", {"block_length": 8, "confidence_threshold": 0.3}),
    "diffusion random score": ("sdar_tiny", "diffusion", {"steps": 8, "score": "random", "cache": "block"}),
}  # fmt: skip


def decode(model, sampler, ids, mask, temperature, max_batch_rows=None):
    generators = row_generators(torch.Generator().manual_seed(5), ids.shape[0])
    return sampler.generate(model, ids, mask, 16, generators, max_batch_rows=max_batch_rows), generators


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_row_of_a_continuous_batch_is_its_decoding_alone(case, temperature, tokenizer):
    """Eight ragged prompts, at most three decoding at once (a finished row's slot takes the next),
    EOS stopping on (the shipped default) with a policy that stops early: each row's tokens, raw
    trajectory, steps, overhang and forward count are those of that row decoded alone (the same
    left padding, its own generator at T > 0), and of all rows decoded at once."""
    torch.manual_seed(0)
    preset, name, options = CASES[case]
    model = EarlyEOS(dllm.load_model(preset).eval(), bias=2.0)
    sampler = dllm.build_sampler(name, temperature=temperature, **options)
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    continuous, _ = decode(model, sampler, ids, mask, temperature, max_batch_rows=3)
    at_once, _ = decode(model, sampler, ids, mask, temperature)
    seeds = row_generators(torch.Generator().manual_seed(5), len(PROMPTS))
    stops = []
    for row in range(len(PROMPTS)):
        generator = [seeds[row]]
        alone = sampler.generate(model, ids[row : row + 1], mask[row : row + 1], 16, generator)
        for out in (continuous, at_once):
            assert torch.equal(out.sequences[row], alone.sequences[0]), (case, row)
            assert torch.equal(out.raw_completions[row], alone.raw_completions[0]), (case, row)
            assert torch.equal(out.step_map[row], alone.step_map[0]), (case, row)
            assert int(out.row_nfe[row]) == alone.nfe, (case, row)
            if alone.overhang is not None:  # the batch's overhang is as wide as its widest row's
                width = alone.overhang.shape[1]
                assert torch.equal(out.overhang[row, :width], alone.overhang[0])
                assert torch.equal(out.overhang_steps[row, :width], alone.overhang_steps[0])
                assert bool((out.overhang_steps[row, width:] == -1).all())
        stops.append(int(alone.step_map[0].max()))
    # the conditions that matter: rows end at different steps, some at EOS before the end (greedy
    # Dream-tiny with a cache reveals EOS first in every row, or, with less pull to it, never)
    assert len(set(stops)) > 1 or (preset == "dream_tiny" and not temperature)
    assert bool((continuous.sequences[:, ids.shape[1] :] == EOS).any())
    # each forward serves up to three rows, so the batch runs fewer forwards than its rows' sum
    assert at_once.nfe <= continuous.nfe < int(continuous.row_nfe.sum())


def test_rows_progress_on_their_own():
    """A row whose block is done moves on: at batch 8 the decoding takes the forwards of its slowest
    row, not the sum over blocks of each block's slowest row (threshold decoding, no EOS)."""
    torch.manual_seed(0)
    model = EarlyEOS(dllm.load_model("llada_tiny").eval(), bias=4.0)  # EOS near the threshold: rows differ
    sampler = dllm.build_sampler("fast_dllm", block_length=4, threshold=0.35, use_cache="none", stop_at_eos=False)
    ids = torch.randint(4, 100, (8, 6))
    out = sampler.generate(model, ids, None, 16)
    assert len(set(out.row_nfe.tolist())) > 1  # rows need different numbers of steps
    assert out.nfe == int(out.row_nfe.max())


def test_max_batch_rows_bounds_the_rows_decoding_at_once():
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny").eval()
    seen = []
    inner_forward = model.forward

    def watched(input_ids, *args, **kwargs):
        seen.append(input_ids.shape[0])
        return inner_forward(input_ids, *args, **kwargs)

    model.forward = watched
    sampler = dllm.build_sampler("sdar", stop_at_eos=False)
    sampler.generate(model, torch.randint(4, 100, (7, 5)), None, 8, max_batch_rows=2)
    assert max(seen) == 2 and seen[-1] == 1  # at most two rows; the last row finishes alone


def test_lanes_refill_freed_slots_then_drop_them():
    lanes = Lanes(batch=5, capacity=2, first_block=4, ends=[12] * 5, block_length=4)
    assert lanes.admit() == [0, 1] and lanes.rows == [0, 1]
    assert lanes.release([0]) is None and lanes.admit() == [0] and lanes.rows == [2, 1]
    lanes.starts[1] = 8
    assert lanes.release([1]) is None and lanes.admit() == [1] and lanes.rows == [2, 3]
    assert lanes.starts == [4, 4]  # a new row starts at its first block
    assert lanes.release([0]) is None and lanes.admit() == [0] and lanes.rows == [4, 3]
    assert lanes.release([1]) == [0] and lanes.rows == [4]  # nothing waiting: the slot goes
    assert lanes.release([0]) == [] and len(lanes) == 0


def test_bad_limits_and_generators_are_refused(tokenizer):
    model = dllm.load_model("llada_tiny").eval()
    ids = torch.randint(4, 100, (2, 4))
    with pytest.raises(ConfigError, match="max_batch_rows must be a positive number"):
        dllm.build_sampler("llada", steps=8, block_length=8).generate(model, ids, None, 8, max_batch_rows=0)
    with pytest.raises(ConfigError, match="got 1 generators for 2 prompts"):
        dllm.build_sampler("llada", steps=8, block_length=8).generate(model, ids, None, 8, [torch.Generator()])
    with pytest.raises(ConfigError, match="decodes its rows in lockstep"):
        dllm.build_sampler("dream").generate(model, ids, None, 8, [torch.Generator(), torch.Generator()])


def test_a_lockstep_sampler_decodes_max_batch_rows_at_a_time():
    """Dream's decoder moves every row through the same steps: it decodes the rows in chunks."""
    torch.manual_seed(0)
    model = dllm.load_model("dream_tiny").eval()
    ids = torch.randint(4, 100, (5, 4))
    sampler = dllm.build_sampler("dream", steps=8, stop_at_eos=False)
    chunked = sampler.generate(model, ids, None, 8, max_batch_rows=2)
    whole = sampler.generate(model, ids, None, 8)
    assert torch.equal(chunked.sequences, whole.sequences) and chunked.nfe == 3 * whole.nfe
