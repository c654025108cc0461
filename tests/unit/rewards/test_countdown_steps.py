from fractions import Fraction

import dllm
from dllm.rewards.countdown_steps import reachable, useful_steps


def test_reachable_by_hand():
    assert reachable([Fraction(15), Fraction(7)], Fraction(22))
    assert not reachable([Fraction(8), Fraction(7)], Fraction(22))
    assert reachable([Fraction(2), Fraction(3), Fraction(4)], Fraction(20))  # (2 + 3) * 4


def test_useful_sub_results_get_credit_at_their_last_character():
    # "(2+3)*4" for 20 from 2, 3, 4: "2+3" ends at char 3, the whole at char 6
    assert useful_steps("(2+3)*4", [2, 3, 4], Fraction(20)) == [3, 6]
    assert useful_steps(" 2*3+4", [2, 3, 4], Fraction(20)) == []  # 2*3 = 6 cannot reach 20 with 4
    assert useful_steps("2*2+4", [2, 3, 4], Fraction(8)) == []  # 2 used twice
    assert useful_steps("2/(3-3)", [2, 3, 3], Fraction(1)) == []  # division by zero


def test_token_positions_follow_the_offsets():
    reward = dllm.build("reward", "countdown_steps", step_credit=0.5)
    # two characters per token: char 3 is in token 1, char 6 in token 3
    values = reward(["p"], ["(2+3)*4"], numbers=[[2, 3, 4]], target=[20], token_offsets=[[0, 2, 4, 6]])
    assert values == [[(1, 0.5), (3, 0.5)]]
