"""What each cache strategy runs, and that no cache grows with the number of steps."""

import pytest
import torch

import dllm
from dllm.samplers.diffusion import DiffusionSampler
from tests.recording import RecordingModel


def watched(preset):
    torch.manual_seed(0)
    return RecordingModel(dllm.load_model(preset).eval())


def calls(model):
    """(input length, committed cache length before, cache capacity after) per forward."""
    return [(call.length, call.cache_length, call.cache_capacity) for call in model.calls]


def test_block_cache_holds_committed_blocks_only():
    model = watched("sdar_tiny")
    prompt = torch.randint(4, 100, (2, 8))  # two whole blocks of 4
    DiffusionSampler(steps=32, cache="block", stop_at_eos=False).generate(model, prompt, gen_length=32)
    assert calls(model)[0] == (8, 0, 8)  # the prompt's prefill, into a plain cache copied into the row slots
    for block, start in enumerate(range(8, 40, 4)):
        in_block = model.calls[1 + 5 * block : 6 + 5 * block]
        # four one-token steps of the block, then its commit: each attends the committed blocks and itself
        assert [call.length for call in in_block] == [4] * 5
        assert [call.read_length for call in in_block] == [start + 4] * 5
        # the commit only fills the cache: no logits computed; every step reads its block's
        assert [call.logits.shape[1] for call in in_block] == [4, 4, 4, 4, 0]
    assert len(model.calls) == 1 + 8 * 5
    # one buffer per row over the whole canvas (40 columns, and one that takes discarded writes)
    assert {call.cache_capacity for call in model.calls[1:]} == {41}


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_approximate_caches_do_not_grow_with_the_steps(cache):
    model = watched("llada_tiny")
    prompt = torch.randint(4, 100, (1, 6))
    DiffusionSampler(block_length=8, steps=32, cache=cache, stop_at_eos=False).generate(model, prompt, gen_length=32)
    # the first forward of each block fills a fresh cache (prompt + completion = 38 positions), copied into
    # the row's slot; every later step recomputes its window over that slot: the same buffers throughout
    for block, start in enumerate(range(6, 38, 8)):
        first, *later = calls(model)[8 * block : 8 * block + 8]
        assert first == (38, 0, 38)
        assert later == [(38 - start, 38, 39)] * 7 if cache == "prefix" else [(8, 38, 39)] * 7


def test_no_cache_runs_the_whole_sequence_or_up_to_the_block():
    full = watched("llada_tiny")
    DiffusionSampler(steps=8, block_length=4, stop_at_eos=False).generate(full, torch.randint(4, 100, (1, 4)), None, 8)
    assert [call.length for call in full.calls] == [12] * 8
    blocks = watched("sdar_tiny")
    DiffusionSampler(steps=8, stop_at_eos=False).generate(blocks, torch.randint(4, 100, (1, 4)), None, 8)
    assert [call.length for call in blocks.calls] == [8] * 4 + [12] * 4  # block-causal: nothing after the block
