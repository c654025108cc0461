"""BGPO's bound: linear in the Monte Carlo samples, equal in value and gradient to the ELBO
objective on-policy, by hand."""

import pytest
import torch

import dllm
from dllm.algorithms.objectives.base import Scored, token_weights
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally


def test_bgpo_equals_the_elbo_objective_on_policy_one_sample_at_a_time():
    rollout = Rollout.__new__(Rollout)
    rollout.scored = torch.tensor([[True, True, True], [True, True, False]])  # lengths 3 and 2
    rollout.advantages = torch.tensor([1.0, -0.5])
    objective = dllm.build("objective", "bgpo")
    weights = token_weights(rollout.scored, objective.normalisation)
    # two samples' per-token ELBO terms (each 1/K of the estimate), each back-propagated on its own
    samples = [torch.tensor([[-0.4, -0.1, -0.3], [-0.2, -0.6, -7.0]], requires_grad=True),
               torch.tensor([[-0.3, -0.5, -0.2], [-0.1, -0.4, -7.0]], requires_grad=True)]  # fmt: skip
    share = torch.tensor(0.5)
    total = 0.0
    for values in samples:
        scored = Scored(values, rollout.scored, rollout, 0, 2, {"share": share})
        part = (objective.per_token_loss(scored, Tally()) * weights * rollout.scored).sum()
        part.backward()
        total += part.item()
    # value: -sum_i A_i len_i / sum len = -(1 x 3 - 0.5 x 2) / 5
    assert total == pytest.approx(-0.4)
    # gradient: that of -sum_i A_i len_i B_i / sum len, B_i = the row's mean of the summed terms: -A_i / 5 per token
    expected = torch.tensor([[-0.2, -0.2, -0.2], [0.1, 0.1, 0.0]])
    for values in samples:
        assert torch.allclose(values.grad, expected)


def test_bgpo_bounds_the_ratio_objective_off_policy():
    # A x exp(B - B_old) >= the sum of BGPO's per-sample terms, for either sign of A (1 + x <= e^x; Jensen)
    d = torch.tensor([0.3, -0.9])  # l_k - l_k_old of K = 2 samples
    exact = torch.exp(d.mean())
    assert 1.0 * exact >= 1.0 * (1 + d.mean())
    assert -1.0 * exact >= -1.0 * torch.exp(d).mean()


def test_bgpo_reads_no_old_log_probs():
    objective = dllm.build("objective", "bgpo")  # on-policy: the live per-sample values, detached
    assert not objective.needs_old_log_probs(1, 1) and not objective.needs_old_log_probs(4, 2)
    assert not objective.needs_reference


def test_the_bgpo_preset():
    algorithm = dllm.build("algorithm", "bgpo")
    assert (algorithm.estimator.num_masks, algorithm.estimator.upper_bound, algorithm.num_iterations) == (16, False, 1)
    assert (algorithm.estimator.block_length, algorithm.prompts_per_rollout) == (32, 16)
    assert type(algorithm.advantage).__name__ == "GroupAdvantage"
