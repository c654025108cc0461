"""The group filters, alone and together (`Filters`: a group is kept when every filter keeps it)."""

import pytest
import torch

import dllm
from dllm.algorithms.filters import Filters
from dllm.errors import ConfigError

REWARDS = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # accuracies 2/3, 1/3, 0, 1


def test_each_filter_and_both_together():
    drop_equal, band = dllm.build("filter", "drop_equal_groups"), dllm.build("filter", "accuracy_band", low=0.5)
    assert Filters(drop_equal_groups=drop_equal).keep(REWARDS, 3).tolist() == [True] * 6 + [False] * 6
    assert Filters(accuracy_band=band).keep(REWARDS, 3).tolist() == [True] * 3 + [False] * 9  # [0.5, 0.8]
    wide = dllm.build("filter", "accuracy_band", low=0.0, high=1.0)
    both = Filters(drop_equal_groups=drop_equal, accuracy_band=wide)
    assert both.keep(REWARDS, 3).tolist() == [True] * 6 + [False] * 6
    assert Filters(accuracy_band=None).keep(REWARDS, 3).all()  # a null filter is left out


def test_bad_filters_are_refused():
    with pytest.raises(ConfigError, match=r"accuracy_band: need 0 <= low <= high <= 1, got \[0.9, 0.1\]"):
        dllm.build("filter", "accuracy_band", low=0.9, high=0.1)
    with pytest.raises(ConfigError, match="algorithm.filters.band must be a filter node"):
        Filters(band=0.3)
