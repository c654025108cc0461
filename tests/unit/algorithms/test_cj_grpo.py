"""CJ-GRPO (arXiv 2509.23924, yjyddq/EOSER-ASS-RL): GRPO on the rollout's own decoding trajectory.

Each decoding step's state (the canvas before it) scores the tokens the step revealed: the trace
estimator at shrinkage 1, here on rollouts decoded with the paper's EOSER + ASS options."""

import pytest
import torch

import dllm
from dllm.algorithms.advantages.mean import MeanAdvantage
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.objectives.base import Scored, token_weights
from dllm.algorithms.objectives.ppo import PPO
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from dllm.samplers.diffusion import DiffusionSampler
from tests.unit.algorithms.estimators.test_trace import EOS, RAGGED, policy
from tests.unit.algorithms.rl_helpers import Recorder, sampled_rollout, step_forwards


def test_the_preset_builds_cj_grpos_parts():
    algorithm = dllm.build("algorithm", "cj_grpo")
    estimator, objective = algorithm.estimator, algorithm.objective
    assert type(estimator) is TraceEstimator and (estimator.shrinkage, estimator.targets) == (1, "revealed")
    assert type(algorithm.advantage) is MeanAdvantage and type(objective) is PPO
    assert (objective.clip_low, objective.clip_high, objective.beta) == (0.5, 0.5, 0.04)
    assert (objective.kl_estimator, objective.kl_target, objective.normalisation) == ("k3", "reference", "token")
    assert (algorithm.group_size, algorithm.num_iterations, algorithm.temperature) == (6, 12, 1.0)


def test_the_loss_on_a_fixed_rollout_by_hand():
    """One group of 2, rewards (1, 0): A = r - mean = (0.5, -0.5), no std. Ratios: row 0 (1.6, 1.0),
    row 1 (0.4); clip 0.5. -min(r A, clip(r) A): -0.75 (1.6 clipped to 1.5), -0.5, +0.25 (0.4 to 0.5).
    k3 KL to a reference at log-prob 0: 1/r + ln r - 1 = 0.0950036, 0, 0.5837093, x 0.04.
    The token mean: (-0.7461999 - 0.5 + 0.2733484) / 3 = -0.3242838."""
    algorithm = dllm.build("algorithm", "cj_grpo", group_size=2)
    rollout = Rollout.__new__(Rollout)
    rollout.rewards = torch.tensor([1.0, 0.0])
    algorithm.advantage.compute(rollout, 2, None)
    assert rollout.advantages.tolist() == [0.5, -0.5]
    rollout.scored = torch.tensor([[True, True], [True, False]])
    rollout.old_log_probs = [torch.zeros(2, 2)]
    rollout.ref_log_probs = [torch.zeros(2, 2)]
    ratios = torch.tensor([[1.6, 1.0], [0.4, 1.0]])
    per_token = algorithm.objective.per_token_loss(Scored(ratios.log(), rollout.scored, rollout, 0, 2), Tally())
    loss = (per_token * token_weights(rollout.scored, "token") * rollout.scored).sum()
    assert loss.item() == pytest.approx(-0.3242838, abs=1e-6)


@pytest.mark.parametrize("schedule, steps", [("ascending", 4), ("linear", 8)])
def test_the_states_are_those_the_eoser_sampler_decoded_from(schedule, steps, tokenizer):
    """With EOSER + ASS on (stop_at_eos on, ragged prompts), each replayed state is, token for token,
    the canvas the sampler's forward saw before the step that revealed the state's actions."""
    recorder = Recorder(policy("llada_tiny", True))
    sampler = DiffusionSampler(steps=steps, step_schedule=schedule, eos_min_gamma=0.01, temperature=1.0,
                               sampling="gumbel")  # fmt: skip
    rollout = sampled_rollout(recorder, sampler, tokenizer, RAGGED, gen_length=16, eos_id=EOS)
    p = rollout.prompt_length
    states = list(TraceEstimator().states(rollout))
    assert sum(int(actions.sum()) for _, actions in states) == int(rollout.scored.sum())
    forwards = step_forwards(recorder, rollout)
    compared = 0
    for noisy, actions in states:
        for row in range(noisy.shape[0]):
            if actions[row].any():
                call, index = forwards[row][int(rollout.step_map[row][actions[row]].min())]
                assert torch.equal(noisy[row, p:], recorder.inputs[call][index, p:])
                compared += 1
    assert compared >= len(RAGGED) * 2
