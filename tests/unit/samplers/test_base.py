import inspect

import pytest
import torch

import dllm
from dllm.errors import ConfigError
from dllm.samplers.base import Decoding, fill_after_eos, stop_positions

M, E = 2, 1  # mask, eos


def test_stop_positions():
    completion = torch.tensor(
        [
            [5, E, 6, M],  # stopped at 1
            [M, E, 6, 7],  # a mask before the EOS: not stopped
            [5, 6, 7, 8],  # no EOS
            [E, M, M, M],  # stopped at 0
        ]
    )
    assert stop_positions(completion, E, M).tolist() == [1, 4, 4, 0]
    assert stop_positions(completion, None, M).tolist() == [4, 4, 4, 4]


def test_fill_after_eos_fills_stopped_rows_only():
    completion = torch.tensor([[5, E, 6, M], [M, E, 6, 7]])
    assert fill_after_eos(completion, E, M).tolist() == [[5, E, E, E], [M, E, 6, 7]]
    assert fill_after_eos(completion, None, M).tolist() == completion.tolist()


def _decoding(batch: int, gen_length: int) -> Decoding:
    x = torch.full((batch, 1 + gen_length), M)
    x[:, 0] = 9  # the prompt
    return Decoding(
        x=x, key_mask=torch.ones_like(x), step_map=torch.full((batch, gen_length), -1), prompt_length=1, mask_id=M,
        eos_id=E, prompt_ids=x[:, :1].clone(), completion_start=torch.ones(batch, dtype=torch.long),
        gen_length=gen_length,
    )  # fmt: skip


def test_all_stopped_scans_only_once_an_eos_was_revealed():
    state = _decoding(2, 4)
    # an EOS proposed where nothing is revealed does not count
    state.reveal(1, 5, torch.tensor([[5, E, 6, 7], [6, E, 6, 7]]), torch.tensor([[True, False, False, False]] * 2))
    assert not state.eos_revealed and not state.all_stopped()
    assert state.step_map.tolist() == [[0, -1, -1, -1], [0, -1, -1, -1]]
    # row 0 stops at its EOS; row 1 has a mask before its EOS: not every row has stopped
    state.reveal(1, 5, torch.tensor([[5, E, 6, 7], [M, 5, E, 7]]), torch.tensor([[0, 1, 0, 0], [0, 0, 1, 0]]).bool())
    assert state.eos_revealed and not state.all_stopped()
    state.reveal(1, 5, torch.tensor([[5, E, 6, 7], [M, 8, E, 7]]), torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]]).bool())
    assert state.all_stopped()
    assert state.step_map.tolist() == [[0, 1, -1, -1], [0, 2, 1, -1]]


def test_a_row_stops_by_its_current_block_alone_inside_its_own_tokens():
    # a block model's canvas: 2 prompt columns, blocks of 4 from column 0; rows start their G = 2
    # tokens at columns 1, 2 and 3, so a block holds prompt tail (before) and overhang (after)
    x = torch.tensor([[9, M, M, M, M, M], [9, 9, M, M, M, M], [9, 9, 9, M, M, M]])
    state = Decoding(
        x=x, key_mask=torch.ones_like(x), step_map=torch.full((3, 4), -1), prompt_length=2, mask_id=M, eos_id=E,
        prompt_ids=x[:, :2].clone(), completion_start=torch.tensor([1, 2, 3]), gen_length=2,
    )  # fmt: skip
    columns = torch.arange(4)[None, :].expand(3, -1)
    rows = torch.arange(3)
    block = torch.tensor(
        [
            [9, 5, E, M],  # an EOS with its tokens before it whole: stopped (the mask after it: overhang)
            [E, 9, M, E],  # the prompt's EOS is not its own; its own EOS has a mask before it
            [9, 9, 9, E],  # its EOS is its first token: stopped
        ]
    )
    assert state.stopped_in_block(rows, columns, block).tolist() == [True, False, True]
    overhang = torch.tensor([[9, 5, 6, 7], [9, 9, 5, 6], [9, 9, 9, 5]])
    overhang[0, 3] = E  # row 0's EOS after its G tokens: not a stop
    assert state.stopped_in_block(rows, columns, overhang).tolist() == [False, False, False]
    assert state.stopped_in_block(slice(None), slice(0, 4), block).tolist() == [True, False, True]


@pytest.mark.parametrize("name", dllm.SAMPLERS.names())
def test_a_sampler_records_the_arguments_it_was_built_with(name):
    cls = dllm.SAMPLERS.get(name)
    defaults = {p.name: p.default for p in inspect.signature(cls).parameters.values()}
    assert dllm.build_sampler(name).settings() == defaults  # the outermost constructor's, defaults included
    sampler = dllm.build_sampler(name, temperature=0.5)
    assert sampler.settings() == {**defaults, "temperature": 0.5}
    copy = sampler.replace(temperature=0.25)
    assert type(copy) is cls and copy.settings() == {**defaults, "temperature": 0.25}
    with pytest.raises(ConfigError, match=f"sampler {cls.__name__} has no setting colour"):
        sampler.replace(colour="red")


@pytest.mark.parametrize("name", ["diffusion", "llada", "fast_dllm", "sdar", "dream"])
def test_a_copy_is_validated_again(name):
    with pytest.raises(ConfigError, match=r"temperature"):
        dllm.build_sampler(name).replace(temperature=-1.0)
