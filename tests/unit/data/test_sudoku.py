import random

import pytest

import dllm
from dllm.data.sudoku import SudokuTask, all_grids, is_solved, solutions
from dllm.errors import ConfigError
from dllm.rewards.sudoku import SudokuReward


def test_there_are_288_solved_grids_all_valid_and_distinct():
    grids = all_grids()
    assert len(grids) == len(set(grids)) == 288
    assert all(is_solved(g) for g in grids)
    assert is_solved("1234341221434321")
    assert not is_solved("1234341221434312")  # last row repeats nothing, but columns 3-4 do
    assert not is_solved("1234123412341234")  # rows fine, columns and boxes not


def test_solutions_counts_every_completion():
    assert solutions("1234341221434321") == ["1234341221434321"]
    assert len(solutions("." * 16)) == 288
    # Blanking a rectangle of two digits that can swap (1/2 in rows 1 and 3) leaves two completions.
    assert solutions("..343412..434321") == ["1234341221434321", "2134341212434321"]


def test_examples_have_a_unique_solution_and_match_their_fields():
    task = SudokuTask()
    for example in task.sample(random.Random(0), 300) + task.eval_examples():
        puzzle, solution = example.fields["puzzle"], example.fields["solution"]
        assert example.prompt == puzzle + ":" and example.response == solution
        assert len(puzzle) == 16 and 10 <= puzzle.count(".") <= 12
        assert solutions(puzzle) == [solution]
        assert all(p in (".", s) for p, s in zip(puzzle, solution))
        assert len(example.response) < task.gen_length


def test_the_response_scores_one_with_the_sudoku_reward():
    task, reward = SudokuTask(), SudokuReward()
    examples = task.sample(random.Random(1), 50)
    scores = reward(
        [e.prompt for e in examples],
        [e.response for e in examples],
        puzzle=[e.fields["puzzle"] for e in examples],
        solution=[e.fields["solution"] for e in examples],
    )
    assert scores == [1.0] * 50


def test_blank_counts_span_the_configured_range():
    task = SudokuTask(min_blanks=10, max_blanks=12)
    counts = {e.fields["puzzle"].count(".") for e in task.sample(random.Random(2), 200)}
    assert counts == {10, 11, 12}


def test_heldout_split_is_disjoint_and_fixed():
    task = SudokuTask(num_eval=50)
    evaluation = [e.fields["puzzle"] for e in task.eval_examples()]
    assert len(set(evaluation)) == 50 and all(task.is_heldout(p) for p in evaluation)
    assert evaluation == [e.fields["puzzle"] for e in SudokuTask(num_eval=50).eval_examples()]
    train = {e.fields["puzzle"] for e in task.sample(random.Random(0), 5000)}
    assert not train & set(evaluation)


def test_heldout_split_does_not_depend_on_the_process():
    # A fixed hash of the puzzle text (not Python's salted hash()): these stay held out forever.
    task = SudokuTask(heldout_percent=10)
    one_blank = [g[:i] + "." + g[i + 1 :] for g in all_grids()[:4] for i in range(16)]
    assert [p for p in one_blank if task.is_heldout(p)] == [
        "1234.41223414123",
        "1234.41241232341",
        "123434124.232341",
        "123434124.212143",
    ]


def test_heldout_fraction_matches_heldout_percent():
    task = SudokuTask(heldout_percent=25)
    puzzles = [g[:i] + "." + g[i + 1 :] for g in all_grids() for i in range(16)]
    assert sum(map(task.is_heldout, puzzles)) / len(puzzles) == pytest.approx(0.25, abs=0.02)


def test_registered_and_bad_settings_refused():
    assert isinstance(dllm.build("task", "sudoku"), SudokuTask)
    with pytest.raises(ConfigError, match="max_blanks"):
        SudokuTask(max_blanks=13)
    with pytest.raises(ConfigError, match="min_blanks"):
        SudokuTask(min_blanks=5, max_blanks=4)
    with pytest.raises(ConfigError, match="gen_length"):
        SudokuTask(gen_length=16)
    with pytest.raises(ConfigError, match="num_eval"):
        SudokuTask(num_eval=0)


def test_too_few_heldout_puzzles_fail_loudly_instead_of_looping():
    # One blank: 288 * 16 = 4608 puzzles, about 46 of them held out at 1%.
    with pytest.raises(ConfigError, match="num_eval"):
        SudokuTask(min_blanks=1, max_blanks=1, heldout_percent=1, num_eval=200).eval_examples()
