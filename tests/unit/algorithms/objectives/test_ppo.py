import math

import pytest
import torch

import dllm
from dllm.algorithms.objectives.base import reduce_tokens, row_units
from dllm.algorithms.objectives.ppo import clipped_surrogate, kl_penalty


def test_clipped_surrogate_by_hand():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    surrogate, ratio = clipped_surrogate(new, old, advantages, eps_low=0.2, eps_high=0.3)
    assert ratio[0].tolist() == pytest.approx([1.5, 0.5, 1.5, 0.5])
    # A > 0: min(1.5, 1.3) = 1.3, min(0.5, 0.8) = 0.5; A < 0: min(-1.5, -1.3) = -1.5, min(-0.5, -0.8) = -0.8
    assert surrogate[0].tolist() == pytest.approx([1.3, 0.5, -1.5, -0.8])


def test_a_sequence_advantage_broadcasts_and_the_log_ratio_clamps():
    surrogate, ratio = clipped_surrogate(torch.tensor([[20.0]]), torch.zeros(1, 1), torch.tensor([2.0]), 0.2, 0.2, 1.0)
    assert ratio.item() == pytest.approx(math.e) and surrogate.item() == pytest.approx(2 * 1.2)


def test_kl_estimators_by_hand():
    log_p, log_q = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])  # log(p/q) = log 2
    assert kl_penalty(log_p, log_q, "k1").item() == pytest.approx(math.log(2))
    assert kl_penalty(log_p, log_q, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_penalty(log_p, log_q, "k3").item() == pytest.approx(0.5 - math.log(0.5) - 1)  # q/p - log(q/p) - 1
    assert kl_penalty(log_p, log_p, "k3").item() == 0.0


def test_token_and_sequence_normalisation():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    scored = torch.tensor([[True, True, True], [True, False, False]])
    assert reduce_tokens(per_token, scored, "token").item() == pytest.approx(10 / 4)
    assert reduce_tokens(per_token, scored, "sequence").item() == pytest.approx((2 + 4) / 2)
    assert row_units(scored, "token").tolist() == [3, 1] and row_units(scored, "sequence").tolist() == [1, 1]


@pytest.mark.parametrize(
    "options, iterations, steps, old, reference",
    [
        ({}, 1, 1, False, False),  # one update per rollout: pi_old is the live policy, detached
        ({}, 2, 1, True, False),
        ({}, 1, 3, True, False),
        ({"beta": 0.01}, 1, 1, False, True),  # KL to the frozen reference
        ({"beta": 0.01, "kl_target": "old"}, 1, 1, True, False),  # KL to the rollout policy
    ],
)
def test_ppo_asks_only_for_the_log_probs_it_reads(options, iterations, steps, old, reference):
    objective = dllm.build("objective", "ppo", **options)
    assert objective.needs_old_log_probs(iterations, steps) == old
    assert objective.needs_reference == reference


def test_the_reference_copy_is_made_only_when_the_objective_reads_it(tokenizer):
    from tests.unit.algorithms.rl_helpers import tiny
    from tests.unit.algorithms.test_rl import SMALL, context

    ctx = context(tiny("llada_tiny"), tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    for beta, kl_target, copied in [(0.0, "reference", False), (0.1, "old", False), (0.1, "reference", True)]:
        objective = dllm.build("objective", "ppo", beta=beta, kl_target=kl_target)
        algorithm = dllm.build("algorithm", "rl", objective=objective, **SMALL)
        algorithm.start(ctx)
        assert (algorithm.reference is not None) == copied
        list(algorithm.micro_batches(ctx, 2))
        assert bool(algorithm.rollout.ref_log_probs) == copied
