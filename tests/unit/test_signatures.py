from typing import Literal

import pytest
from omegaconf import OmegaConf

from dllm.errors import ConfigError
from dllm.signatures import check_node, matches


@pytest.mark.parametrize(
    "value, annotation, ok",
    [
        (3, int, True),
        (True, int, False),
        (3, float, True),
        ("3", float, False),
        (None, int | None, True),
        ("a", Literal["a", "b"], True),
        ("c", Literal["a", "b"], False),
        ([1, 2], list[int], True),
        ([1, "x"], list[int], False),
        ({"a": 1}, dict, True),
        (1.5, bool, False),
    ],
)
def test_type_matching(value, annotation, ok):
    assert matches(value, annotation) is ok


def target(steps: int, name: str = "x") -> None: ...


def test_check_node_names_missing_and_unimportable_targets():
    with pytest.raises(ConfigError, match=r"node.steps is required: add node.steps=VALUE"):
        check_node("node", OmegaConf.create({"_target_": f"{__name__}.target"}))
    with pytest.raises(ConfigError, match=r"node.steps is required: set it on the command line"):
        check_node("node", OmegaConf.create({"_target_": f"{__name__}.target", "steps": "???"}))
    with pytest.raises(ConfigError, match=r"node._target_ 'nowhere.thing' cannot be imported"):
        check_node("node", OmegaConf.create({"_target_": "nowhere.thing"}))
    with pytest.raises(ConfigError, match=r"must be a mapping with a _target_"):
        check_node("node", OmegaConf.create({"steps": 3}))


@pytest.mark.parametrize("kind", ["advantage", "objective", "estimator"])
def test_a_component_given_as_a_plain_value_names_its_config_group(kind):
    """`algorithm.advantage=value` (the key syntax) where a component belongs: refused before any
    model is built, naming the group syntax that chooses it."""
    from dllm.config import compose
    from dllm.run import plan

    with pytest.raises(ConfigError, match=rf"algorithm.{kind}='x': {kind} is a component.*: algorithm/{kind}=x$"):
        plan(compose(["algorithm=rl", f"algorithm.{kind}=x"]))
