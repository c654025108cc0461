"""The code-reward corpora (tests/fixtures/code_corpus/): loading them and scoring their records,
shared by the honest-corpus test and benchmarks/code_reward_corpus.py."""

from __future__ import annotations

import json
from pathlib import Path

from dllm.rewards.code import CodeReward

CORPUS_DIR = Path(__file__).parents[2] / "fixtures" / "code_corpus"


def load(name: str) -> list[dict]:
    """The records of `<name>.json` (honest or hostile), or [] where that corpus is not there."""
    path = CORPUS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else []


def score_records(reward: CodeReward, records: list[dict]) -> list[float]:
    """Each record's score, all in one reward call, its program given as a model writes it."""
    completions = ["```python\n" + r["program"] + "\n```" for r in records]
    return reward(["prompt"] * len(records), completions, tests=[r["tests"] for r in records])
