import torch

from dllm.samplers.base import fill_after_eos, stop_positions

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


def test_fill_after_eos_uses_the_eos_step():
    completion = torch.tensor([[5, E, 6, M], [M, E, 6, 7]])
    steps = torch.tensor([[3, 1, 0, -1], [-1, 0, 1, 2]])
    filled, step_map = fill_after_eos(completion, steps, E, M)
    assert filled.tolist() == [[5, E, E, E], [M, E, 6, 7]]
    assert step_map.tolist() == [[3, 1, 1, 1], [-1, 0, 1, 2]]
