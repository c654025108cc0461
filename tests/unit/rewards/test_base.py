import logging
import math
import threading
import time

import numpy as np
import pytest

import dllm
from dllm.errors import DllmError
from dllm.rewards.base import MissingFieldError, Reward, RewardError, RewardScores, require_field, score_batch

PROMPTS = ["q1", "q2", "q3"]


class Constant(Reward):
    """Returns the scores it was made with, whatever the batch."""

    def __init__(self, scores):
        self.scores = scores

    def __call__(self, prompts, completions, **fields):
        return self.scores


class Raising(Reward):
    def __call__(self, prompts, completions, **fields):
        raise ZeroDivisionError("division by zero in my parser")


def test_a_plain_reward_is_one_term_named_after_its_key():
    reward = dllm.build("reward", "exact_match")
    assert reward.weighted_terms() == [("exact_match", 1.0, reward)]
    assert reward.breakdown(["a", "b"], ["1", "2"], answer=["1", "3"]) == {"exact_match": [1.0, 0.0]}


def test_score_batch_of_a_plain_reward():
    scores = score_batch(dllm.build("reward", "exact_match"), PROMPTS, ["1", "2", "3"], {"answer": ["1", "0", "3"]})
    expected = RewardScores(total=[1.0, 0.0, 1.0], terms={"exact_match": [1.0, 0.0, 1.0]}, failures=0)
    expected.steps = [[], [], []]  # no step-level values
    assert scores == expected


def test_step_level_values_sum_into_the_score_and_keep_their_positions():
    def process(prompts, completions, **fields):
        return [[(0, 0.25), (2, 0.5)], 1.0, []]

    scores = score_batch(process, PROMPTS, ["a", "b", "c"], {})
    assert scores.total == [0.75, 1.0, 0.0] and scores.steps == [[(0, 0.25), (2, 0.5)], [], []]


def test_malformed_step_level_values_are_refused():
    with pytest.raises(RewardError, match=r"a step-level score is a list of \(token_position: int, value: float\)"):
        score_batch(lambda prompts, completions, **f: [[(0.5, 1.0)]], ["p"], ["c"], {})


def test_score_batch_of_a_plain_function_and_of_arrays():
    def lengths(prompts, completions, **fields):
        return np.array([len(c) for c in completions], dtype=np.float32)

    scores = score_batch(lengths, PROMPTS, ["a", "bb", ""], {})
    assert scores.total == [1.0, 2.0, 0.0] and scores.terms == {"lengths": [1.0, 2.0, 0.0]}
    assert all(type(s) is float for s in scores.total)


def test_a_raising_reward_scores_zero_and_is_counted(caplog):
    with caplog.at_level(logging.WARNING, logger="dllm.rewards.base"):
        scores = score_batch(Raising(), PROMPTS, ["a", "b", "c"], {})
    assert scores.total == [0.0, 0.0, 0.0] and scores.failures == 1
    assert "ZeroDivisionError: division by zero in my parser" in caplog.text
    with pytest.raises(ZeroDivisionError):  # outside the guard, errors go through
        Raising().breakdown(PROMPTS, ["a", "b", "c"])


def test_non_finite_scores_become_zero_and_are_counted(caplog):
    with caplog.at_level(logging.WARNING, logger="dllm.rewards.base"):
        scores = score_batch(Constant([math.nan, 0.5, math.inf]), PROMPTS, ["a", "b", "c"], {})
    assert scores.total == [0.0, 0.5, 0.0] and scores.failures == 2
    assert "2 NaN or infinite scores of 3" in caplog.text


@pytest.mark.parametrize(
    "returned, message",
    [
        ([1.0, 0.0], r"reward 'Constant' returned 2 scores for 3 completions: \[1.0, 0.0\]; it must return exactly"),
        ([1.0, "0", 1.0], r"returned a non-number at index 1: '0' \(str\); each score must be a float"),
        ([1.0, None, 1.0], r"non-number at index 1: None"),
        (None, r"returned None \(NoneType\) for 3 completions; a reward returns a list of floats"),
        (1.0, r"returned 1.0 \(float\)"),
    ],
)
def test_a_reward_breaking_its_contract_is_an_error_naming_it(returned, message):
    with pytest.raises(RewardError, match=message):
        score_batch(Constant(returned), PROMPTS, ["a", "b", "c"], {})
    assert issubclass(RewardError, DllmError)


def test_a_missing_field_stops_the_run_instead_of_scoring_zero():
    with pytest.raises(MissingFieldError, match="needs the field 'answer'"):
        score_batch(dllm.build("reward", "exact_match"), PROMPTS, ["a", "b", "c"], {"truncated": [False] * 3})


class Sleeping(Reward):
    def __init__(self):
        self.release = threading.Event()

    def __call__(self, prompts, completions, **fields):
        self.release.wait(30)
        return [1.0] * len(completions)


def test_a_reward_past_the_timeout_scores_zero_and_the_call_returns(caplog):
    reward = Sleeping()
    try:
        began = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="dllm.rewards.base"):
            scores = score_batch(reward, PROMPTS, ["a", "b", "c"], {}, timeout_s=0.2)
        assert time.perf_counter() - began < 2.0
        assert scores.total == [0.0, 0.0, 0.0] and scores.failures == 1
        assert "took longer than 0.2s" in caplog.text
    finally:
        reward.release.set()


def test_under_a_timeout_results_and_errors_come_back_from_the_worker_thread():
    scores = score_batch(dllm.build("reward", "exact_match"), ["q"], ["1"], {"answer": ["1"]}, timeout_s=10)
    assert scores.total == [1.0] and scores.failures == 0
    assert score_batch(Raising(), ["q"], ["1"], {}, timeout_s=10).failures == 1
    with pytest.raises(MissingFieldError):
        score_batch(dllm.build("reward", "exact_match"), ["q"], ["1"], {}, timeout_s=10)


@pytest.mark.parametrize("timeout_s", [0, -1.0])
def test_timeout_must_be_positive(timeout_s):
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        score_batch(Constant([1.0]), ["q"], ["a"], {}, timeout_s=timeout_s)


def test_zero_truncated_applies_to_any_reward_that_asks_for_it():
    reward = Constant([1.0, 0.5, 1.0])
    fields = {"truncated": [False, True, True]}
    assert score_batch(reward, PROMPTS, ["a", "b", "c"], fields).total == [1.0, 0.5, 1.0]
    reward.zero_truncated = True
    assert score_batch(reward, PROMPTS, ["a", "b", "c"], fields).total == [1.0, 0.0, 0.0]
    with pytest.raises(RewardError, match="2 values of 'truncated' for 3 completions"):
        score_batch(reward, PROMPTS, ["a", "b", "c"], {"truncated": [True, False]})


def test_require_field_errors_are_key_and_value_errors():
    with pytest.raises(KeyError):
        require_field("answer", {}, "r", 1)
    with pytest.raises(ValueError):
        require_field("answer", {"answer": [1, 2]}, "r", 1)
    assert require_field("answer", {"answer": (1, 2)}, "r", 2) == [1, 2]


def test_what_a_term_counts_reaches_the_metrics():
    class Counting:
        def __init__(self):
            self.last_counts = {}

        def __call__(self, prompts, completions, **fields):
            self.last_counts = {"skipped": len(completions) - 1}
            return [1.0] * len(completions)

    scores = score_batch(Counting(), ["p"] * 3, ["a", "b", "c"], {})
    assert scores.counts == {"reward/Counting/skipped": 2.0}
    assert score_batch(lambda prompts, completions, **f: [0.0] * len(completions), ["p"], ["a"], {}).counts == {}
