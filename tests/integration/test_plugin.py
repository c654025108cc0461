"""The example plugin (examples/plugin), installed into the environment, is seen everywhere."""

from importlib.metadata import PackageNotFoundError, distribution

import pytest

import dllm
from dllm.config import compose, validate
from tests.integration.conftest import QUICK, run_cli


@pytest.fixture(scope="module", autouse=True)
def plugin_installed():
    try:
        distribution("dllm-acme")
    except PackageNotFoundError:
        pytest.fail(
            "the example plugin is not installed: pip install -e examples/plugin (the README's test command does)"
        )


def test_plugin_components_are_listed():
    listing = run_cli("dllm", "list").stdout
    assert "acme_len" in listing and "acme_left_to_right" in listing


def test_plugin_components_build():
    assert dllm.build("reward", "acme_len", max_chars=2)(["p", "p"], ["ab", "abc"]) == [1.0, 0.5]
    assert type(dllm.build_sampler("acme_left_to_right")).__name__ == "LeftToRightSampler"


def test_plugin_configs_join_the_hydra_groups():
    cfg = compose(["reward=acme_len", "sampler=acme_left_to_right"])
    validate(cfg)
    assert cfg.reward._target_ == "acme_dllm.length_reward.LengthReward"


@pytest.mark.slow
def test_plugin_components_train_from_the_command_line(tmp_path):
    run_cli("dllm-train", *QUICK, "reward=acme_len", "sampler=acme_left_to_right", f"hydra.run.dir={tmp_path}")
    assert (tmp_path / "eval.json").is_file()
