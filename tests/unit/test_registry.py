import logging
import re

import pytest

import dllm
import dllm.registry as reg
from dllm.errors import PluginError, UnknownNameError
from dllm.registry import REGISTRIES, DuplicateNameError, Registry, registry
from dllm.rewards.base import RewardError, score_batch


@pytest.fixture
def widgets():
    from dllm.registry import REGISTRIES

    reg = Registry("widget_test")
    yield reg
    del REGISTRIES["widget_test"]


def test_register_get_build_names(widgets):
    @widgets.register("double")
    def double(x: int = 1) -> int:
        return 2 * x

    assert widgets.get("double") is double
    assert widgets.build("double", x=4) == 8
    assert widgets.names() == ["double"]
    assert "double" in widgets and len(widgets) == 1
    assert widgets.name_of(double) == "double"


def test_unknown_name_lists_known_and_close_matches():
    with pytest.raises(UnknownNameError) as info:
        dllm.SAMPLERS.get("lada")
    message = str(info.value)
    assert "unknown sampler 'lada'" in message
    assert "did you mean 'llada'" in message
    assert "known: " in message and "llada" in message.split("known: ")[1]


def test_duplicate_name_is_an_error(widgets):
    widgets.register("a")(lambda: 1)
    with pytest.raises(DuplicateNameError, match="registered already"):
        widgets.register("a")(lambda: 2)


def test_same_object_may_register_twice(widgets):
    def f():
        return 1

    widgets.register("f")(f)
    widgets.register("f")(f)
    assert widgets.names() == ["f"]


def test_interface_is_enforced(widgets):
    typed = Registry("typed_test", interface=dllm.Sampler)
    try:
        with pytest.raises(TypeError, match="must subclass"):
            typed.register("bad")(int)
    finally:
        from dllm.registry import REGISTRIES

        del REGISTRIES["typed_test"]


def test_build_by_kind_and_unknown_kind():
    sampler = dllm.build("sampler", "llada", steps=4, block_length=4)
    assert sampler.steps == 4
    with pytest.raises(UnknownNameError, match="unknown component kind 'samplr' — did you mean 'sampler'"):
        registry("samplr")


def test_public_registries_hold_the_builtins():
    assert "llada" in dllm.SAMPLERS.names()
    assert {"llada", "llada_tiny", "llada_small"} <= set(dllm.MODELS.names())
    assert "sft" in dllm.ALGORITHMS.names()
    assert "exact_match" in dllm.REWARDS.names()
    assert "addition" in dllm.TASKS.names()


def short(prompts, completions, **fields):
    """A TRL-style function reward: 1.0 for a completion of at most 3 characters."""
    return [float(len(c) <= 3) for c in completions]


def longer_than(prompts, completions, limit: int = 3, **fields):
    return [float(len(c) > limit) for c in completions]


class Contains:
    """A callable class with no dllm base class, as TRL users write rewards."""

    def __init__(self, word: str = "yes") -> None:
        self.word = word

    def __call__(self, prompts, completions, **fields):
        return [float(self.word in c) for c in completions]


@pytest.fixture
def scratch_registries(monkeypatch):
    """Registrations made by the test are undone afterwards."""
    for kind in list(REGISTRIES.values()):
        monkeypatch.setattr(kind, "_entries", dict(kind._entries))


def test_every_callable_with_the_reward_signature_registers(scratch_registries):
    dllm.REWARDS.register("t_short")(short)
    dllm.REWARDS.register("t_longer")(longer_than)
    dllm.REWARDS.register("t_contains")(Contains)
    dllm.REWARDS.register("t_contains_no")(Contains("no"))
    completions = ["yes", "no, long", "ok"]
    assert dllm.build("reward", "t_short")(["p"] * 3, completions) == [1.0, 0.0, 1.0]
    assert dllm.build("reward", "t_longer", limit=2)(["p"] * 3, completions, answer=[1, 2, 3]) == [1.0, 1.0, 0.0]
    assert dllm.build("reward", "t_contains", word="o")(["p"] * 3, completions) == [0.0, 1.0, 1.0]
    assert dllm.build("reward", "t_contains_no")(["p"] * 3, completions) == [0.0, 1.0, 0.0]
    scores = score_batch(dllm.build("reward", "t_longer", limit=2), ["p"] * 3, completions, {"truncated": [0, 0, 0]})
    assert scores.total == [1.0, 1.0, 0.0] and list(scores.terms) == ["t_longer"]
    summed = dllm.build("reward", "weighted_sum", terms={"t_short": 1.0, "t_contains": {"weight": 2.0, "word": "o"}})
    assert summed(["p"] * 3, completions, truncated=[False] * 3) == [1.0, 2.0, 3.0]


def test_a_reward_with_the_wrong_signature_is_refused_when_built(scratch_registries):
    def no_fields(prompts, completions):
        return [0.0] * len(completions)

    class NoCall:
        pass

    dllm.REWARDS.register("t_no_fields")(no_fields)
    with pytest.raises(RewardError, match=r"'t_no_fields' has the signature \(prompts, completions\).*\*\*fields"):
        dllm.build("reward", "t_no_fields")
    with pytest.raises(TypeError, match="class .*NoCall has no __call__; a reward is called as reward"):
        dllm.REWARDS.register("t_no_call")(NoCall)
    dllm.REWARDS.register("t_instance")(Contains())
    with pytest.raises(RewardError, match="'t_instance' is a registered instance and takes no options"):
        dllm.build("reward", "t_instance", word="x")


class FakeEntryPoint:
    def __init__(self, name, register):
        self.name, self.value, self.register = name, f"{name}_pkg.plugin:register", register

    def load(self):
        if isinstance(self.register, Exception):
            raise self.register
        return self.register


@pytest.fixture
def plugins(monkeypatch, scratch_registries):
    """Install fake `dllm.plugins` entry points, loaded afresh at the next registry read."""

    def install(*entry_points):
        monkeypatch.setattr(reg, "_plugins_loaded", False)
        monkeypatch.setattr(reg, "PLUGIN_FAILURES", {})
        monkeypatch.setattr(reg, "_plugin_packages", {})
        monkeypatch.setattr(reg, "entry_points", lambda group: list(entry_points) if group == reg.PLUGIN_GROUP else [])

    return install


def test_a_broken_plugin_is_reported_once_and_the_others_still_load(plugins, caplog):
    def good():
        dllm.REWARDS.register("good_short")(short)

    plugins(FakeEntryPoint("broken", ImportError("No module named 'broken_pkg'")), FakeEntryPoint("good", good))
    with caplog.at_level(logging.WARNING, logger="dllm.registry"):
        assert "good_short" in dllm.REWARDS and "llada" in dllm.SAMPLERS
        dllm.REWARDS.names()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "dllm plugin 'broken' (broken_pkg.plugin:register) failed to load and is left out: ImportError: No module "
        "named 'broken_pkg'. Fix or uninstall the package providing it."
    ]
    with pytest.raises(UnknownNameError, match="unknown reward 'broken_len'.*; plugin 'broken' failed to load: "
                       "ImportError: No module named 'broken_pkg'$"):  # fmt: skip
        dllm.build("reward", "broken_len")
    with pytest.raises(PluginError, match="broken_pkg.rewards.Len belongs to dllm plugin 'broken', which failed"):
        reg.check_plugin_of("broken_pkg.rewards.Len")
    from dllm.cli.main import list_components

    assert "plugin broken: BROKEN (ImportError: No module named 'broken_pkg')" in list_components(None)
    assert "good_short" in list_components("reward")


def test_a_plugin_whose_register_raises_leaves_nothing_registered(plugins):
    def half():
        dllm.REWARDS.register("half_short")(short)
        raise RuntimeError("no licence key")

    plugins(FakeEntryPoint("half", half))
    assert "half_short" not in dllm.REWARDS
    assert reg.PLUGIN_FAILURES == {"half": "RuntimeError: no licence key"}


@pytest.mark.parametrize(
    "kind, name, stand_in, error",
    [
        ("reward", "exact_match", "math", r"reward 'exact_match' is registered already \(by dllm.rewards.exact_match"),
        ("algorithm", "diffu_grpo", "rl", r"'diffu_grpo' is a preset dllm ships \(conf/algorithm/diffu_grpo.yaml\)"),
        ("estimator", "one_step", "trace", r"estimator 'one_step' is registered already"),  # a nested group's
    ],
)
def test_a_plugin_cannot_take_a_builtin_or_preset_name(plugins, kind, name, stand_in, error):
    """The squatter registers a valid component of the kind under a name dllm ships; it is
    refused (the plugin reported broken), and the good plugin after it still loads."""
    kind_registry = registry(kind)
    builtin = kind_registry._entries.get(name)
    plugins(
        FakeEntryPoint("squatter", lambda: kind_registry.register(name)(kind_registry._entries[stand_in])),
        FakeEntryPoint("good", lambda: dllm.REWARDS.register("ok")(short)),
    )
    assert "ok" in dllm.REWARDS and kind_registry._entries.get(name) is builtin
    assert list(reg.PLUGIN_FAILURES) == ["squatter"]
    assert reg.PLUGIN_FAILURES["squatter"].startswith("DuplicateNameError: ")
    assert re.search(error, reg.PLUGIN_FAILURES["squatter"]), reg.PLUGIN_FAILURES["squatter"]
    if name in kind_registry.presets():  # dllm.build still builds dllm's YAML, as dllm-train composes it
        assert dllm.build(kind, name).num_iterations == 12  # diffu_grpo.yaml's mu, not RL's default 1
