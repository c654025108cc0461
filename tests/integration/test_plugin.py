"""The example plugin (examples/plugin), installed into the environment, is seen everywhere."""

import os
from importlib.metadata import PackageNotFoundError, distribution

import pytest
from omegaconf import OmegaConf

import dllm
from dllm.config import build_reward, compose
from dllm.rewards import score_batch
from dllm.run import plan
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
    assert {"acme_len", "acme_no_digits", "acme_left_to_right", "acme_rank"} <= set(listing.replace(",", " ").split())
    assert "BROKEN" not in listing


def test_plugin_components_build():
    # acme_len: a plain class with __call__ (no dllm base class); acme_no_digits: a plain function
    assert dllm.build("reward", "acme_len", max_chars=2)(["p", "p"], ["ab", "abc"]) == [1.0, 0.5]
    assert dllm.build("reward", "acme_no_digits")(["p", "p"], ["a1", "b"], truncated=[False, False]) == [0.0, 1.0]
    assert type(dllm.build_sampler("acme_left_to_right")).__name__ == "LeftToRightSampler"


def test_plugin_configs_join_the_hydra_groups():
    cfg = compose(["reward=acme_len", "sampler=acme_left_to_right"])
    plan(cfg)
    assert cfg.reward._target_ == "acme_dllm.length_reward.LengthReward"
    cfg = compose(["reward=acme_no_digits"])
    plan(cfg)
    reward = build_reward(cfg.reward)
    assert reward(["p", "p"], ["7", "seven"], answer=["7", "7"]) == [0.0, 1.0]
    assert dllm.REWARDS.name_of(reward) == "acme_no_digits"


def test_plugin_rewards_are_weighted_sum_terms():
    terms = {"acme_len": {"weight": 0.5, "max_chars": 2}, "acme_no_digits": 1}
    reward = dllm.build("reward", "weighted_sum", terms=terms)
    scores = score_batch(reward, ["p", "p"], ["ab", "a1b"], {"truncated": [False, False]})
    assert scores.terms == {"acme_len": [1.0, 0.5], "acme_no_digits": [1.0, 0.0]}
    assert scores.total == [1.5, 0.25]


@pytest.mark.slow
@pytest.mark.parametrize("reward", ["acme_len", "acme_no_digits"])
def test_plugin_components_train_from_the_command_line(tmp_path, reward):
    run_cli("dllm-train", *QUICK, f"reward={reward}", "sampler=acme_left_to_right", f"hydra.run.dir={tmp_path}")
    assert (tmp_path / "eval.json").is_file()


def test_a_broken_plugin_leaves_the_commands_working(tmp_path):
    """An installed plugin whose module is gone: `dllm list` still lists everything else, marks
    it BROKEN, and the warning naming it is printed once."""
    dist = tmp_path / "dllm_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dllm-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dllm.plugins]\nbroken = broken_dllm.plugin:register\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("dllm", "list", env=env)
    assert "plugin broken: BROKEN (ModuleNotFoundError: No module named 'broken_dllm')" in result.stdout
    assert "acme_len" in result.stdout and "exact_match" in result.stdout
    assert result.stderr.count("dllm plugin 'broken' (broken_dllm.plugin:register) failed to load") == 1


def test_a_plugin_advantage_composes_and_trains(tokenizer, tmp_path):
    """`acme_rank` (an RL advantage) joins `algorithm/advantage`, validates, and trains the policy."""
    import torch

    from dllm.algorithms.rollout import Rollout
    from dllm.config import build_node
    from tests.unit.algorithms.rl_helpers import tiny
    from tests.unit.algorithms.test_rl import SMALL, train

    cfg = compose(["model=llada_tiny", "algorithm=rl", "algorithm/advantage=acme_rank"])
    plan(cfg)
    assert cfg.algorithm.advantage._target_ == "acme_dllm.rank_advantage.RankAdvantage"
    algorithm = build_node(OmegaConf.merge(cfg.algorithm, SMALL))
    assert dllm.build("advantage", "acme_rank").__class__ is type(algorithm.advantage)
    rollout = Rollout.__new__(Rollout)
    rollout.rewards = torch.tensor([0.3, 0.9, 0.3, 0.1, 0.5, 0.5, 0.5, 0.5])
    algorithm.advantage.compute(rollout, 4, None)  # ranks 1.5, 3, 1.5, 0 of 0..3, centred, / 3; a tied group: 0
    assert rollout.advantages.tolist() == pytest.approx([0.0, 0.5, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0])
    model = tiny("llada_tiny").train()
    before = [p.detach().clone() for p in model.parameters()]
    records = train(tmp_path, model, dllm.build_sampler("llada", steps=8, block_length=8), algorithm, tokenizer)
    assert [r["step"] for r in records] == [1, 2] and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "parameters must change"
