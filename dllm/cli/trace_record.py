"""A rollout saved for `dllm-trace` (`dllm.algorithms.rollout.save_rollout`), and what every
view of it reads: each row's cells (tokens, runs of one special token), block edges, the
positions never revealed, the last step."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dllm.errors import DllmError

REQUIRED = ("prompts", "tokens", "step_map", "rewards")
SPECIAL = re.compile(r"<\|?/?([^<>|]+)\|?>")  # <|eos|>, <pad>, </s>


def load_trace(path: Path) -> dict[str, Any]:
    """A saved rollout, checked to hold what a trace needs."""
    if not path.is_file():
        raise DllmError(f"{str(path)!r} is not a file; give a rollout saved by an RL run (RUN/checkpoint/rollout.pt)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DllmError(f"{str(path)!r} is not a saved rollout ({type(exc).__name__}: {exc})") from None
    missing = [key for key in REQUIRED if not isinstance(record, dict) or key not in record]
    if missing:
        raise DllmError(f"{str(path)!r} lacks {', '.join(missing)}: save it with dllm.algorithms.rollout.save_rollout")
    return record


def token_label(token: str) -> str:
    """What a cell shows for a token: `EOS` for `<|eos|>`, ␣ for a space, ⏎ for a newline."""
    special = SPECIAL.fullmatch(token)
    if special:
        return special.group(1).upper()
    if not token.strip():
        return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"
    return token


def never_revealed(record: dict[str, Any], token: str) -> bool:
    """True for a position still reading the mask (the sampler stopped before revealing it):
    the record's `mask_token`, or for older records a special token named like *mask*."""
    if "mask_token" in record:
        return token == record["mask_token"]
    special = SPECIAL.fullmatch(token)
    return special is not None and "mask" in special.group(1).lower()


@dataclass
class Segment:
    """Completion positions [start, end) shown as one cell: one token, or a run of one special token."""

    start: int
    end: int
    label: str
    steps: list[int]
    scored: bool
    block_starts: bool  # a block boundary lies before `start`
    revealed: bool = True  # False: still the mask, its step a placeholder

    @property
    def text(self) -> str:
        return self.label if self.end - self.start == 1 else f"{self.label} ×{self.end - self.start}"

    @property
    def step_text(self) -> str:
        if not self.revealed:
            return "—"
        low, high = min(self.steps), max(self.steps)
        return str(low) if low == high else f"{low}–{high}"


def block_edges(record: dict[str, Any], row: int) -> set[int]:
    """Completion positions (after the first) where a block begins; blocks count from the row's
    first prompt token, so its prompt's tail fills the first one's start."""
    block = record.get("block_size")
    if not block:
        return set()
    phase = record["prompt_phases"][row] if "prompt_phases" in record else 0
    return {position for position in range(1, len(record["tokens"][row])) if (position + phase) % block == 0}


def segments(record: dict[str, Any], row: int) -> list[Segment]:
    """Row `row`'s completion as cells: each token alone, except that a run of one special token
    (EOS, pad, mask) with the same scoring is one cell — split at block boundaries, so each
    boundary stays visible."""
    tokens, steps = record["tokens"][row], record["step_map"][row]
    scored = record["scored"][row] if "scored" in record else [True] * len(steps)
    edges = block_edges(record, row)
    cells: list[Segment] = []
    for position, (token, step) in enumerate(zip(tokens, steps)):
        last = cells[-1] if cells else None
        if (
            last is not None
            and SPECIAL.fullmatch(token)
            and tokens[last.start] == token
            and last.scored == bool(scored[position])
            and position not in edges
        ):
            last.end, last.steps = position + 1, last.steps + [step]
            continue
        label, flag, edge = token_label(token), bool(scored[position]), position in edges
        cells.append(Segment(position, position + 1, label, [step], flag, edge, not never_revealed(record, token)))
    return cells


def last_step(record: dict[str, Any], rows: list[int]) -> int:
    """The latest step that revealed a token of `rows`: one colour scale for all of them."""
    steps = [
        step
        for row in rows
        for token, step in zip(record["tokens"][row], record["step_map"][row])
        if not never_revealed(record, token)
    ]
    return max(steps, default=0)
