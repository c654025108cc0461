"""The plugin's entry point: register the components explicitly, once."""

from __future__ import annotations


def register() -> None:
    import dllm
    from acme_dllm.left_to_right import LeftToRightSampler
    from acme_dllm.length_reward import LengthReward
    from acme_dllm.no_digits import no_digits
    from acme_dllm.rank_advantage import RankAdvantage
    from dllm.algorithms.advantages import ADVANTAGES

    dllm.REWARDS.register("acme_len")(LengthReward)  # a class with __call__: built with its options
    dllm.REWARDS.register("acme_no_digits")(no_digits)  # a function: the reward itself
    dllm.SAMPLERS.register("acme_left_to_right")(LeftToRightSampler)
    # an RL part: objectives, filters and estimators register the same way (OBJECTIVES, FILTERS, ESTIMATORS)
    ADVANTAGES.register("acme_rank")(RankAdvantage)
