"""`ebpo` (EBPO, Han et al., arXiv 2602.05165): GRPO's group baseline shrunk toward a global prior.

GRPO's baseline is the mean of a prompt's G rewards: noisy for small G, and a group whose rewards
are all equal (all wrong: the "saturated failure") gets no signal. EBPO shrinks each group mean
toward the mean of every reward seen so far, mu_glob, kept online (Welford's algorithm):

    V_q = (1 - S) mean_q + S mu_glob,    S = (sigma2 / G) / (sigma2 / G + tau2)
    A_i = (r_i - V_q) / sigma_glob

sigma2 is the within-group variance (the running mean of the groups' sample variances: the noise
of a group mean is sigma2 / G), tau2 the between-group variance (the variance of every reward seen,
sigma_glob^2, less sigma2, floored at 0). An all-wrong group then gets -S mu_glob / sigma_glob,
below 0 once any reward was positive. With `scale: none` the advantage is r_i - V_q.

The statistics take the current rollout's rewards before its advantages are computed (the prior of
the first rollout is that rollout's own batch), from every process (all-gathered), so all processes
hold the same prior; they are kept in the checkpoint (`state_dict`), so a resumed run continues
with it. Only the groups the filters keep reach the advantage, and so the statistics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from dllm.algorithms.advantages.base import ADVANTAGES, GroupRelative, grouped
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError

if TYPE_CHECKING:
    from dllm.algorithms.base import TrainContext

SCALES = ("global", "none")


@dataclass
class Running:
    """Count, mean and sum of squared deviations of every value added (Welford's algorithm; a
    batch merged at once by Chan et al.'s update, equal to adding its values one by one)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: Tensor) -> None:
        if values.numel() == 0:
            return
        values = values.double()
        count, mean = values.numel(), float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta**2 * self.count * count / total
        self.count = total

    @property
    def variance(self) -> float:
        """The sample variance (n - 1); 0 before two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0


@ADVANTAGES.register("ebpo")
class EBPOAdvantage(GroupRelative):
    def __init__(self, scale: str = "global") -> None:
        if scale not in SCALES:
            raise ConfigError(
                f"algorithm.advantage.scale={scale!r}: choose global (divide by the std of every reward seen) "
                "or none (no division)"
            )
        self.scale = scale
        self.rewards = Running()  # every reward seen: mu_glob and the total variance
        self.within = Running()  # each group's sample variance: their mean is the within-group variance

    def compute(self, rollout: Rollout, group_size: int, ctx: TrainContext) -> None:
        everyone = ctx.collective.cat(rollout.rewards.float())  # every process's rows: one prior for all
        self.rewards.add(everyone)
        self.within.add(grouped(everyone, group_size).var(1, unbiased=True))
        super().compute(rollout, group_size, ctx)

    def shrinkage(self, group_size: int) -> float:
        """S: the share of the baseline taken from the global mean."""
        noise = self.within.mean / group_size  # variance of a group mean around its prompt's true mean
        between = max(self.rewards.variance - self.within.mean, 0.0)
        return noise / (noise + between) if noise + between > 0 else 0.0  # nothing varied yet: no prior to use

    def of_groups(self, rewards: Tensor) -> Tensor:
        shrink = self.shrinkage(rewards.shape[1])
        baseline = (1 - shrink) * rewards.mean(1, keepdim=True) + shrink * self.rewards.mean
        advantages = rewards - baseline
        std = math.sqrt(self.rewards.variance)
        return advantages / std if self.scale == "global" and std > 0 else advantages

    def state_dict(self) -> dict[str, Any]:
        return {"rewards": asdict(self.rewards), "within": asdict(self.within)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "rewards" in state:  # a checkpoint without the prior (another advantage's) leaves it empty
            self.rewards, self.within = Running(**state["rewards"]), Running(**state["within"])
