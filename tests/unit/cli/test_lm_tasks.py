"""`dllm-eval --tasks`: options that lm-eval tasks would ignore are refused, named."""

import argparse

import pytest

from dllm.cli.lm_tasks import check_override_keys, refuse_held_out_options
from dllm.errors import DllmError


def options(**given) -> argparse.Namespace:
    defaults = {"num_samples": 1, "pass_at": None, "restart": False, "reward_timeout": None}
    return argparse.Namespace(**{**defaults, **given})


def test_held_out_options_are_refused_with_tasks():
    refuse_held_out_options(options())
    with pytest.raises(DllmError, match=r"--num-samples, --restart belong to dllm-eval's own tasks"):
        refuse_held_out_options(options(num_samples=4, restart=True))


def test_an_override_naming_no_config_key_points_to_model_args():
    check_override_keys("llada_tiny", ["sampler=fast_dllm", "sampler.threshold=0.8", "+task.gen_length=8"])
    with pytest.raises(DllmError, match=r"'mc_num' is not a key of the run's config; .* --model-args mc_num=8"):
        check_override_keys("llada_tiny", ["mc_num=8"])
