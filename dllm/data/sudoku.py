"""`sudoku`: complete a 4x4 sudoku, `"..13..2.3..14.32:"` -> `"2413132432414132"`.

Grids hold the digits 1-4; every row, column and 2x2 box holds each digit once. Solved grids
are drawn uniformly from all 288 of them (enumerated once); a puzzle blanks a number of
random cells drawn uniformly from `min_blanks`..`max_blanks` and is kept only when its
solution is unique (4x4 is small enough to count solutions against all 288 grids). The prompt is the puzzle row by
row with `.` for a blank, then `:`; the response is the solved grid, 16 digits. A puzzle
belongs to the held-out split by a fixed hash of its text.
"""

from __future__ import annotations

import random
from functools import cache, cached_property
from math import comb
from operator import itemgetter

from dllm.data.base import TASKS, Example, Task
from dllm.data.split import HeldoutSplit, is_heldout
from dllm.errors import ConfigError

SIZE = 4
CELLS = SIZE * SIZE
BLANK = "."
# 4x4 puzzles with a unique solution have at least 4 givens, so at most 12 blanks.
MAX_BLANKS = 12


@cache
def _units() -> tuple[tuple[int, ...], ...]:
    """The cells of each row, column and 2x2 box."""
    rows = [tuple(r * SIZE + c for c in range(SIZE)) for r in range(SIZE)]
    columns = [tuple(r * SIZE + c for r in range(SIZE)) for c in range(SIZE)]
    boxes = [tuple((br + r) * SIZE + bc + c for r in range(2) for c in range(2)) for br in (0, 2) for bc in (0, 2)]
    return tuple(rows + columns + boxes)


def is_solved(grid: str) -> bool:
    """Whether `grid` (16 characters, row by row) is a solved 4x4 sudoku."""
    return len(grid) == CELLS and all({grid[i] for i in unit} == set("1234") for unit in _units())


@cache
def all_grids() -> tuple[str, ...]:
    """Every solved 4x4 sudoku (288), as 16-digit strings row by row, in lexicographic order."""
    peers = [{j for unit in _units() if i in unit for j in unit} - {i} for i in range(CELLS)]
    grids: list[str] = []

    def fill(cells: list[str]) -> None:  # backtracking, cell by cell in reading order
        i = len(cells)
        if i == CELLS:
            grids.append("".join(cells))
            return
        for digit in "1234":
            if all(cells[j] != digit for j in peers[i] if j < i):
                fill([*cells, digit])

    fill([])
    return tuple(grids)


def _bits(text: str) -> tuple[int, int]:
    """(cells, values) bitmasks of a grid or puzzle: 4 bits per cell, one per digit; `cells`
    has all 4 bits of each filled cell, `values` the bit of its digit."""
    cells = values = 0
    for i, c in enumerate(text):
        if c != BLANK:
            cells |= 0b1111 << 4 * i
            values |= 1 << (4 * i + int(c) - 1)
    return cells, values


@cache
def _grid_bits() -> tuple[int, ...]:
    return tuple(_bits(grid)[1] for grid in all_grids())


def solutions(puzzle: str) -> list[str]:
    """Every solved grid that agrees with the givens of `puzzle` (`.` marks a blank)."""
    cells, values = _bits(puzzle)
    return [grid for grid, bits in zip(all_grids(), _grid_bits()) if bits & cells == values]


@TASKS.register("sudoku")
class SudokuTask(Task):
    """4x4 puzzles with `min_blanks`..`max_blanks` blanks and a unique solution.

    Prompt `"..13..2.3..14.32:"`, response `"2413132432414132"`; fields `puzzle` (16
    characters, `.` for a blank) and `solution` (16 digits).
    `heldout_percent` of all puzzles form the evaluation split, of which `num_eval` distinct
    ones are drawn with `eval_seed`.
    """

    def __init__(
        self,
        min_blanks: int = 10,
        max_blanks: int = 12,
        gen_length: int = 24,
        num_eval: int = 200,
        heldout_percent: int = 10,
        eval_seed: int = 1234,
    ) -> None:
        if not 1 <= min_blanks <= max_blanks <= MAX_BLANKS:
            raise ConfigError(
                f"task: need 1 <= min_blanks ({min_blanks}) <= max_blanks ({max_blanks}) <= {MAX_BLANKS} "
                "(a 4x4 puzzle with more blanks has several solutions)"
            )
        if gen_length < CELLS + 1:
            raise ConfigError(
                f"task.gen_length ({gen_length}) must hold the {CELLS}-digit grid and an EOS; "
                f"set task.gen_length >= {CELLS + 1}"
            )
        self.min_blanks = min_blanks
        self.max_blanks = max_blanks
        self.gen_length = gen_length
        self.num_eval = num_eval
        self.heldout_percent = heldout_percent
        self.eval_seed = eval_seed
        self.split = HeldoutSplit(
            pool_name=f"sudoku with {min_blanks}..{max_blanks} blanks",
            pool=len(all_grids()) * sum(comb(CELLS, blanks) for blanks in range(min_blanks, max_blanks + 1)),
            pool_is_bound=True,  # counts ambiguous puzzles too
            heldout_percent=heldout_percent,
            num_eval=num_eval,
            generate=self._puzzle,
            in_heldout=self._pair_is_heldout,
            key=itemgetter(0),  # the puzzle
            fix="allow more blanks or raise task.heldout_percent",
        )

    def is_heldout(self, puzzle: str) -> bool:
        return is_heldout(puzzle, self.heldout_percent)

    def _pair_is_heldout(self, pair: tuple[str, str]) -> bool:
        return self.is_heldout(pair[0])

    def _puzzle(self, rng: random.Random) -> tuple[str, str]:
        """A (puzzle, solution) pair with a unique solution; the blank count is uniform over
        `min_blanks`..`max_blanks` (drawn first, so that rejecting ambiguous puzzles, most of
        those with 11-12 blanks, does not make hard puzzles rare)."""
        count = rng.randint(self.min_blanks, self.max_blanks)
        while True:  # terminates: every grid has unique puzzles at every blank count <= 12 (5% at 12)
            solution = rng.choice(all_grids())
            blanks = set(rng.sample(range(CELLS), count))
            puzzle = "".join(BLANK if i in blanks else c for i, c in enumerate(solution))
            if len(solutions(puzzle)) == 1:
                return puzzle, solution

    def example(self, puzzle: str, solution: str) -> Example:
        return Example(prompt=f"{puzzle}:", response=solution, fields={"puzzle": puzzle, "solution": solution})

    def train_example(self, rng: random.Random) -> Example:
        return self.example(*self.split.draw(rng, heldout=False))

    @cached_property
    def _eval_puzzles(self) -> list[tuple[str, str]]:
        return self.split.eval_problems(self.eval_seed)

    def eval_examples(self) -> list[Example]:
        return [self.example(puzzle, solution) for puzzle, solution in self._eval_puzzles]
