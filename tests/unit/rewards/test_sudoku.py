import pytest

import dllm
from dllm.rewards.base import RewardError
from dllm.rewards.sudoku import SudokuReward, blank_cells_correct, read_grid

SOLUTION = "2413132432414132"
PUZZLE = "..13..2.3..14.32"  # blanks at cells 0, 1, 4, 5, 7, 9, 10, 13: 8 blanks
# Puzzle with 4 blanks (cells 0, 5, 10, 15) for the hand-computed cases below.
FOUR_BLANKS = ".4131.2432.1413."


def test_the_solution_scores_one():
    assert blank_cells_correct(SOLUTION, PUZZLE, SOLUTION) == 1.0
    assert blank_cells_correct(SOLUTION, FOUR_BLANKS, SOLUTION) == 1.0


def test_three_of_four_blanks_right_scores_three_quarters():
    wrong_last = SOLUTION[:15] + "1"  # cell 15 should be 2
    assert blank_cells_correct(wrong_last, FOUR_BLANKS, SOLUTION) == 0.75


def test_given_cells_are_not_scored():
    changed_givens = "2" + "1111" + "3" + "1111" + "4" + "1111" + "2"  # blanks right, givens overwritten
    assert blank_cells_correct(changed_givens, FOUR_BLANKS, SOLUTION) == 1.0
    assert blank_cells_correct(FOUR_BLANKS.replace(".", "9"), FOUR_BLANKS, SOLUTION) == 0.0


def test_a_short_completion_counts_missing_cells_wrong():
    # 6 digits: cell 0 (blank, right) and cell 5 (blank, right) present; cells 10 and 15 missing
    assert blank_cells_correct(SOLUTION[:6], FOUR_BLANKS, SOLUTION) == 0.5
    assert blank_cells_correct("", FOUR_BLANKS, SOLUTION) == 0.0


def test_non_digits_are_dropped_and_extra_digits_ignored():
    assert read_grid("2413|1324\n3241 4132") == SOLUTION
    assert read_grid("ab24x13") == "2413"
    assert read_grid(SOLUTION + "9999") == SOLUTION
    assert blank_cells_correct("2413 1324/3241-4132", PUZZLE, SOLUTION) == 1.0
    # A non-digit is dropped, not read as a wrong cell: every later digit moves one cell left.
    assert blank_cells_correct("." + SOLUTION[1:], FOUR_BLANKS, SOLUTION) == 0.0


def test_zero_marks_a_blank_as_in_d1_data():
    assert blank_cells_correct(SOLUTION[:15] + "1", FOUR_BLANKS.replace(".", "0"), SOLUTION) == 0.75


def test_a_puzzle_without_blanks_needs_the_whole_grid():
    assert blank_cells_correct(SOLUTION, SOLUTION, SOLUTION) == 1.0
    assert blank_cells_correct(SOLUTION[:15] + "1", SOLUTION, SOLUTION) == 0.0


def test_malformed_fields_are_refused():
    with pytest.raises(RewardError, match="16 cells"):
        blank_cells_correct(SOLUTION, PUZZLE[:15], SOLUTION)


def test_batched_call():
    reward = dllm.build("reward", "sudoku")
    assert isinstance(reward, SudokuReward)
    scores = reward(
        [PUZZLE + ":", FOUR_BLANKS + ":"],
        [SOLUTION, SOLUTION[:15] + "1"],
        puzzle=[PUZZLE, FOUR_BLANKS],
        solution=[SOLUTION, SOLUTION],
    )
    assert scores == [1.0, 0.75]
    with pytest.raises(KeyError, match="solution"):
        reward(["p"], [SOLUTION], puzzle=[PUZZLE])


def test_step_level_credit_lands_on_the_correct_cells_tokens():
    reward = dllm.build("reward", "sudoku", step_level=True)
    # blanks at cells 0 and 2; the completion gets cell 0 right, cell 2 wrong; cell 1 is given
    puzzle, solution = "." + "4" + "." + "3" * 13, "2413" + "3" * 12
    values = reward(["p"], ["2 4 2" + "3" * 13], puzzle=[puzzle], solution=[solution], token_offsets=[list(range(18))])
    assert values == [[(0, 0.5)]]  # one of two blanks, at character (and token) 0
    assert dllm.build("reward", "sudoku")(["p"], ["2 4 2" + "3" * 13], puzzle=[puzzle], solution=[solution]) == [0.5]
