"""Tasks: synthetic generators and file loaders with held-out splits."""

from dllm.data import addition, countdown, file, preference, sudoku  # noqa: F401  (registers the built-in tasks)
from dllm.data.base import TASKS, Example, Task, reward_fields

__all__ = ["TASKS", "Example", "Task", "reward_fields"]
