"""Rewards: batched callables `reward(prompts, completions, **fields) -> list[float]`."""

from dllm.rewards import exact_match  # noqa: F401  (registers the built-in rewards)
from dllm.rewards.base import REWARDS, Reward

__all__ = ["REWARDS", "Reward"]
