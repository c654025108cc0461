"""wd1's objective: ratio-free, needs no old or reference log-probs, and takes wd1's weights only."""

import pytest
import torch

import dllm
from dllm.algorithms.objectives.base import Scored, token_weights
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError


def test_wd1_is_each_groups_weighted_log_likelihood():
    objective = dllm.build("objective", "wd1")
    assert not objective.needs_old_log_probs(12, 4) and not objective.needs_reference
    rollout = Rollout.__new__(Rollout)
    rollout.scored = torch.tensor([[True, True, False], [True, False, False]])
    rollout.advantages = torch.tensor([0.5, -0.5])  # one group of 2
    log_probs = torch.tensor([[-1.0, -2.0, -9.0], [-4.0, -9.0, -9.0]])
    per_token = objective.per_token_loss(Scored(log_probs, rollout.scored, rollout, 0, 2), Tally())
    loss = (per_token * token_weights(rollout.scored, objective.normalisation) * rollout.scored).sum()
    assert loss.item() == pytest.approx(0.5 * (-1 - 2) - 0.5 * (-4))  # sum_i w_i log pi(o_i), one group


def test_wd1_refuses_other_advantages():
    with pytest.raises(ConfigError, match="objective wd1 weighs completions by wd1's softmax weights.*advantage=wd1"):
        dllm.build("objective", "wd1").check_advantage(dllm.build("advantage", "mean"))
    dllm.build("objective", "wd1").check_advantage(dllm.build("advantage", "wd1"))
