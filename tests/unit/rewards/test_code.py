"""The `code` reward: code extraction, scoring of assert and stdio tests, limits, cheating."""

import pickle
import sys
import textwrap
import time

import pytest

import dllm
from dllm.errors import ConfigError
from dllm.rewards.base import MissingFieldError, RewardError
from dllm.rewards.code import extract_code, normalise_output

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 5) == 5"]


@pytest.fixture(scope="module")
def reward():
    reward = dllm.build("reward", "code", time_limit=0.5, workers=2, memory_mb=256, processes=16, max_output_kb=64)
    yield reward
    reward.close()


def score(reward, completions, tests, **fields):
    return reward(["prompt"] * len(completions), completions, tests=tests, **fields)


def fenced(code, tag="python"):
    return f"Here is my solution.\n```{tag}\n{textwrap.dedent(code).strip()}\n```\nDone."


@pytest.mark.parametrize(
    "completion, code",
    [
        ("```python\nx = 1\n```", "x = 1\n"),
        ("```py\nx = 1\n```", "x = 1\n"),
        ("```Python3\nx = 1\n```", "x = 1\n"),
        ("```\nx = 1\n```", "x = 1\n"),
        ("a\n```python\nx = 1\n```\nthen\n```python\nx = 2\n```\nend", "x = 2\n"),
        ("```python\nx = 1\n```\n```bash\nrm -rf /\n```", "x = 1\n"),
        ("```python\nx = 1\n```\n```python\nx = 2", "x = 2"),  # an unclosed last block runs to the end
        ("def f():\n    return 1", "def f():\n    return 1"),  # no block: the whole text
        ("```bash\nls\n```", "```bash\nls\n```"),  # no Python block: the whole text
        ("```python\n```", ""),
        ("see ```python\nx = 1\n```", "x = 1\n"),  # a fence may open mid-line
        ("```python\n  ```\n```bash\nx\n```", ""),  # an indented closing fence; a bash block after it
        ("```bash\n```python\nx = 1\n```", "```bash\n```python\nx = 1\n```"),  # closes bash; no block after
        ("```python\nx = 1\n```", "x = 1\n"),
        ("x = 1\n```python", "x = 1\n```python"),  # a fence on the last line opens nothing
    ],
)
def test_extract_code(completion, code):
    assert extract_code(completion) == code


@pytest.mark.parametrize(
    "completion, code",
    [
        ("`" * 200_000, "`" * 200_000),  # 19 s before the scan was linear
        ("```a" * 50_000 + "\n", "```a" * 50_000 + "\n"),
        ("```python\n" * 20_000, ""),  # nested / unclosed fences: each closes the one before
        ("```python\n" + "x = 1\n" * 30_000, "x = 1\n" * 30_000),
        ("\n" + "`" * 100_000 + "\n" + "```\n" * 10_000, ""),
    ],
)
def test_extract_code_is_linear_in_adversarial_text(completion, code):
    started = time.perf_counter()
    assert extract_code(completion) == code
    assert time.perf_counter() - started < 1.0  # a generous guard: milliseconds when linear


def test_normalise_output():
    assert normalise_output("1 2  \n3\t\r\n\n\n") == ["1 2", "3"]
    assert normalise_output("  a\n") == ["  a"]  # leading whitespace counts
    assert normalise_output("") == []


def test_correct_partial_and_wrong_programs(reward):
    completions = [
        fenced("def add(a, b):\n    return a + b"),
        fenced("def add(a, b):\n    return 4 if a == 2 else 0 if a == 1 else a + b"),  # passes 2 of 3
        fenced("def add(a, b):\n    return a - b"),
        "no code at all",
    ]
    assert score(reward, completions, [ADD_TESTS] * 4) == pytest.approx([1.0, 2 / 3, 0.0, 0.0])


def test_all_or_nothing():
    reward = dllm.build("reward", "code", time_limit=0.5, workers=1, all_or_nothing=True)
    try:
        partial = fenced("def add(a, b):\n    return 4 if a == 2 else a + b + 1")
        assert score(reward, [fenced("def add(a, b):\n    return a + b"), partial], [ADD_TESTS] * 2) == [1.0, 0.0]
    finally:
        reward.close()


def test_stdio_cases(reward):
    cases = [
        {"input": "1 2\n", "output": "3\n"},
        {"input": "5 6", "output": "11   \n\n"},  # trailing whitespace and blank lines do not count
        {"input": "0 0", "output": "1"},
    ]
    program = fenced("a, b = map(int, input().split())\nprint(a + b)")
    right_then_crash = fenced("a, b = map(int, input().split())\nprint(a + b)\nraise SystemExit(1)")
    two_lines = fenced("print(1)\nprint(2)")
    scores = score(reward, [program, right_then_crash, two_lines], [cases, cases, [{"input": "", "output": "1\n2"}]])
    assert scores == pytest.approx([2 / 3, 0.0, 1.0])


def test_tests_given_as_json_strings(reward):
    tests = ['["assert add(1, 2) == 3"]', '[{"input": "", "output": "hi"}]']
    assert score(reward, [fenced("def add(a, b):\n    return a + b"), "print('hi')"], tests) == [1.0, 1.0]


def test_cheats_score_zero(reward):
    wrong = "def add(a, b):\n    return 0\n"
    cheats = [
        wrong + "import sys\nsys.exit(0)",
        wrong + "import os\nos._exit(0)",
        wrong + "print('All tests passed')",
        wrong + "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})",
        "class Anything:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Anything()",
    ]
    assert score(reward, [fenced(c) for c in cheats], [ADD_TESTS] * len(cheats)) == [0.0] * len(cheats)


def test_hostile_programs_score_zero_and_the_reward_survives(reward):
    hostile = [
        "while True:\n    pass",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "x = bytearray(10**10)",
        "while True:\n    print('spam' * 1000)",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)",
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=0.5)",
    ]
    completions = [fenced(h + "\ndef add(a, b):\n    return a + b") for h in hostile]
    assert score(reward, completions, [ADD_TESTS[:1]] * len(hostile)) == [0.0] * len(hostile)
    assert score(reward, [fenced("def add(a, b):\n    return a + b")], [ADD_TESTS]) == [1.0]


def test_time_limit_per_row(reward):
    busy = fenced("import time\nwhile time.process_time() < 0.3:\n    pass\ndef add(a, b):\n    return a + b")
    tests = [ADD_TESTS[:1]] * 3
    assert score(reward, [busy] * 3, tests, time_limit=[0.1, 2.0, None]) == [0.0, 1.0, 1.0]


def test_malformed_tests_are_named_and_left_out(reward, caplog):
    program = fenced("def add(a, b):\n    return a + b")
    rows = [["assert add(1, 2) == 3", "assert add(1, 2 == 3"], ["add(1, 2)"], ["assert add(2, 2) == 4"]]
    with caplog.at_level("WARNING"):
        assert score(reward, [program] * 3, rows, task_id=["a", "b", "c"]) == [1.0, 0.0, 1.0]
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 2
    assert "tests[0][1] (task_id='a') is malformed (does not compile" in warnings[0]
    assert "tests[1][0] (task_id='b') is malformed (asserts nothing" in warnings[1]
    assert reward.last_counts == {"judged_outside": 2, "judged_inside": 0, "malformed": 2}
    caplog.clear()
    with caplog.at_level("WARNING"):  # named once, not at every step
        score(reward, [program], rows[:1])
    assert not [r for r in caplog.records if "malformed" in r.getMessage()]


def test_duplicate_programs_run_once(reward, monkeypatch):
    ran = []
    run = reward.sandbox.run
    monkeypatch.setattr(reward.sandbox, "run", lambda jobs: ran.extend(jobs) or run(jobs))
    program = fenced("def add(a, b):\n    return a + b")
    assert score(reward, [program] * 4, [ADD_TESTS] * 4) == [1.0] * 4
    assert len(ran) == len(ADD_TESTS)


def test_empty_batch(reward):
    assert reward([], [], tests=[]) == []


def test_bad_tests_are_named(reward):
    with pytest.raises(MissingFieldError, match="needs the field 'tests'"):
        reward(["p"], ["x"], answer=["1"])
    for bad, message in [
        ([], r"tests\[0\] is list \[\]"),
        (["assert True", {"input": "", "output": ""}], r"tests\[0\]\[1\]"),
        ([{"input": "1"}], r"tests\[0\]\[0\]"),
        ("not json", r"tests\[0\] is a string that is not JSON"),
        (None, r"tests\[0\] is NoneType"),
    ]:
        with pytest.raises(RewardError, match=message):
            score(reward, ["x"], [bad])
    with pytest.raises(RewardError, match=r"time_limit\[0\]=-1"):
        score(reward, ["x"], [["assert True"]], time_limit=[-1])


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="time_limit=0"):
        dllm.build("reward", "code", time_limit=0)
    with pytest.raises(ConfigError, match="memory_mb=10"):
        dllm.build("reward", "code", memory_mb=10)
    with pytest.raises(ConfigError, match="workers=0"):
        dllm.build("reward", "code", workers=0)
    for packages in ("numpy", ["numpy", "a/b"]):
        with pytest.raises(ConfigError, match="allowed_packages"):
            dllm.build("reward", "code", allowed_packages=packages)


def test_a_pickled_copy_starts_its_own_sandbox(reward):
    copy = pickle.loads(pickle.dumps(reward))
    try:
        assert score(copy, [fenced("def add(a, b):\n    return a + b")], [ADD_TESTS[:1]]) == [1.0]
        assert copy.sandbox is not reward.sandbox
    finally:
        copy.close()


INSIDE = "try:\n    {}\nexcept ZeroDivisionError:\n    raise"  # a try: this test is judged inside the sandbox

FORGED = {
    "mock.ANY": "from unittest import mock\ndef add(a, b):\n    return mock.ANY",
    "int subclass, C-slot __eq__": "class X(int):\n    __eq__ = int.__ne__\ndef add(a, b):\n    return X(0)",
    "always equal, in a list": "class E:\n    __eq__ = lambda s, o: True\ndef add(a, b):\n    return [E()]",
    "__sub__ returns 0": "class Z:\n    __sub__ = __rsub__ = lambda s, o: 0\ndef add(a, b):\n    return Z()",
    "float subclass": "class F(float):\n    __eq__ = lambda s, o: True\ndef add(a, b):\n    return F(0.0)",
    "__contains__": "class C:\n    __contains__ = lambda s, o: True\ndef add(a, b):\n    return C()",
}
FORGED_TESTS = [
    "assert add(1, 2) == 3",
    "assert add(1, 2) in (3, 4)",
    "assert abs(add(1, 2) - 3) < 1e-9",
    "assert add(1, 2) == [3]",
    "assert 3 in add(1, 2)",
]


@pytest.mark.parametrize("inside", [False, True], ids=["judged outside", "judged inside"])
@pytest.mark.parametrize("cheat", FORGED)
def test_values_that_forge_equality_score_zero_on_both_paths(reward, cheat, inside):
    tests = [INSIDE.format(t) if inside else t for t in FORGED_TESTS]
    assert score(reward, [fenced(FORGED[cheat])], [tests]) == [0.0]
    assert reward.last_counts["judged_inside" if inside else "judged_outside"] == len(FORGED_TESTS)


@pytest.mark.parametrize("inside", [False, True], ids=["judged outside", "judged inside"])
def test_honest_values_and_an_idle_thread_pass_on_both_paths(reward, inside):
    program = "from collections import Counter\nclass N(int):\n    pass\ndef add(a, b):\n    return N(a + b)\n"
    program += "def count(s):\n    return Counter(s)\n"
    program += "from concurrent.futures import ThreadPoolExecutor\nPOOL = ThreadPoolExecutor(1)\nPOOL.submit(int)"
    tests = ["assert add(1, 2) == 3", "assert abs(add(1, 2) - 3) < 1e-9", "assert count('aab') == {'a': 2, 'b': 1}"]
    tests = [INSIDE.format(t) if inside else t for t in tests]
    assert score(reward, [fenced(program)], [tests]) == [1.0]


def test_a_class_that_lies_about_its_class_scores_zero(reward):
    program = "class T:\n    __eq__ = lambda s, o: True\n    __class__ = property(lambda s: int)\n"
    program += "def add(a, b):\n    return T()"
    tests = ["assert add(1, 2) == 3", INSIDE.format("assert add(1, 2) == 3")]
    assert score(reward, [fenced(program)], [tests]) == [0.0]


def test_a_test_judged_inside_says_why_once(reward, caplog):
    program = fenced("def add(a, b):\n    return a + b")
    test = INSIDE.format("assert add(20, 22) == 42")  # a test this module's reward has not seen
    with caplog.at_level("WARNING"):
        assert score(reward, [program] * 2, [[test], [test]], id=[7, 8]) == [1.0, 1.0]
        score(reward, [program], [[test]])
    said = [r.getMessage() for r in caplog.records if "judged inside" in r.getMessage()]
    assert len(said) == 1 and "tests[0][0] (id=7) is judged inside the sandbox" in said[0]
    assert "Try statements" in said[0]
