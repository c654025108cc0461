"""ESPO (arXiv 2512.03759, ML-GSAI/ESPO): the preset composes ESPO's parts with its GSM8K/MATH values.
The loss by hand: objectives/test_sequence_ppo.py; each token's ELBO term by hand: estimators/test_elbo.py."""

import dllm
from dllm.algorithms.advantages.loo import LeaveOneOut
from dllm.algorithms.estimators.elbo import ELBOEstimator
from dllm.algorithms.objectives.sequence_ppo import SequencePPO


def test_the_preset_builds_espos_parts():
    algorithm = dllm.build("algorithm", "espo")
    assert type(algorithm.estimator) is ELBOEstimator and type(algorithm.objective) is SequencePPO
    assert type(algorithm.advantage) is LeaveOneOut  # ESPO's leave-one-out, without std (scale_rewards false)
    assert (algorithm.estimator.num_mc, algorithm.estimator.coupled) == (2, True)
    objective = algorithm.objective
    assert (objective.clip_low, objective.clip_high, objective.log_ratio_clamp) == (0.2, 0.2, None)
    assert (objective.beta, objective.kl_estimator, objective.kl_target) == (0.001, "k2", "reference")
    assert objective.normalisation == "sequence" and objective.needs_reference
    assert (algorithm.group_size, algorithm.prompts_per_rollout, algorithm.num_iterations) == (6, 16, 8)
    assert algorithm.temperature == 1.0 and algorithm.rollout_block_length is None
