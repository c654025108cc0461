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
    assert calls(model)[0] == (8, 0, 8)  # the prompt's prefill
    steps = [call for call in calls(model)[1:] if call[0] == 4]
    for committed in range(8, 40, 4):
        in_block = [call for call in steps if call[1] == committed]
        # four one-token steps over the committed cache, then the commit grows it by one block
        assert len(in_block) == 5 and in_block[-1][1] == committed
    assert calls(model)[-1][1] == 36  # the last commit, over every earlier block
    assert max(capacity for _, _, capacity in calls(model)) <= 2 * 40  # doubling buffers, not one per step
    # the prefill and every commit only fill the cache: no logits computed; every step reads its block's
    lengths = [call.cache_length for call in model.calls] + [None]  # a commit: the next call sees a longer cache
    commits = [i for i in range(len(model.calls)) if lengths[i + 1] != lengths[i]]
    assert len(commits) == 1 + 8
    assert [call.logits.shape[1] for call in model.calls] == [0 if i in commits else 4 for i in range(len(model.calls))]


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_approximate_caches_do_not_grow_with_the_steps(cache):
    model = watched("llada_tiny")
    prompt = torch.randint(4, 100, (1, 6))
    DiffusionSampler(block_length=8, steps=32, cache=cache, stop_at_eos=False).generate(model, prompt, gen_length=32)
    # the first forward of each block fills a fresh cache (prompt + completion = 38 slots); every
    # later step reads it without storing: the same length and the same buffers throughout
    for block, start in enumerate(range(6, 38, 8)):
        first, *later = calls(model)[8 * block : 8 * block + 8]
        assert first == (38, 0, 38)
        assert later == [(38 - start, start, 38)] * 7 if cache == "prefix" else [(8, 38, 38)] * 7


def test_no_cache_runs_the_whole_sequence_or_up_to_the_block():
    full = watched("llada_tiny")
    DiffusionSampler(steps=8, block_length=4, stop_at_eos=False).generate(full, torch.randint(4, 100, (1, 4)), None, 8)
    assert [call.length for call in full.calls] == [12] * 8
    blocks = watched("sdar_tiny")
    DiffusionSampler(steps=8, stop_at_eos=False).generate(blocks, torch.randint(4, 100, (1, 4)), None, 8)
    assert [call.length for call in blocks.calls] == [8] * 4 + [12] * 4  # block-causal: nothing after the block
