"""Rollouts decoded with Running Confidence Remasking (`sampler.rcr`): refused, at start-up, by the
parts that rebuild the decoding's states from `step_map`; accepted by those that mask at random."""

import pytest

import dllm
from dllm.errors import ConfigError

TASK = "addition"


@pytest.mark.parametrize(
    "preset, reader",
    [
        ("mdpo", "estimator TraceEstimator"),
        ("tracerl", "estimator TraceEstimator"),
        ("tracerl_value", "estimator TraceEstimator and advantage ValueAdvantage"),
        ("tree_rpo", "algorithm.tree_branches"),
    ],
)
def test_trajectory_replays_refuse_remasking_rollouts(preset, reader):
    algorithm = dllm.build("algorithm", preset)
    sampler = dllm.build_sampler("diffusion", rcr=True, steps=8, block_length=4)
    with pytest.raises(ConfigError, match=f"remasks revealed tokens \\(rcr\\).*{reader}.*set sampler.rcr=false"):
        algorithm.check_run(dllm.build("task", TASK), sampler, None)
    algorithm.check_run(dllm.build("task", TASK), sampler.replace(rcr=False), None)  # the same run without RCR


@pytest.mark.parametrize("preset", ["diffu_grpo", "coupled_grpo", "unigrpo", "espo", "wd1"])
def test_random_mask_estimators_take_remasking_rollouts(preset):
    algorithm = dllm.build("algorithm", preset)
    algorithm.check_run(dllm.build("task", TASK), dllm.build_sampler("diffusion", rcr=True, steps=8), None)
