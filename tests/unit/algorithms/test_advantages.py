import math

import pytest
import torch

from dllm.algorithms.advantages import group_advantages, groups_to_keep, wd1_weights
from dllm.errors import ConfigError

REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two groups of 3


def test_group_z_score_uses_the_population_std():
    # group 0: mean 1/3, population std sqrt(2)/3 -> (1 - 1/3) / (sqrt(2)/3) = sqrt(2), (0 - 1/3) / ... = -1/sqrt(2)
    # group 1: all equal -> 0 (no epsilon, no division by zero)
    advantages = group_advantages(REWARDS, 3, "group")
    expected = [math.sqrt(2), -1 / math.sqrt(2), -1 / math.sqrt(2), 0.0, 0.0, 0.0]
    assert advantages.tolist() == pytest.approx(expected)


def test_mean_only_and_leave_one_out():
    assert group_advantages(REWARDS, 3, "mean").tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0, 0, 0])
    # leave-one-out: 1 - mean(0, 0) = 1; 0 - mean(1, 0) = -1/2
    assert group_advantages(REWARDS, 3, "loo").tolist() == pytest.approx([1.0, -0.5, -0.5, 0, 0, 0])


def test_a_group_of_one_cannot_be_normalised():
    with pytest.raises(ConfigError, match="at least 2 completions per prompt; got group_size 1"):
        group_advantages(torch.tensor([1.0]), 1, "group")


def test_group_filters():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # accuracies 2/3, 1/3, 0
    assert groups_to_keep(rewards, 3, drop_equal=True, accuracy_band=None).tolist() == [True] * 6 + [False] * 3
    band = groups_to_keep(rewards, 3, drop_equal=False, accuracy_band=(0.5, 1.0))
    assert band.tolist() == [True] * 3 + [False] * 6


def test_wd1_weights_by_hand():
    # rewards (1, 0): softmax(A) = (e/(e+1), 1/(e+1)); w = softmax(-A) - softmax(A)
    e = math.e
    weights = wd1_weights(torch.tensor([1.0, 0.0]), 2)
    assert weights.tolist() == pytest.approx([1 / (e + 1) - e / (e + 1), e / (e + 1) - 1 / (e + 1)])
    assert wd1_weights(torch.tensor([0.5, 0.5]), 2).tolist() == [0.0, 0.0]  # no signal, no gradient
