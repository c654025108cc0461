import pickle
import threading
import time

import pytest

import dllm
from dllm.errors import ConfigError
from dllm.rewards.base import MissingFieldError
from dllm.rewards.math import MathVerifier, gold_expression

# (completion, answer, verdict): what a grader of MATH-style answers should say.
EQUIVALENCE = [
    # integers and signs
    (r"\boxed{42}", "42", 1),
    (r"\boxed{-7}", "-7", 1),
    (r"\boxed{7}", "-7", 0),
    (r"\boxed{041}", "41", 1),
    (r"\boxed{12}", "21", 0),
    (r"\boxed{1000}", "1,000", 1),
    (r"\boxed{1{,}000}", "1000", 1),
    (r"\boxed{10^{3}}", "1000", 1),
    # fractions
    (r"\boxed{\frac{1}{2}}", "1/2", 1),
    (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", 1),
    (r"\boxed{\tfrac12}", "1/2", 1),
    (r"\boxed{\frac12}", "0.5", 1),
    (r"\boxed{2/4}", r"\frac{1}{2}", 1),
    (r"\boxed{-\frac{3}{4}}", r"\frac{-3}{4}", 1),
    (r"\boxed{\frac{3}{4}}", r"-\frac{3}{4}", 0),
    (r"\boxed{\frac{1}{3}}", r"\frac{1}{4}", 0),
    (r"\boxed{\frac{2}{1}}", "2", 1),
    (r"\boxed{1\frac{1}{2}}", r"\frac{3}{2}", 1),  # a mixed number
    (r"\boxed{1\frac{1}{2}}", r"\frac{1}{2}", 0),
    # decimals
    (r"\boxed{0.5}", "1/2", 1),
    (r"\boxed{.5}", "0.5", 1),
    (r"\boxed{2.50}", "2.5", 1),
    (r"\boxed{3.14}", "3.15", 0),
    (r"\boxed{0.333}", r"\frac{1}{3}", 0),
    (r"\boxed{18.0}", "18", 1),
    (r"\boxed{18.01}", "18", 0),
    # percentages: the percent sign is notation, 50\% answers "50"
    (r"\boxed{50\%}", "50", 1),
    (r"\boxed{50}", r"50\%", 1),
    (r"\boxed{25\%}", r"50\%", 0),
    (r"\boxed{12.5\%}", r"12.5\%", 1),
    # radicals and constants
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", 1),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{1}{2}\sqrt{3}", 1),
    (r"\boxed{\sqrt{3}}", r"\sqrt{2}", 0),
    (r"\boxed{\pi}", "3.14", 0),
    (r"\boxed{2\pi}", r"\pi \cdot 2", 1),
    (r"\boxed{\frac{\pi}{2}}", r"\pi/2", 1),
    (r"\boxed{e^{2}}", r"e^2", 1),
    # intervals and sets
    (r"\boxed{(1, 2)}", r"\left(1, 2\right)", 1),
    (r"\boxed{[1,2)}", "[1,2)", 1),
    (r"\boxed{(1,2)}", "[1,2)", 0),
    (r"\boxed{(-\infty, 3]}", r"(-\infty,3]", 1),
    (r"\boxed{(-\infty, 3)}", r"(-\infty,3]", 0),
    (r"\boxed{[0,1]\cup[2,3]}", r"[0,1] \cup [2,3]", 1),
    (r"\boxed{\{1,2\}}", r"\{2,1\}", 1),
    (r"\boxed{\{1,2\}}", r"\{1,3\}", 0),
    # matrices and vectors
    (r"\boxed{\begin{pmatrix}1&2\\3&4\end{pmatrix}}", r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", 1),
    (r"\boxed{\begin{pmatrix}1&2\\3&5\end{pmatrix}}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 0),
    (r"\boxed{\begin{pmatrix}1\\2\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}", 1),
    (r"\boxed{\begin{pmatrix}2\\1\end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}", 0),
    # units and text
    (r"\boxed{5\text{ cm}}", "5", 1),
    (r"\boxed{5 \mathrm{cm}}", r"5\text{ cm}", 1),
    (r"\boxed{6\text{ cm}}", r"5\text{ cm}", 0),
    (r"\boxed{\$18}", "18", 1),
    (r"\boxed{90^\circ}", "90", 1),
    (r"\boxed{90^{\circ}}", r"90^\circ", 1),
    (r"\boxed{45^\circ}", "90", 0),
    (r"\boxed{\text{(A)}}", "A", 1),
    (r"\boxed{B}", "A", 0),
    # algebra and equations
    (r"\boxed{x^2+2x+1}", "(x+1)^2", 1),
    (r"\boxed{x^2+1}", "(x+1)^2", 0),
    (r"\boxed{x=2}", "2", 1),
    (r"\boxed{2}", "x=2", 1),
    (r"\boxed{y=2x+1}", "y=1+2x", 1),
    (r"\boxed{3}", "x=2", 0),
    # LaTeX spacing, \left ... \right, display style
    (r"\boxed{\left(\frac{1}{2}, 3\right)}", r"(\frac12, 3)", 1),
    (r"\boxed{\, 7 \,}", "7", 1),
    (r"\boxed{\displaystyle \frac{5}{6}}", "5/6", 1),
    # extraction: the last box wins, unbraced and \fbox forms, boxed ground truths
    (r"First \boxed{3}, finally \boxed{4}", "4", 1),
    (r"First \boxed{4}, finally \boxed{3}", "4", 0),
    (r"The answer is $\boxed 5$.", "5", 1),
    (r"\fbox{12}", "12", 1),
    (r"so \boxed{\frac{1}{2}}", r"\boxed{\frac{1}{2}}", 1),
    (r"\boxed{3}", r"The answer is $\boxed{3}$", 1),
    # no answer
    ("The answer is 42.", "42", 0),
    (r"\boxed{}", "0", 0),
    (r"\boxed{4", "4", 0),
    (r"\boxed{4} then \boxed{5", "4", 0),
]


@pytest.fixture(scope="module")
def reward():
    return dllm.build("reward", "math")


def test_equivalence_table(reward):
    assert len(EQUIVALENCE) >= 60
    scores = reward(["q"] * len(EQUIVALENCE), [c for c, _, _ in EQUIVALENCE], answer=[a for _, a, _ in EQUIVALENCE])
    wrong = [(c, a, e, s) for (c, a, e), s in zip(EQUIVALENCE, scores) if s != float(e)]
    assert wrong == []
    assert all(type(s) is float for s in scores)


@pytest.mark.parametrize(
    "answer, expression",
    [("1/2", "1/2"), (r" $\frac{1}{2}$ ", r"\frac{1}{2}"), (r"so $\boxed{3}$.", "3"), (18, "18"), (r"\boxed{", "")],
)
def test_gold_expression(answer, expression):
    assert gold_expression(answer) == expression


def test_answer_field_is_required_and_unknown_fields_are_ignored(reward):
    with pytest.raises(MissingFieldError, match="needs the field 'answer'"):
        reward(["q"], [r"\boxed{1}"], truncated=[False])
    assert reward(["q"], [r"\boxed{1}"], answer=["1"], truncated=[True], extra=[0]) == [1.0]


def test_a_null_or_nan_gold_answer_matches_nothing(reward):
    import numpy as np

    completions = [r"\boxed{None}", r"\boxed{nan}", r"\boxed{NaN}", r"\boxed{}", "nan"]
    for gold in (None, float("nan"), np.float64("nan")):
        assert reward(["q"] * 5, completions, answer=[gold] * 5) == [0.0] * 5
    assert reward(["q"], [r"\boxed{4}"], answer=[4.0]) == [1.0]  # a number is a gold answer


def test_timeout_must_be_positive():
    with pytest.raises(ConfigError, match=r"reward.timeout_s=0 must be a positive number"):
        dllm.build("reward", "math", timeout_s=0)


SLOW = r"\boxed{9^{9^{9^{9}}}}"  # sympy does not finish this within a second


def test_slow_verification_scores_zero_within_its_timeout_from_another_thread():
    reward = dllm.build("reward", "math", timeout_s=0.5)
    result = {}

    def score():
        began = time.perf_counter()
        result["scores"] = reward(["q", "q"], [SLOW, r"\boxed{2}"], answer=["1", "2"])
        result["seconds"] = time.perf_counter() - began

    thread = threading.Thread(target=score)  # math-verify's own SIGALRM timeout cannot work here
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert result["scores"] == [0.0, 1.0]
    assert 0.5 <= result["seconds"] < 5.0


def test_a_stuck_worker_is_killed_and_replaced():
    verifier = MathVerifier()
    try:
        assert verifier.equivalent("2", "1+1", timeout_s=5) is True
        first = verifier.pid
        began = time.perf_counter()
        # The worker would give up after 30 s; the parent's kill deadline comes first.
        assert verifier.equivalent("1", r"9^{9^{9^{9}}}", timeout_s=30, kill_after_s=0.5) is None
        assert time.perf_counter() - began < 3.0
        assert verifier.pid is None
        assert verifier.equivalent("3", r"\frac{6}{2}", timeout_s=5) is True
        assert verifier.pid not in (None, first)
    finally:
        verifier.close()


def test_identical_answers_are_verified_once_and_obvious_ones_never(reward, monkeypatch):
    calls = []
    original = MathVerifier.equivalent

    def counting(self, gold, pred, timeout_s, kill_after_s=None):
        calls.append((gold, pred))
        return original(self, gold, pred, timeout_s, kill_after_s)

    monkeypatch.setattr(MathVerifier, "equivalent", counting)
    completions = [r"\boxed{0.5}"] * 3 + [r"\boxed{1/2}", r"\boxed{ \frac{1} {2} }", "no answer"]
    scores = reward(["q"] * 6, completions, answer=[r"\frac{1}{2}"] * 6)
    assert scores == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert sorted(calls) == [(r"\frac{1}{2}", "0.5"), (r"\frac{1}{2}", "1/2")]  # side by side: any order


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_timeout_s": 0}, r"reward.batch_timeout_s=0 must be a positive number of seconds"),
        ({"batch_timeout_s": -1.5}, r"reward.batch_timeout_s=-1.5 must be a positive number of seconds"),
        ({"workers": 0}, r"reward.workers=0: need at least 1"),
    ],
)
def test_batch_options_must_be_positive(options, message):
    with pytest.raises(ConfigError, match=message):
        dllm.build("reward", "math", **options)


def test_batch_budget_defaults_to_twice_the_timeout():
    reward = dllm.build("reward", "math", timeout_s=3)
    assert reward.batch_timeout_s == 6.0 and reward.workers >= 1


def test_a_batch_of_slow_answers_returns_within_its_budget():
    # Before the budget, 16 of these took 16 x (timeout_s + 1) s one after another.
    reward = dllm.build("reward", "math", timeout_s=5, batch_timeout_s=2)
    slow = [rf"\boxed{{9^{{9^{{9^{{{9 + i}}}}}}}}}" for i in range(16)]  # distinct: each would be verified
    fast = [r"\boxed{0.5}", r"\boxed{\frac{6}{3}}"]  # equivalent, not equal: they need math-verify
    for verifier in reward.pool.take(reward.workers):
        verifier.start()  # the workers' own startup is not under test
    began = time.perf_counter()
    scores = reward(["q"] * 18, fast + slow, answer=["1/2", "2"] + ["1"] * 16)
    seconds = time.perf_counter() - began
    assert scores == [1.0, 1.0] + [0.0] * 16
    assert seconds < 2 + 4
    assert reward.timeouts == 16


def test_empty_batch(reward):
    assert reward([], [], answer=[]) == []


def test_a_copied_reward_works(reward):
    copy = pickle.loads(pickle.dumps(reward))
    try:
        assert copy.timeout_s == reward.timeout_s and copy.pool is not reward.pool
        assert copy(["q"], [r"\boxed{0.25}"], answer=[r"\frac14"]) == [1.0]
    finally:
        copy.pool.close()
