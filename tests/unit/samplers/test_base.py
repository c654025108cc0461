import inspect

import pytest
import torch

import dllm
from dllm.errors import ConfigError
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
