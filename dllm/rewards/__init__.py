"""Rewards: batched callables `reward(prompts, completions, **fields) -> list[float]`."""

from dllm.rewards import (  # noqa: F401  (registers the built-in rewards)
    boxed_format,
    code,
    countdown,
    countdown_steps,
    exact_match,
    format_tags,
    gsm8k,
    judge,
    math,
    sudoku,
    weighted_sum,
)
from dllm.rewards.base import REWARDS, Reward, RewardError, RewardScores, score_batch

__all__ = ["REWARDS", "Reward", "RewardError", "RewardScores", "score_batch"]
