"""The summary of many rows of a rollout: per completion position, the step that revealed it
averaged over the rows that revealed it, and how many rows revealed it and score it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dllm.cli.trace_record import block_edges, never_revealed


@dataclass
class PositionSummary:
    """Per completion position, over the rows that revealed it: `mean`, `low`, `high` of the step
    that did (None where no row did); over all rows: `revealed` the share that revealed it,
    `scored` the share that score it (up to their first EOS). `edges`: the block boundaries when
    every row shares them (else empty); `mean_reward` over the rows."""

    mean: list[float | None]
    low: list[int | None]
    high: list[int | None]
    revealed: list[float]
    scored: list[float]
    edges: set[int]
    mean_reward: float


def position_summary(record: dict[str, Any], rows: list[int]) -> PositionSummary:
    width = max(len(record["step_map"][row]) for row in rows)
    columns: list[list[int]] = [[] for _ in range(width)]
    scored = [0] * width
    for row in rows:
        tokens, steps = record["tokens"][row], record["step_map"][row]
        flags = record["scored"][row] if "scored" in record else [True] * len(steps)
        for position, (token, step, flag) in enumerate(zip(tokens, steps, flags)):
            if not never_revealed(record, token):
                columns[position].append(step)
            scored[position] += bool(flag)
    edge_sets = [block_edges(record, row) for row in rows]
    shared_edges = edge_sets[0] if all(edges == edge_sets[0] for edges in edge_sets) else set()
    return PositionSummary(
        mean=[sum(c) / len(c) if c else None for c in columns],
        low=[min(c, default=None) for c in columns],
        high=[max(c, default=None) for c in columns],
        revealed=[len(c) / len(rows) for c in columns],
        scored=[count / len(rows) for count in scored],
        edges=shared_edges,
        mean_reward=sum(record["rewards"][row] for row in rows) / len(rows),
    )
