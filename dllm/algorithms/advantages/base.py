"""The advantage interface and its registry.

An advantage reads a scored rollout (rows in contiguous groups of `group_size` completions of
one prompt) and sets `rollout.advantages`: [N] per sequence, or [N, G] per token. One that
trains a model of its own (the `value` advantage's critic) also adds loss parts to each
micro-batch, steps its optimizer after each policy step and keeps its state in checkpoints,
through the hooks below; the loop knows no advantage by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError
from dllm.registry import Registry

if TYPE_CHECKING:
    from dllm.algorithms.base import TrainContext
    from dllm.algorithms.estimators.base import Estimator


class Advantage(ABC):
    # The objective whose loss weights this gives (`wd1`) rather than advantages any objective
    # may maximise; objectives refuse what they cannot use (`Objective.check_advantage`).
    weights_for: ClassVar[str | None] = None
    # Whether this advantage reads a tree rollout's structure (`tree`): the loop then refuses,
    # when built, a run without `tree_branches`.
    needs_branches: ClassVar[bool] = False
    # Whether this advantage replays the decoding trajectory from `step_map` (the `value` critic's
    # states): the loop then refuses a sampler that masks revealed tokens again (`Sampler.remasks`).
    replays_trajectory: ClassVar[bool] = False

    def check(self, group_size: int) -> None:
        """Refuse, when the algorithm is built, a group size this advantage cannot work with."""

    def start(self, ctx: TrainContext, estimator: Estimator) -> None:
        """Before the stage's first rollout (e.g. build a value model from the policy)."""

    @abstractmethod
    def compute(self, rollout: Rollout, group_size: int, ctx: TrainContext) -> None:
        """Set `rollout.advantages` (and whatever else this advantage's losses read) from its rewards."""

    def extra_losses(
        self, rollout: Rollout, weights: Tensor, autocast: Callable[[], AbstractContextManager], tally: Tally
    ) -> Iterator[Tensor]:
        """Loss parts of this advantage's own models on a micro-batch, beside the policy's,
        weighted per token by `weights` [N, G] (see `dllm.algorithms.tally.weighted_parts`)."""
        return iter(())

    def after_step(self, ctx: TrainContext) -> dict[str, float]:
        """After each optimizer step of the policy (e.g. step a value model); metrics to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; called after `start`."""

    def save_models(self, directory: Path) -> None:
        """Write this advantage's models into a checkpoint directory."""

    def load_models(self, directory: Path) -> None:
        """Load what `save_models` wrote; called after `start`."""


ADVANTAGES = Registry("advantage", interface=Advantage, config_group="algorithm/advantage")


class GroupRelative(Advantage):
    """An advantage of each completion relative to the other completions of its prompt, from
    the rewards alone: `of_groups` maps [groups, group_size] rewards to advantages."""

    def check(self, group_size: int) -> None:
        if group_size < 2:
            name = ADVANTAGES.name_of(self) or type(self).__name__
            raise ConfigError(
                f"algorithm/advantage={name} normalises within groups of completions of one prompt, but group_size "
                f"is {group_size}: set algorithm.group_size >= 2 (or algorithm/advantage=value)"
            )

    def compute(self, rollout: Rollout, group_size: int, ctx: TrainContext) -> None:
        rollout.advantages = self.of_groups(grouped(rollout.rewards.float(), group_size)).flatten()

    @abstractmethod
    def of_groups(self, rewards: Tensor) -> Tensor:
        """[groups, group_size] advantages of [groups, group_size] rewards."""


def grouped(values: Tensor, group_size: int) -> Tensor:
    """[N] values as [N / group_size, group_size] groups."""
    if values.numel() % group_size:
        raise ValueError(f"{values.numel()} values do not form groups of {group_size}")
    return values.view(-1, group_size)
