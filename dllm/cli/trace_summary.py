"""The summary of many rows of a rollout: per completion position, the step that revealed it
averaged over the rows, and how many rows are still scored there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dllm.cli.trace import block_edges


@dataclass
class PositionSummary:
    """Per completion position: `mean`, `low`, `high` of the step that revealed it over the rows,
    `scored` the share of rows whose position is scored (up to their first EOS); `edges` the block
    boundaries when every row shares them (else empty); `mean_reward` over the rows."""

    mean: list[float]
    low: list[int]
    high: list[int]
    scored: list[float]
    edges: set[int]
    mean_reward: float


def position_summary(record: dict[str, Any], rows: list[int]) -> PositionSummary:
    width = max(len(record["step_map"][row]) for row in rows)
    columns: list[list[int]] = [[] for _ in range(width)]
    scored = [0] * width
    for row in rows:
        flags = record["scored"][row] if "scored" in record else [True] * len(record["step_map"][row])
        for position, (step, flag) in enumerate(zip(record["step_map"][row], flags)):
            columns[position].append(step)
            scored[position] += bool(flag)
    edge_sets = [block_edges(record, row) for row in rows]
    shared_edges = edge_sets[0] if all(edges == edge_sets[0] for edges in edge_sets) else set()
    return PositionSummary(
        mean=[sum(c) / len(c) for c in columns],
        low=[min(c) for c in columns],
        high=[max(c) for c in columns],
        scored=[count / len(rows) for count in scored],
        edges=shared_edges,
        mean_reward=sum(record["rewards"][row] for row in rows) / len(rows),
    )
