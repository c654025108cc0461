"""Checking a component's config node against its target's signature, before anything is built
(as torchtune validates each config node): unknown keys (with the closest known one), missing
required values, and value types against the constructor's annotations, nested components
included. Each error names the key and the fix.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from dllm.errors import ConfigError, did_you_mean
from dllm.registry import REGISTRIES, check_plugin_of


def check_node(path: str, node: Any) -> None:
    """Check a `_target_` node's keys and value types against the target's signature."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"{path} must be a mapping with a _target_, got {OmegaConf.to_yaml(node)!r}")
    for key in node:
        if OmegaConf.is_missing(node, key):
            raise ConfigError(f"{path}.{key} is required: set it on the command line, e.g. {path}.{key}=VALUE")
    target_path = node._target_
    check_plugin_of(target_path)
    try:
        target = get_object(target_path)
    except Exception as exc:
        raise ConfigError(f"{path}._target_ {target_path!r} cannot be imported: {exc}") from None
    values = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")}
    if hasattr(target, "check_config"):
        target.check_config(values)
    signature = inspect.signature(target)
    parameters = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    hints = _type_hints(target)
    for key, value in values.items():
        if key not in parameters:
            if takes_any:
                continue
            raise ConfigError(
                f"unknown key {path}.{key}{did_you_mean(key, parameters)} "
                f"({path} takes: {', '.join(parameters) or 'no options'})"
            )
        expected = hints.get(key)
        if expected is not None and not matches(value, expected):
            if isinstance(value, str) and takes_component(expected):
                raise ConfigError(
                    f"{path}.{key}={value!r}: {key} is a component, chosen from its config group: "
                    f"{path.replace('.', '/')}/{key}={value}"
                )
            raise ConfigError(f"{path}.{key}={value!r} has the wrong type: expected {describe(expected)}")
    for key, value in node.items():
        if isinstance(value, DictConfig) and "_target_" in value:
            check_node(f"{path}.{key}", value)  # a nested component (e.g. algorithm.estimator)
    if node.get("_partial_", False):
        return  # the caller passes the rest (a function reward gets prompts and completions)
    for name, parameter in parameters.items():
        required = parameter.default is inspect.Parameter.empty
        if required and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) and name not in values:
            raise ConfigError(f"{path}.{name} is required: add {path}.{name}=VALUE")


def _type_hints(target: Any) -> dict[str, Any]:
    function = target.__init__ if isinstance(target, type) else target
    try:
        return typing.get_type_hints(function)
    except Exception:
        return {}


def matches(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arm) for arm in typing.get_args(expected))
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or expected in (list, tuple):
        items = typing.get_args(expected)
        if not isinstance(value, (list, tuple, ListConfig)):
            return False
        return not items or items[-1] is Ellipsis or all(matches(v, items[0]) for v in value)
    if origin in (dict, Mapping) or expected is dict:
        return isinstance(value, (dict, DictConfig))
    if takes_component(expected):
        return not isinstance(value, (str, int, float, bool))  # a plain value where a component belongs
    return True  # richer annotations are left to the component's own checks


def takes_component(expected: Any) -> bool:
    """Whether `expected` is (or unions) the interface of a registered kind (an advantage, an estimator...)."""
    arms = typing.get_args(expected) if typing.get_origin(expected) in (typing.Union, types.UnionType) else (expected,)
    interfaces = [kind.interface for kind in REGISTRIES.values() if kind.interface is not None]
    return any(isinstance(arm, type) and issubclass(arm, tuple(interfaces)) for arm in arms)


def describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(expected))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(expected))
    return getattr(expected, "__name__", str(expected)).replace("NoneType", "null")
