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


def test_fill_after_eos_fills_stopped_rows_only():
    completion = torch.tensor([[5, E, 6, M], [M, E, 6, 7]])
    assert fill_after_eos(completion, E, M).tolist() == [[5, E, E, E], [M, E, 6, 7]]
    assert fill_after_eos(completion, None, M).tolist() == completion.tolist()
