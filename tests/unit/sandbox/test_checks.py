"""Splitting function tests into probes (run in the sandbox) and checks (judged here), with
hand-written sandbox reports: no sandbox runs in this file."""

import json

import pytest

from dllm.sandbox.checks import MalformedTest, decode_report, judge, split_test
from dllm.sandbox.trusted_eval import Unsplittable, literal

HUMANEVAL = """
METADATA = {"author": "us"}

def check(candidate):
    for x, y in [(1, 2), (3, 4)]:
        assert candidate(x) == y
    r = candidate(10)
    assert abs(r - 11) < 1e-6, "tolerance"

check(inc)
"""


KEPT = object()  # a probe whose value stays in the sandbox (it feeds later probes)


def report(*values, raw=None):
    """A report as the sandbox writes it: every probe answered with a (tagged) value."""
    return json.dumps(raw if raw is not None else [["k"] if v is KEPT else ["v", v] for v in values]).encode()


@pytest.mark.parametrize(
    "test, probes, sent",
    [
        ("assert add(1, 2) == 3", ["add(1, 2)"], [True]),
        ("import math\nassert math.isclose(area(5), 78.5, rel_tol=0.01)", ["area(5)"], [True]),
        ("assert f(*[1, 2], k={'a': [1]}) == 1", ["f(*[1, 2], k={'a': [1]})"], [True]),
        ("assert total([Item(1), Item(2)]) == 3", ["Item(1)", "Item(2)", "total([__dllm_probe_0, __dllm_probe_1])"],
         [False, False, True]),
        ("assert Solution().two(3) == 6", ["Solution()", "__dllm_probe_0.two(3)"], [False, True]),
        ("assert all(f(i) == i * i for i in range(3))", ["f(0)", "f(1)", "f(2)"], [True] * 3),
        ("assert list(evens(7)) == [0, 2, 4, 6]", ["evens(7)", "list(__dllm_probe_0)"], [False, True]),
        ("xs = [3, 1]; sort_in_place(xs); assert xs == [1, 3]",
         ["[3, 1]", "sort_in_place(__dllm_probe_0)", "__dllm_probe_0"], [False, False, True]),
        ("r = make(); grow(r); assert r == [1]", ["make()", "grow(__dllm_probe_0)", "__dllm_probe_0"],
         [False, False, True]),
        ("assert f(float('inf'), b'\\x00', {1}, set(), -0.5, 2**70) == 0",
         ["f(float('inf'), b'\\x00', {1}, set(), -0.5, 1180591620717411303424)"], [True]),
        (HUMANEVAL, ["inc(1)", "inc(3)", "inc(10)"], [True, True, True]),
    ],
)  # fmt: skip
def test_probes_hold_the_program_calls_and_no_expected_value(test, probes, sent):
    split = split_test(test)
    assert list(split.probes) == probes
    assert list(split.sent) == sent


@pytest.mark.parametrize(
    "test, answers, passed",
    [
        ("assert add(1, 2) == 3", [3], True),
        ("assert add(1, 2) == 3", [4], False),
        ("assert add(1, 2) == 3", [3.0], True),  # Python's own equality, on plain values
        ("assert f(3) in (1, 2)", [2], True),
        ("assert f(3) in (1, 2)", [3], False),
        ("assert set(f()) == {1, 2}", [KEPT, ["s", 2, 1]], True),  # set() of it applied in the sandbox
        ("assert set(f()) == {1, 2}", [KEPT, ["l", 1, 2]], False),  # ... and it must return a set
        ("assert sorted(f(), reverse=True) == [2, 1]", [KEPT, ["l", 2, 1]], True),
        ("assert sorted(f(), key=lambda t: -t) == [2, 1]", [["l", 1, 2]], True),  # a lambda: sorted here
        ("assert abs(f() - 0.3) < 1e-9", [0.30000000000000004], True),
        ("assert abs(f() - 0.3) < 1e-9", [0.31], False),
        ("assert not f()", [["l"]], True),
        ("assert f() is None", [None], True),
        ("assert f() is True", [1], False),
        ("assert isinstance(f(), tuple)", [["l", 1]], False),
        ("assert f()[0] == 'a' and len(f()) == 2", [["l", "a", "b"], KEPT, 2], True),
        ("assert f() == {'a': (1, 2)}", [["d", "a", ["t", 1, 2]]], True),
        ("assert f() == b'xy'", [["b", "xy"]], True),
        ("assert f() == 2**70", [["I", hex(2**70)]], True),
        ("assert f() == 1 + 2j", [["c", 1, 2]], True),
        ("assert f(1) == 2 or f(2) == 5", [3, 5], True),
        (HUMANEVAL, [2, 4, 11.0], True),
        (HUMANEVAL, [2, 5, 11.0], False),
    ],
)
def test_checks_are_judged_on_the_reported_values(test, answers, passed):
    assert judge(split_test(test), report(*answers)) is passed


def test_anything_but_a_complete_well_formed_report_fails():
    split = split_test("assert f(1) == 1\nassert f(2) == 2")
    assert judge(split, report(1, 2))
    assert not judge(split, report(1))  # the program stopped the harness before the second probe
    assert not judge(split, b"")  # no report at all
    assert not judge(split, b'[["v", 1], ["v", 2]')  # cut off
    assert not judge(split, report(raw=[["v", 1], ["x"]]))  # the second call raised
    assert not judge(split, report(raw=[["v", 1], ["u", "_ANY"]]))  # not plain data
    assert not judge(split, report(raw=[["v", 1], ["v", ["q", 2]]]))  # an unknown tag
    assert not judge(split, report(raw={"v": 1}))


def test_a_raising_probe_fails_only_the_checks_that_need_it():
    split = split_test("assert f(1) == 1 or g() == 2")
    assert judge(split, report(raw=[["v", 1], ["x"]]))  # `or` never needs g() when f(1) == 1
    assert not judge(split, report(raw=[["v", 0], ["x"]]))


def test_decoding_is_strict():
    assert decode_report(report(["s", 1, 2]), 1) == [["v", {1, 2}]]
    assert decode_report(report(["s", ["l", 1]]), 1)[0][0] == "u"  # a list in a set: unhashable
    assert decode_report(report(["f", 1]), 1) == [["v", frozenset({1})]]
    deep = 0
    for _ in range(300):
        deep = ["l", deep]
    assert decode_report(report(deep), 1)[0][0] == "u"  # nested past MAX_DEPTH
    assert decode_report(b"not json", 1) is None
    assert decode_report(report(1, 2, 3), 2) == [["v", 1], ["v", 2]]  # extra entries are ignored


@pytest.mark.parametrize(
    "test, reason",
    [
        ("try:\n    f(0)\n    assert False\nexcept ValueError:\n    pass", "Try"),
        ("import random\nassert f(random.random()) < 1", "import random"),
        ("if f(1) > 0:\n    assert g(1) == 2", "an if on the program's output"),
        ("for x in f(3):\n    assert x > 0", "a loop over a value the program computes"),
        ("assert midpoint(Point(0, 0), Point(4, 6)) == Point(2, 3)", "two of the program's values"),
        ("assert eval('f(1)') == 1", "builtin 'eval'"),
        ("assert list(map(f, [1, 2])) == [2, 3]", "map, filter or key="),
        ("acc = []\nacc.append(f(1))\nassert acc == [1]", "a container the test changes"),
        ("assert f(f(1) + 1) == 3", "computed from the program's output is passed back"),
    ],
)
def test_tests_that_cannot_be_split_say_why(test, reason):
    with pytest.raises(Unsplittable, match=reason):
        split_test(test)


@pytest.mark.parametrize(
    "test, reason",
    [
        ("assert f(1 == 1", "does not compile"),
        ("f(1)", "asserts nothing"),
        ("x = 1", "asserts nothing"),
        ("def check(candidate):\n    assert candidate(1) == 2", "no assert runs"),  # HumanEval without its call
        ("for x in []:\n    assert f(x) == x", "no assert runs"),
    ],
)
def test_malformed_tests(test, reason):
    with pytest.raises(MalformedTest, match=reason):
        split_test(test)


@pytest.mark.parametrize(
    "test, reason",
    [
        ("assert 1 == 2\nassert f(1) == 1", "asserts something false on its own values \\(line 1\\)"),
        ("x = 1 / 0\nassert f(1) == 1", "raises ZeroDivisionError"),
        ("assert f(1) == 1\nassert [1][2] == f(2)", "raises IndexError"),
    ],
)
def test_a_test_that_fails_whatever_the_program_does_is_malformed(test, reason):
    with pytest.raises(MalformedTest, match=reason):
        split_test(test)


@pytest.mark.parametrize(
    "test, answer",
    [
        ("assert 2 ** f() > 0", 10**9),  # a power of more than 4 Mbit
        ("assert 'x' * f() != ''", 10**9),  # a repetition of more than 10 M items
        ("assert len(range(f())) > 0", 10**12),
        ("assert 1 << f() > 0", 10**9),
        ("import math\nassert math.factorial(f()) > 0", 10**7),
    ],
)
def test_values_from_the_program_cannot_make_the_judge_spend_unbounded_time(test, answer):
    assert not judge(split_test(test), report(answer))


def test_the_checks_see_the_tests_values_as_they_were_when_checked():
    split = split_test("xs = [1, 2]\nassert f() == xs\nxs.append(3)")
    assert judge(split, report(["l", 1, 2]))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        -3,
        2**80,
        0.1,
        float("nan"),
        "é\n'",
        b"\x00\xff",
        (1,),
        (),
        [1, [2]],
        {1: "a", (2, 3): None},
        {1, 2},
        set(),
        frozenset({1}),
        frozenset(),
        1 - 2j,
    ],
)
def test_literals_rebuild_the_value(value):
    rebuilt = eval(literal(value))
    assert type(rebuilt) is type(value)
    assert rebuilt == value or value != value  # nan
