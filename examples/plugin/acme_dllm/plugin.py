"""The plugin's entry point: register the components explicitly, once."""

from __future__ import annotations


def register() -> None:
    import dllm
    from acme_dllm.left_to_right import LeftToRightSampler
    from acme_dllm.length_reward import LengthReward

    dllm.REWARDS.register("acme_len")(LengthReward)
    dllm.SAMPLERS.register("acme_left_to_right")(LeftToRightSampler)
