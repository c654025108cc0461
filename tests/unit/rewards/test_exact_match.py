import pytest

import dllm


def test_scores_equal_answers_one():
    reward = dllm.build("reward", "exact_match")
    scores = reward(["1+1=", "2+2=", "3+3="], ["2", " 4\n", "7"], answer=["2", "4", "6"])
    assert scores == [1.0, 1.0, 0.0]


def test_case_sensitivity():
    assert dllm.build("reward", "exact_match")(["q"], ["Yes"], answer=["yes"]) == [0.0]
    assert dllm.build("reward", "exact_match", case_sensitive=False)(["q"], ["Yes"], answer=["yes"]) == [1.0]


def test_missing_or_short_field_is_named():
    reward = dllm.build("reward", "exact_match")
    with pytest.raises(KeyError, match="needs the field 'answer'"):
        reward(["q"], ["a"], tests=[[]])
    with pytest.raises(ValueError, match="1 values of 'answer' for 2 completions"):
        reward(["q", "r"], ["a", "b"], answer=["a"])


def test_partial_credit_counts_the_right_characters():
    reward = dllm.build("reward", "exact_match", partial_credit=True)
    # "0168" vs "0178": 3 of 4 right; "016" vs "0168": 3 of 4 (over the longer); exact: 1.0
    assert reward(["q"] * 3, ["0178", "016", "0168"], answer=["0168"] * 3) == [0.75, 0.75, 1.0]
