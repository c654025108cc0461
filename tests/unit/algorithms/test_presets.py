"""Each RL preset builds its paper's parts with the paper's values (issue 16: the presets are
compositions of components; these are the settings they had as one class's options)."""

import pytest

import dllm
from dllm.algorithms.advantages.group import GroupAdvantage
from dllm.algorithms.advantages.loo import LeaveOneOut
from dllm.algorithms.advantages.mean import MeanAdvantage
from dllm.algorithms.advantages.value import ValueAdvantage
from dllm.algorithms.advantages.wd1 import WD1Weights
from dllm.algorithms.estimators.coupled import CoupledEstimator
from dllm.algorithms.estimators.one_step import OneStepEstimator
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.objectives.ppo import PPO
from dllm.algorithms.objectives.wd1 import WD1

PPO_DEFAULTS = {"clip_low": 0.2, "clip_high": 0.2, "log_ratio_clamp": None, "beta": 0.0, "kl_estimator": "k3",
                "kl_target": "reference", "normalisation": "token"}  # fmt: skip
PRESETS = {  # preset -> (estimator, advantage, objective, objective settings, filters, loop settings)
    "rl": (TraceEstimator, GroupAdvantage, PPO, {}, {}, (8, 8, 1, 1.0)),
    "tracerl": (TraceEstimator, GroupAdvantage, PPO, {"log_ratio_clamp": 10.0, "beta": 0.01, "kl_target": "old"},
                {"accuracy_band": {"low": 0.2, "high": 0.8}}, (16, 64, 1, 1.0)),
    "tracerl_value": (TraceEstimator, ValueAdvantage, PPO,
                      {"log_ratio_clamp": 10.0, "beta": 0.01, "kl_target": "old"}, {}, (16, 64, 1, 1.0)),
    "diffu_grpo": (OneStepEstimator, MeanAdvantage, PPO, {"clip_low": 0.5, "clip_high": 0.5, "beta": 0.04}, {},
                   (6, 16, 12, 0.9)),
    "coupled_grpo": (CoupledEstimator, LeaveOneOut, PPO, {"clip_low": 0.5, "clip_high": 0.5, "beta": 0.01}, {},
                     (10, 8, 2, 1.0)),
    "wd1": (OneStepEstimator, WD1Weights, WD1, None, {}, (6, 16, 12, 0.9)),
}  # fmt: skip


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_builds_its_papers_parts(preset):
    estimator, advantage, objective, settings, filters, loop = PRESETS[preset]
    algorithm = dllm.build("algorithm", preset)
    assert type(algorithm.estimator) is estimator
    assert type(algorithm.advantage) is advantage and type(algorithm.objective) is objective
    if settings is not None:
        got = {key: getattr(algorithm.objective, key) for key in PPO_DEFAULTS}
        assert got == {**PPO_DEFAULTS, **settings}
    else:
        assert algorithm.objective.normalisation == "sequence"  # wd1: each sequence's log-likelihood
    assert {name: vars(item) for name, item in algorithm.filters.filters.items()} == filters
    got = (algorithm.group_size, algorithm.prompts_per_rollout, algorithm.num_iterations, algorithm.temperature)
    assert got == loop
    assert algorithm.objective.needs_reference == (settings is not None and settings.get("beta", 0) > 0
                                                   and settings.get("kl_target") != "old")  # fmt: skip


def test_the_presets_critic_and_estimators_keep_their_papers_values():
    advantage = dllm.build("algorithm", "tracerl_value").advantage
    critic = advantage.critic
    assert (critic.lr, critic.clip, critic.max_grad_norm, critic.checkpoint) == (5e-6, 0.2, 1.0, None)
    assert (advantage.gamma, advantage.lam) == (1.0, 1.0)
    assert dllm.build("algorithm", "diffu_grpo").estimator.p_mask_prompt == 0.15
    coupled = dllm.build("algorithm", "coupled_grpo").estimator
    assert (coupled.t_min, coupled.t_max, coupled.full_mask_term) == (0.2, 0.8, True)
