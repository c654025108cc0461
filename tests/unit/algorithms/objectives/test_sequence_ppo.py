"""`sequence_ppo` (ESPO's objective): one clipped ratio and one KL per sequence, by hand."""

import math

import pytest
import torch

import dllm
from dllm.algorithms.objectives.base import Scored, token_weights
from dllm.algorithms.rl import RL
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError


def test_the_sequence_loss_and_its_gradient_by_hand():
    """Row 0 (3 tokens, A = 1): (S - S_old) / L = (-6 + 6.9) / 3 = 0.3, r = e^0.3 > 1.2, clipped:
    -1.2. Row 1 (2 tokens, A = -1): (-2 + 2.2) / 2 = 0.1, r = e^0.1: min(-r, -r) -> r. k2 KL,
    beta 0.1: (S - S_ref)^2 / (2 L) = 0.6^2 / 6 = 0.06 and 0.4^2 / 4 = 0.04. Mean over the rows."""
    objective = dllm.build("objective", "sequence_ppo", clip_low=0.2, clip_high=0.2, beta=0.1)
    rollout = Rollout.__new__(Rollout)
    rollout.scored = torch.tensor([[True, True, True], [True, True, False]])
    rollout.advantages = torch.tensor([1.0, -1.0])
    rollout.old_log_probs = [torch.tensor([[-1.3, -2.3, -3.3], [-1.1, -1.1, 5.0]])]
    rollout.ref_log_probs = [torch.tensor([[-1.0, -2.0, -2.4], [-1.2, -1.2, 5.0]])]
    log_probs = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 9.0]], requires_grad=True)
    tally = Tally()
    per_token = objective.per_token_loss(Scored(log_probs, rollout.scored, rollout, 0, 2), tally)
    loss = (per_token * token_weights(rollout.scored, objective.normalisation) * rollout.scored).sum()
    row0, row1 = -1.2 + 0.1 * 0.06, math.exp(0.1) + 0.1 * 0.04
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)  # -0.0424145
    assert loss.item() == pytest.approx(-0.0424145, abs=1e-6)
    loss.backward()
    # Row 0 is clipped: only its KL moves it, beta (S - S_ref) / L / 2 rows = 0.1 x -0.2 / 2 per token.
    # Row 1: -A r / L + beta (S - S_ref) / L, halved: (e^0.1 / 2 + 0.1 x 0.2) / 2. Never the unscored token.
    assert log_probs.grad[0].tolist() == pytest.approx([-0.01] * 3, abs=1e-6)
    assert log_probs.grad[1].tolist() == pytest.approx([0.2862925, 0.2862925, 0.0], abs=1e-6)
    metrics = {name: value.item() for name, value in tally.metrics().items()}
    assert metrics["ratio"] == pytest.approx((math.exp(0.3) + math.exp(0.1)) / 2, abs=1e-6)
    assert metrics["clip_fraction"] == 0.5 and metrics["kl"] == pytest.approx(0.05, abs=1e-6)


def test_one_update_per_rollout_needs_no_old_log_probs():
    """The first update's ratio is exactly 1 (pi_old = the live policy, detached): -A per sequence."""
    objective = dllm.build("objective", "sequence_ppo")
    assert not objective.needs_old_log_probs(1, 1) and objective.needs_old_log_probs(8, 1)
    assert not objective.needs_reference and dllm.build("objective", "sequence_ppo", beta=0.001).needs_reference
    rollout = Rollout.__new__(Rollout)
    rollout.scored, rollout.advantages = torch.tensor([[True, False]]), torch.tensor([0.5])
    rollout.old_log_probs, rollout.ref_log_probs = [], []
    per_token = objective.per_token_loss(Scored(torch.tensor([[-3.0, -1.0]]), rollout.scored, rollout, 0, 1), Tally())
    assert per_token.tolist() == [[-0.5, -0.5]]


def test_estimators_that_score_a_sequence_in_parts_are_refused():
    objective = dllm.build("objective", "sequence_ppo")
    with pytest.raises(ConfigError, match="sequence_ppo needs each sequence's log-likelihood whole.*estimator trace"):
        objective.check_estimator(dllm.build("estimator", "trace"))
    for name in ("elbo", "coupled", "one_step", "random_mask"):
        objective.check_estimator(dllm.build("estimator", name))
    with pytest.raises(ConfigError, match="sequence_ppo needs each sequence's"):
        RL(estimator=dllm.build("estimator", "trace"), objective=objective)  # the loop asks, before any work


@pytest.mark.parametrize("name, message", [("value", "one advantage per completion"), ("wd1", "objective=wd1")])
def test_token_advantages_and_wd1_weights_are_refused(name, message):
    with pytest.raises(ConfigError, match=message):
        dllm.build("objective", "sequence_ppo").check_advantage(dllm.build("advantage", name))
