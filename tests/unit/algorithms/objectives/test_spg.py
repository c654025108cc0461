"""SPG's objective: the ELBO where A > 0, the EUBO (or the mixture) where A <= 0, by hand."""

import pytest
import torch

import dllm
from dllm.algorithms.objectives.base import Scored, token_weights
from dllm.algorithms.rl import RL
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError
from tests.unit.algorithms.estimators.test_block_mask import SCORED, VIEWS, full_attention_rollout, scripted_views


@pytest.mark.parametrize(
    "negative, expected",
    [
        # two rows with the same bounds (ELBO -1.58333, EUBO -1.67827, 4 scored tokens each), A = +0.5 and -0.5;
        # loss = sum_i -A_i x bound_i x len_i / sum_i len_i
        ("mix", (-0.5 * -1.5833333333 * 4 + 0.5 * (0.5 * -1.6782692662 + 0.5 * -1.5833333333) * 4) / 8),
        ("eubo", (-0.5 * -1.5833333333 * 4 + 0.5 * -1.6782692662 * 4) / 8),
        ("elbo", 0.0),
    ],
)
def test_spg_loss_by_hand(negative, expected):
    rollout = full_attention_rollout(SCORED.expand(2, -1))
    rollout.advantages = torch.tensor([0.5, -0.5])
    views = [(log_probs.expand(2, -1), masked.expand(2, -1)) for log_probs, masked in VIEWS]
    estimator = scripted_views(dllm.build("estimator", "block_mask", num_masks=2, eubo_beta=1.5), views)
    objective = dllm.build("objective", "spg", negative=negative, mix_weight=0.5)
    assert not objective.needs_old_log_probs(4, 2) and not objective.needs_reference  # ratio-free, no KL
    [(lower, covered, extras)] = estimator.chunks(None, rollout, {})
    per_token = objective.per_token_loss(Scored(lower, covered, rollout, 0, 2, extras), Tally())
    loss = (per_token * token_weights(rollout.scored, objective.normalisation) * covered).sum()
    assert loss.item() == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx({"mix": -0.0118671, "eubo": -0.0237343, "elbo": 0.0}[negative], abs=1e-6)


def test_spg_refuses_an_estimator_without_an_upper_bound_and_wd1_weights():
    with pytest.raises(ConfigError, match="objective spg .* estimator one_step does not give.*block_mask"):
        RL(estimator=dllm.build("estimator", "one_step"), objective=dllm.build("objective", "spg"))
    RL(estimator=dllm.build("estimator", "one_step"), objective=dllm.build("objective", "spg", negative="elbo"))
    with pytest.raises(ConfigError, match="objective spg picks a bound .*advantage=mean"):
        dllm.build("objective", "spg").check_advantage(dllm.build("advantage", "wd1"))
    with pytest.raises(ConfigError, match="negative must be eubo, mix or elbo"):
        dllm.build("objective", "spg", negative="upper")


def test_the_spg_preset_keeps_the_papers_values():
    algorithm = dllm.build("algorithm", "spg")
    estimator, objective = algorithm.estimator, algorithm.objective
    assert (estimator.num_masks, estimator.t_min, estimator.t_max, estimator.block_length) == (2, 0.0, 1.0, 32)
    assert (estimator.p_mask_prompt, estimator.eubo_beta, estimator.upper_bound) == (0.15, 1.5, True)
    assert (objective.negative, objective.mix_weight) == ("mix", 0.5)
    assert type(algorithm.advantage).__name__ == "MeanAdvantage"
    got = (algorithm.group_size, algorithm.prompts_per_rollout, algorithm.num_iterations, algorithm.temperature)
    assert got == (6, 16, 4, 0.9)
