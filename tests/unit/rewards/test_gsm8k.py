from fractions import Fraction

import pytest

import dllm
from dllm.rewards.base import RewardError
from dllm.rewards.gsm8k import final_number, numbers_in

SOLUTION = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"


@pytest.mark.parametrize(
    "completion, answer, score",
    [
        ("She makes 9 * 2 = 18 dollars a day.\n#### 18", SOLUTION, 1.0),
        ("#### 18", "18", 1.0),
        ("She makes $18.", "18", 1.0),  # the last number, with a unit sign and a trailing period
        ("She makes 18 dollars", "18", 1.0),
        ("The answer is 18.00", "18", 1.0),
        ("#### $18.", "#### 18", 1.0),
        ("She sold 1,234 eggs", "#### 1,234", 1.0),
        ("She sold 1,234 eggs", "1234", 1.0),
        ("She sold 1{,}234 eggs", "1234", 1.0),
        ("#### 18 (9 eggs at $2)", "18", 1.0),  # the first number after ####, not the last
        ("18 at first, then #### 20", "18", 0.0),
        ("9 * 2 = 18, minus 2 is 16", "18", 0.0),  # the last number is the answer
        ("The temperature is -5 degrees", "-5", 1.0),
        ("from 10-15 people", "15", 1.0),  # a range, not a negative number
        ("It costs 0.5 dollars", "#### .5", 1.0),
        ("It costs 0.25", "0.2", 0.0),
        ("I am not sure.", "18", 0.0),
        ("", "18", 0.0),
        ("#### ", "0", 0.0),
        ("answers 3, 4 and #### ", "4", 1.0),  # nothing after ####: the last number
        ("1,2,3", "3", 1.0),  # commas that do not group thousands separate numbers
        ("1,2,3", "123", 0.0),
    ],
)
def test_scores(completion, answer, score):
    assert dllm.build("reward", "gsm8k")(["q"], [completion], answer=[answer], truncated=[False]) == [score]


def test_numbers_are_exact_fractions():
    assert numbers_in("a 1,000,000.5 b -2 c .25") == [Fraction(2000001, 2), Fraction(-2), Fraction(1, 4)]
    assert final_number("x 3 #### 7 and 8") == 7
    assert final_number("nothing") is None


def test_a_ground_truth_without_a_number_is_refused_by_index():
    with pytest.raises(RewardError, match=r"answer\[1\]='n/a' has no number"):
        dllm.build("reward", "gsm8k")(["q", "q"], ["1", "2"], answer=["1", "n/a"])


def test_batch():
    reward = dllm.build("reward", "gsm8k")
    assert reward(["a", "b", "c"], ["#### 3", "2", "x"], answer=["3", "3", "3"]) == [1.0, 0.0, 0.0]
    assert reward([], [], answer=[]) == []


def test_a_null_or_nan_gold_answer_scores_zero_not_an_error():
    reward = dllm.build("reward", "gsm8k")
    completions = ["#### 0", "the answer is nan", "None"]
    assert reward(["q"] * 3, completions, answer=[None, float("nan"), None]) == [0.0, 0.0, 0.0]
