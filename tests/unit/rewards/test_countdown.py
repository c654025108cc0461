from fractions import Fraction

import pytest

import dllm
from dllm.errors import ConfigError
from dllm.rewards.base import RewardError
from dllm.rewards.countdown import CountdownReward, NotAnExpression, parse_expression


@pytest.fixture
def reward():
    return CountdownReward()


@pytest.mark.parametrize("completion", ["3*5+7", "7+3*5", "((5*3))+7", " 3 * 5 + 7\n", "7-(-3*5)", "7/(1/3)+5-4"])
def test_a_correct_expression_scores_one(reward, completion):
    numbers = [1, 3, 5, 7, 4] if "/" in completion else [7, 3, 5]  # any order
    assert reward.score(completion, numbers, 22) == 1.0


@pytest.mark.parametrize(
    "completion, why",
    [
        ("3*5-7", "evaluates to 8"),
        ("3*5+5", "uses 5 twice and not 7"),
        ("3*5", "leaves 7 out"),
        ("3*5+7+0", "adds a number"),
        ("15+7", "uses numbers that were not given"),
        ("35-7-6", "joins digits into another number"),
        ("3/(5-5)+7", "divides by zero (and uses 5 twice)"),
    ],
)
def test_a_well_formed_wrong_expression_scores_format_score(reward, completion, why):
    assert reward.score(completion, [3, 5, 7], 22) == 0.1, why


def test_division_by_zero_with_the_right_numbers_is_wrong_not_an_error(reward):
    assert parse_expression("7/(5-5)").value is None
    assert reward.score("7/(5-5)", [7, 5, 5], 0) == 0.1


@pytest.mark.parametrize(
    "completion",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "2**100",
        "3**5+7",
        "x",
        "abs(3)+5+7",
        "3*5+7;1",
        "3*5+7=22",
        "3.0*5+7",
        "1e1+5+7",
        "0x3*5+7",
        "3//1*5+7",
        "3%1",
        "+3*5+7",
        "3 5 7",
        "",
        "   ",
        "3*5+",
        "(3*5+7",
        "[3,5,7]",
        "03*5+7",
    ],
)
def test_anything_outside_the_grammar_scores_zero(reward, completion):
    assert reward.score(completion, [3, 5, 7], 22) == 0.0


def test_grammar_errors_name_the_construct():
    with pytest.raises(NotAnExpression, match="Pow"):
        parse_expression("2**100")
    with pytest.raises(NotAnExpression, match="UAdd"):
        parse_expression("+3")


def test_huge_or_deep_inputs_are_refused_without_crashing(reward):
    assert reward.score("9" * 5000, [9], 9) == 0.0
    assert reward.score("(" * 500 + "9" + ")" * 500, [9], 9) == 0.0
    assert reward.score("1+" * 20000 + "1", [1] * 20001, 20001) == 0.0
    assert reward.score("-" * 20000 + "9", [9], 9) == 0.0


def test_unary_minus_and_parentheses_are_allowed(reward):
    # -(3-5)*7 + ... : 14 + 8 = 22 with 3, 5, 7, 8
    assert reward.score("-(3-5)*7+8", [3, 5, 7, 8], 22) == 1.0
    assert reward.score("-3+5*5", [3, 5, 5], 22) == 1.0


def test_exact_arithmetic_and_tolerance():
    parsed = parse_expression("7/3*3")
    assert parsed.value == 7 and parsed.literals == (7, 3, 3)
    assert CountdownReward().score("7/3*3", [7, 3, 3], 7) == 1.0
    assert CountdownReward().score("1/3+1+1", [1, 3, 1, 1], 2.333333) == 1.0  # within 1e-5
    assert CountdownReward().score("1/3+1+1", [1, 3, 1, 1], 2.33) == 0.1
    assert CountdownReward(tolerance=0.01).score("1/3+1+1", [1, 3, 1, 1], 2.33) == 1.0


def test_intermediate_results_in_evaluation_order():
    parsed = parse_expression("(3+5)*7-34")
    assert parsed.steps == (Fraction(8), Fraction(56), Fraction(22)) and parsed.value == 22
    assert parse_expression("7").steps == ()
    assert parse_expression("1/0+2").steps == ()


def test_batched_call_reads_numbers_and_target_and_ignores_other_fields():
    reward = dllm.build("reward", "countdown", format_score=0.25)
    scores = reward(
        ["22:3,5,7=", "6:1,2,3=", "6:1,2,3="],
        ["3*5+7", "1+2", "1+2+3"],
        numbers=[[3, 5, 7], [1, 2, 3], [1, 2, 3]],
        target=[22, 6, 6],
        answer=["ignored"] * 3,
    )
    assert scores == [1.0, 0.25, 1.0]
    with pytest.raises(KeyError, match="target"):
        reward(["p"], ["1"], numbers=[[1]])
    with pytest.raises(RewardError, match="numbers must be lists of integers"):
        reward(["p"], ["1"], numbers=["one"], target=[1])


def test_bad_settings_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="format_score"):
        CountdownReward(format_score=1.0)
    with pytest.raises(ConfigError, match="tolerance"):
        CountdownReward(tolerance=-1.0)
