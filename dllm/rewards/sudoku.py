"""`sudoku`: the fraction of the puzzle's blank cells the completion fills correctly (d1).

Reading a completion: its decimal digits `0-9`, in order, are the grid row by row; every
other character (spaces, newlines, `|` or `/` between rows, letters) is dropped, so
`"2413 1324 ..."` reads like `"24131324..."`. The first 16 digits are the cells; a
completion with fewer digits has its missing cells wrong; digits past the 16th are ignored.
Given cells are not scored (copying them earns nothing, changing them costs nothing), as in
d1. A puzzle with no blank cell scores 1.0 for a fully correct grid, else 0.0.

`step_level=True` returns the same credit as step-level values: 1 / blanks on the token of
each correct blank cell, so that a value model (`algorithm=tracerl_value`) credits the
decoding step that filled it; their sum is the fraction above.
"""

from __future__ import annotations

import bisect
from typing import Any

from dllm.rewards.base import REWARDS, Reward, RewardError, require_field

CELLS = 16
# `.` is this project's blank; d1's sudoku data writes `0`.
BLANK_MARKERS = frozenset(".0")
_DIGITS = frozenset("0123456789")


def read_grid(completion: str) -> str:
    """The first 16 decimal digits of `completion`, other characters dropped (may be shorter)."""
    return "".join(c for c in completion if c in _DIGITS)[:CELLS]


def correct_blank_cells(completion: str, puzzle: str, solution: str) -> tuple[list[int], int]:
    """(character offsets in `completion` of the correctly filled blank cells, number of blanks)."""
    if len(puzzle) != CELLS or len(solution) != CELLS:
        raise RewardError(
            f"reward 'sudoku': the fields puzzle and solution must have {CELLS} cells each, "
            f"got {puzzle!r} and {solution!r}"
        )
    offsets = [i for i, c in enumerate(completion) if c in _DIGITS][:CELLS]
    blanks = [i for i, c in enumerate(puzzle) if c in BLANK_MARKERS]
    right = [offsets[i] for i in blanks if i < len(offsets) and completion[offsets[i]] == solution[i]]
    return right, len(blanks)


def blank_cells_correct(completion: str, puzzle: str, solution: str) -> float:
    """The fraction of `puzzle`'s blank cells whose digit in `completion` equals `solution`'s."""
    if len(puzzle) != CELLS or len(solution) != CELLS:
        raise RewardError(
            f"reward 'sudoku': the fields puzzle and solution must have {CELLS} cells each, "
            f"got {puzzle!r} and {solution!r}"
        )
    grid = read_grid(completion)
    blanks = [i for i, c in enumerate(puzzle) if c in BLANK_MARKERS]
    if not blanks:
        return float(grid == solution)
    # A short grid's missing cells count as wrong.
    return sum(1 for i in blanks if i < len(grid) and grid[i] == solution[i]) / len(blanks)


@REWARDS.register("sudoku")
class SudokuReward(Reward):
    """d1's sudoku reward. Fields: `puzzle` (16 characters, `.` or `0` for a blank) and
    `solution` (16 digits), one per completion; `token_offsets` for `step_level`."""

    def __init__(self, step_level: bool = False) -> None:
        self.step_level = step_level

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[Any]:
        puzzles = require_field("puzzle", fields, "sudoku", len(completions))
        answers = require_field("solution", fields, "sudoku", len(completions))
        if not self.step_level:
            return [blank_cells_correct(c, p, s) for c, p, s in zip(completions, puzzles, answers)]
        offsets = fields.get("token_offsets") or [list(range(len(c))) for c in completions]
        values = []
        for completion, puzzle, solution, starts in zip(completions, puzzles, answers, offsets):
            right, blanks = correct_blank_cells(completion, puzzle, solution)
            if not blanks:
                values.append([(len(starts) - 1, blank_cells_correct(completion, puzzle, solution))] if starts else [])
                continue
            values.append([(bisect.bisect_right(starts, offset) - 1, 1 / blanks) for offset in right])
        return values
