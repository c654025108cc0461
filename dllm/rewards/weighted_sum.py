"""`weighted_sum`: a weighted sum of registered rewards, each term scored (and logged) on its own.

    dllm-train reward=weighted_sum reward.terms='{math: 1.0, format_tags: 0.1}'
    dllm-train reward=weighted_sum reward.terms=[math,boxed_format]        # weight 1 each
    dllm-train reward=weighted_sum reward.terms='{math: {weight: 1.0, timeout_s: 10}, format_tags: 0.1}'
    dllm-train reward=weighted_sum reward.terms='{math: 1, think: {reward: format_tags, tags: [think], weight: 0.2}}'

`terms` maps a term name to its weight, or to `{weight: W, reward: KEY, OPTION: VALUE, ...}`
where `reward` (default: the term's name) is the registry key and the other keys are that
reward's options (its defaults otherwise); a list of names, or one name, weighs each 1.
Weights may be negative (penalties). With `zero_truncated`, a completion whose `truncated`
field is True scores 0 in every term: a response cut at the length cap counts as wrong.

Hydra's own multi-select (`reward=[math,format_tags]`) merges both configs into one node,
so it cannot express this; the run plan (`dllm.run.plan`) refuses it and names this form instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dllm.errors import ConfigError, did_you_mean
from dllm.rewards.base import REWARDS, Reward, Term, combine_terms, reward_name

NAME = "weighted_sum"
EXAMPLE = "reward.terms='{math: 1.0, format_tags: 0.1}'"


@dataclass(frozen=True)
class TermSpec:
    """One term: `name` (its key in `terms`, the name it is logged under), the registry key
    of its `reward`, its `weight`, and the `options` its reward is built with."""

    name: str
    reward: str
    weight: float
    options: dict[str, Any] = field(default_factory=dict)


def parse_terms(terms: Any) -> list[TermSpec]:
    """The terms `terms` describes, checked: known rewards, numeric weights, no nesting."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(terms, (DictConfig, ListConfig)):
        terms = OmegaConf.to_container(terms, resolve=True)
    if isinstance(terms, str):
        terms = {terms: 1.0}
    elif isinstance(terms, Sequence):
        names = [str(name) for name in terms]
        if len(set(names)) != len(names):
            raise ConfigError(f"reward.terms={names} names a reward twice; give each term its own name: {EXAMPLE}")
        terms = dict.fromkeys(names, 1.0)
    if not isinstance(terms, Mapping) or not terms:
        raise ConfigError(f"reward.terms={terms!r} names no reward: map reward names to weights, e.g. {EXAMPLE}")
    specs = [_parse_term(str(name), spec) for name, spec in terms.items()]
    known = [key for key in REWARDS.names() if key != NAME]
    for spec in specs:
        if spec.reward == NAME:
            raise ConfigError(f"reward.terms.{spec.name}: a {NAME} cannot be a term of another; list its terms here")
        if spec.reward not in known:
            raise ConfigError(
                f"reward.terms.{spec.name}: unknown reward {spec.reward!r}{did_you_mean(spec.reward, known)} "
                f"(known: {', '.join(known)})"
            )
    return specs


def _parse_term(name: str, spec: Any) -> TermSpec:
    path = f"reward.terms.{name}"
    if isinstance(spec, Mapping):
        options = dict(spec)
        weight, key = options.pop("weight", 1.0), options.pop("reward", name)
        if not isinstance(key, str):
            raise ConfigError(f"{path}.reward={key!r} must be the name of a registered reward")
    else:
        weight, key, options = spec, name, {}
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ConfigError(
            f"{path}={spec!r}: the weight must be a finite number; write {path}=0.5 "
            f"or {path}={{weight: 0.5, OPTION: VALUE}}"
        )
    return TermSpec(name, key, float(weight), options)


def check_term_options(spec: TermSpec) -> None:
    """Check a term's options against its reward's signature (unknown keys, types, missing
    values), as `dllm.signatures.check_node` checks a component node, with the path `reward.terms.NAME`."""
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    from dllm.signatures import check_node

    factory = REWARDS.get(spec.reward)
    target = f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', '')}"
    try:
        importable = get_object(target) is factory
    except Exception:
        importable = False
    if importable:  # else (an instance, a factory made at run time) building it is the only check
        partial = not isinstance(factory, type)  # a function reward: its options are bound, not called
        node = {"_target_": target, **({"_partial_": True} if partial else {}), **spec.options}
        check_node(f"reward.terms.{spec.name}", OmegaConf.create(node))


@REWARDS.register(NAME)
class WeightedSum(Reward):
    def __init__(
        self, terms: str | Sequence[str] | Mapping[str, Any] = "exact_match", zero_truncated: bool = True
    ) -> None:
        self.specs = parse_terms(terms)
        self.zero_truncated = zero_truncated
        self.rewards: dict[str, Any] = {}
        for spec in self.specs:
            check_term_options(spec)
            try:
                self.rewards[spec.name] = REWARDS.build(spec.reward, **spec.options)
            except ConfigError as exc:  # its message names `reward.KEY`: point at this term's key instead
                message = str(exc)
                prefix = f"reward.terms.{spec.name}"
                message = prefix + message[len("reward") :] if message.startswith("reward.") else f"{prefix}: {message}"
                raise ConfigError(message) from None

    @staticmethod
    def check_config(values: dict[str, Any]) -> None:
        """Refuse unknown rewards and bad weights or options of any term, before anything is built."""
        for spec in parse_terms(values.get("terms", "exact_match")):
            check_term_options(spec)

    def weighted_terms(self) -> list[Term]:
        return [(spec.name, spec.weight, self.rewards[spec.name]) for spec in self.specs]

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        """`sum(weight * term(...))` per completion; 0 for truncated ones with `zero_truncated`."""
        return combine_terms(self, prompts, completions, fields).total

    def __repr__(self) -> str:
        terms = ", ".join(f"{s.name}={s.weight:g}*{reward_name(self.rewards[s.name])}" for s in self.specs)
        return f"WeightedSum({terms}, zero_truncated={self.zero_truncated})"
