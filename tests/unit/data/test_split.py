"""The guarded held-out split every synthetic task draws from: impossible splits are refused
with the numbers when the task is built, and every draw is bounded (nothing loops)."""

import random

import pytest

from dllm.data import split
from dllm.data.addition import AdditionTask
from dllm.data.countdown import CountdownTask
from dllm.data.split import HeldoutSplit
from dllm.data.sudoku import SudokuTask, all_grids
from dllm.errors import ConfigError


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: AdditionTask(min_digits=1, max_digits=1),  # hung in eval_examples() before
            "addition with 1-digit operands has 100 distinct problems, 10% held out (about 10): num_eval=200",
        ),
        (
            lambda: AdditionTask(min_digits=1, max_digits=2, num_eval=1001),
            "addition with 1- to 2-digit operands has 10000 distinct problems, 10% held out (about 1000)",
        ),
        (
            lambda: CountdownTask(num_numbers=2, min_number=1, max_number=1),
            "countdown with 2 numbers in 1..1 and operators '+-*/' has at most 4 distinct problems",
        ),
        (
            lambda: CountdownTask(num_numbers=2, min_number=1, max_number=3, operators="+", num_eval=4),
            "has at most 36 distinct problems, 10% held out (about 3): num_eval=4",
        ),
        (
            lambda: SudokuTask(min_blanks=1, max_blanks=1, heldout_percent=1),
            "sudoku with 1..1 blanks has at most 4608 distinct problems, 1% held out (about 46): num_eval=200",
        ),
    ],
)
def test_impossible_splits_are_refused_at_construction_with_the_numbers(build, message):
    with pytest.raises(ConfigError, match="lower task.num_eval") as refusal:
        build()
    assert message in str(refusal.value)


def test_addition_one_digit_pool_yields_its_distinct_heldout_pairs():
    task = AdditionTask(min_digits=1, max_digits=1, num_eval=10)  # 12 of the 100 pairs are held out
    pairs = [tuple(map(int, e.prompt[:-1].split("+"))) for e in task.eval_examples()]
    assert len(set(pairs)) == 10 and all(task.is_heldout(a, b) for a, b in pairs)
    assert sum(task.is_heldout(a, b) for a in range(10) for b in range(10)) == 12


def test_a_pool_smaller_than_its_bound_fails_loudly_in_bounded_draws(monkeypatch):
    monkeypatch.setattr(split, "MAX_REPEATS", 20)  # give up sooner: keeps the test fast
    # One blank at 1%: at most 46 held out by the bound, 36 in fact.
    task = SudokuTask(min_blanks=1, max_blanks=1, heldout_percent=1, num_eval=46)
    assert sum(task.is_heldout(g[:i] + "." + g[i + 1 :]) for g in all_grids() for i in range(16)) == 36
    with pytest.raises(ConfigError, match=r"only 3\d distinct held-out problems found"):
        task.eval_examples()
    # Countdown with 5s and `-` only has no playable game at all (5 - 5 is not positive).
    task = CountdownTask(min_number=5, max_number=5, operators="-", num_eval=1, heldout_percent=50)
    with pytest.raises(ConfigError, match="no training problem found in 10000 draws"):
        task.train_example(random.Random(0))


def test_every_draw_is_bounded():
    calls = []

    def generate(rng):
        calls.append(1)
        return rng.randrange(10)

    heldout = HeldoutSplit(
        "ten numbers", 10, heldout_percent=50, num_eval=5, generate=generate, in_heldout=lambda n: n < 3, fix="-"
    )
    with pytest.raises(ConfigError, match="ten numbers: only 3 distinct held-out problems found"):
        heldout.eval_problems(seed=0)
    assert len(calls) < split.MAX_ATTEMPTS  # ~2 draws per held-out number, MAX_REPEATS repeats
    never = HeldoutSplit("nothing", 10, 50, 1, generate=lambda rng: None, in_heldout=bool, fix="-")
    with pytest.raises(ConfigError, match="nothing: no held-out problem found in 10000 draws"):
        never.draw(random.Random(0), heldout=True)


def test_a_feasible_split_is_distinct_reproducible_and_on_its_side():
    heldout = HeldoutSplit(
        "ten",
        10,
        50,
        3,
        generate=lambda rng: rng.randrange(10),
        in_heldout=lambda n: n < 3,
        fix="",
    )
    assert sorted(heldout.eval_problems(seed=0)) == [0, 1, 2]
    assert heldout.eval_problems(seed=1) == heldout.eval_problems(seed=1)
    assert all(heldout.draw(random.Random(seed), heldout=False) >= 3 for seed in range(20))
