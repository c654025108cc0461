"""What each cache strategy runs, and that no cache grows with the number of steps."""

import pytest
import torch

import dllm
from dllm.samplers.diffusion import DiffusionSampler


class CacheWatcher(torch.nn.Module):
    """Wraps a model; records (input length, committed cache length, cache capacity) per call."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []
        self.config, self.mask_token_id = inner.config, inner.mask_token_id
        self.block_size, self.shift_logits = inner.block_size, inner.shift_logits

    def forward(self, input_ids, past_key_values=None, **kwargs):
        length = past_key_values.length if past_key_values is not None else None
        out = self.inner(input_ids, past_key_values=past_key_values, **kwargs)
        keys = past_key_values.keys[0] if past_key_values is not None else None
        self.calls.append((input_ids.shape[1], length, keys.shape[2] if keys is not None else 0))
        return out


def watched(preset):
    torch.manual_seed(0)
    return CacheWatcher(dllm.load_model(preset).eval())


def test_block_cache_holds_committed_blocks_only():
    model = watched("sdar_tiny")
    prompt = torch.randint(4, 100, (2, 8))  # two whole blocks of 4
    DiffusionSampler(steps=32, cache="block", stop_at_eos=False).generate(model, prompt, gen_length=32)
    assert model.calls[0] == (8, 0, 8)  # the prompt's prefill
    steps = [call for call in model.calls[1:] if call[0] == 4]
    for committed in range(8, 40, 4):
        in_block = [call for call in steps if call[1] == committed]
        # four one-token steps over the committed cache, then the commit grows it by one block
        assert len(in_block) == 5 and in_block[-1][1] == committed
    assert model.calls[-1][1] == 36  # the last commit, over every earlier block
    assert max(capacity for _, _, capacity in model.calls) <= 2 * 40  # doubling buffers, not one per step


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_approximate_caches_do_not_grow_with_the_steps(cache):
    model = watched("llada_tiny")
    prompt = torch.randint(4, 100, (1, 6))
    DiffusionSampler(block_length=8, steps=32, cache=cache, stop_at_eos=False).generate(model, prompt, gen_length=32)
    # the first forward of each block fills a fresh cache (prompt + completion = 38 slots); every
    # later step reads it without storing: the same length and the same buffers throughout
    for block, start in enumerate(range(6, 38, 8)):
        first, *later = model.calls[8 * block : 8 * block + 8]
        assert first == (38, 0, 38)
        assert later == [(38 - start, start, 38)] * 7 if cache == "prefix" else [(8, 38, 38)] * 7


def test_no_cache_runs_the_whole_sequence_or_up_to_the_block():
    full = watched("llada_tiny")
    DiffusionSampler(steps=8, block_length=4, stop_at_eos=False).generate(full, torch.randint(4, 100, (1, 4)), None, 8)
    assert [length for length, _, _ in full.calls] == [12] * 8
    blocks = watched("sdar_tiny")
    DiffusionSampler(steps=8, stop_at_eos=False).generate(blocks, torch.randint(4, 100, (1, 4)), None, 8)
    assert [length for length, _, _ in blocks.calls] == [8] * 4 + [12] * 4  # block-causal: nothing after the block
