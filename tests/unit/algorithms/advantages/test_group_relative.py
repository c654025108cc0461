"""The group-relative advantages (group, mean, loo, wd1) on rewards worked by hand."""

import math

import pytest
import torch

import dllm
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError

REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two groups of 3


def advantages(name: str, rewards: torch.Tensor, group_size: int) -> list[float]:
    rollout = Rollout.__new__(Rollout)  # only the rewards are read
    rollout.rewards = rewards
    dllm.build("advantage", name).compute(rollout, group_size, None)
    return rollout.advantages.tolist()


def test_group_z_score_uses_the_population_std():
    # group 0: mean 1/3, population std sqrt(2)/3 -> (1 - 1/3) / (sqrt(2)/3) = sqrt(2), (0 - 1/3) / ... = -1/sqrt(2)
    # group 1: all equal -> 0 (no epsilon, no division by zero)
    expected = [math.sqrt(2), -1 / math.sqrt(2), -1 / math.sqrt(2), 0.0, 0.0, 0.0]
    assert advantages("group", REWARDS, 3) == pytest.approx(expected)


def test_mean_only_and_leave_one_out():
    assert advantages("mean", REWARDS, 3) == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0, 0, 0])
    # leave-one-out: 1 - mean(0, 0) = 1; 0 - mean(1, 0) = -1/2
    assert advantages("loo", REWARDS, 3) == pytest.approx([1.0, -0.5, -0.5, 0, 0, 0])


def test_wd1_weights_by_hand():
    # rewards (1, 0): softmax(A) = (e/(e+1), 1/(e+1)); w = softmax(-A) - softmax(A)
    e = math.e
    assert advantages("wd1", torch.tensor([1.0, 0.0]), 2) == pytest.approx([(1 - e) / (e + 1), (e - 1) / (e + 1)])
    assert advantages("wd1", torch.tensor([0.5, 0.5]), 2) == [0.0, 0.0]  # no signal, no gradient


@pytest.mark.parametrize("name", ["group", "mean", "loo", "wd1"])
def test_a_group_of_one_cannot_be_normalised(name):
    with pytest.raises(ConfigError, match=f"advantage={name} .* group_size is 1: set algorithm.group_size >= 2"):
        dllm.build("advantage", name).check(1)
