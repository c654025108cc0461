import pytest

from dllm.data.layouts import LAYOUTS, detect_layout, gsm8k_answer
from dllm.errors import ConfigError


def convert(layout, values, record=None):
    full = {role: None for role in LAYOUTS[layout].roles} | values
    return LAYOUTS[layout].convert(full, record or {})


@pytest.mark.parametrize(
    "record, layout",
    [
        ({"question": "q", "ground_truth_answer": "3"}, "tracerl_math"),
        ({"question": "q", "test_method": "stdio", "test_input": ["1"], "test_output": ["1"]}, "tracerl_code"),
        ({"question": "q", "test_list": ["assert f()"]}, "tracerl_code"),
        ({"question": "q", "answer": "so 3.\n#### 3"}, "gsm8k"),
        ({"problem": "p", "solution": "\\boxed{3}"}, "math"),
        ({"problem": "p", "answer": "3", "solution": "s", "level": 2}, "math"),
        ({"nums": [1, 2, 3], "target": 6}, "countdown"),
        ({"input": "30,100,93", "output": "23"}, "countdown"),
        ({"Puzzle": "0" * 16, "Solution": "1" * 16}, "sudoku"),
        ({"prompt": "1+1=", "answer": "2"}, "plain"),
        ({"question": "q", "answer": "no hashes"}, "plain"),  # not GSM8K: no "####"
        ({"input": "some text", "output": "more"}, None),  # not d1's countdown test file
    ],
)
def test_auto_detection_by_the_first_records_fields(record, layout):
    if layout is None:
        with pytest.raises(ConfigError, match=r"cannot tell the layout of f.jsonl .* set task.layout"):
            detect_layout(record, {}, "f.jsonl")
    else:
        assert detect_layout(record, {}, "f.jsonl").name == layout


def test_a_mapped_field_counts_for_detection():
    assert detect_layout({"q": "x", "gt": "3"}, {"question": "q"}, "f").name == "plain"


def test_gsm8k_answers_are_the_number_after_the_last_marker():
    assert gsm8k_answer("so 2,280 dollars.\n#### 2,280") == "2280"
    assert gsm8k_answer("#### 7.") == "7" and gsm8k_answer(" 42 ") == "42"
    converted = convert("gsm8k", {"question": "q", "answer": "6 * 7 = 42\n#### 42"})
    assert converted.fields == {"answer": "42"} and converted.response == "6 * 7 = 42\n#### 42"


def test_math_answers_come_from_the_answer_field_else_the_last_box():
    assert convert("math", {"question": "p", "solution": "a \\boxed{1} then \\boxed{\\frac{3}{4}}"}).fields == {
        "answer": "\\frac{3}{4}"
    }
    assert convert("math", {"question": "p", "answer": "5", "solution": "\\boxed{6}"}).fields == {"answer": "5"}
    with pytest.raises(ConfigError, match=r"no answer field and its solution has no \\boxed"):
        convert("math", {"question": "p", "solution": "no box"})


def test_tracerl_code_builds_assert_or_stdio_tests():
    function = convert("tracerl_code", {"question": "q", "test_list": ["assert f(1) == 2"], "time_limit": 1})
    assert function.fields == {"tests": ["assert f(1) == 2"], "time_limit": 1.0}
    assert "```python" in function.extras["code_instruction"]
    stdio = convert(
        "tracerl_code",
        {"question": "q", "test_method": "stdio", "test_input": ["1\n", "2\n"], "test_output": ["2\n", "4\n"]},
    )
    assert stdio.fields == {
        "tests": [{"input": "1\n", "output": "2\n"}, {"input": "2\n", "output": "4\n"}],
        "time_limit": None,
    }
    assert "input()" in stdio.extras["code_instruction"]
    with pytest.raises(ConfigError, match="test_input has 2 cases but test_output 1"):
        convert(
            "tracerl_code", {"question": "q", "test_method": "stdio", "test_input": ["1", "2"], "test_output": ["2"]}
        )
    with pytest.raises(ConfigError, match="test_method='exec'"):
        convert("tracerl_code", {"question": "q", "test_method": "exec"})


def test_countdown_reads_lists_or_comma_separated_text():
    assert convert("countdown", {"numbers": [3, 5.0, "7"], "target": 22}).fields == {"numbers": [3, 5, 7], "target": 22}
    assert convert("countdown", {"numbers": "30, 100,93", "target": "23"}).fields == {
        "numbers": [30, 100, 93],
        "target": 23,
    }
    with pytest.raises(ConfigError, match=r"target='x' is not an integer"):
        convert("countdown", {"numbers": [1, 2], "target": "x"})


def test_sudoku_grids_must_have_16_cells():
    converted = convert("sudoku", {"puzzle": "0401020001030310", "solution": "3421123421434312"})
    assert converted.fields == {"puzzle": "0401020001030310", "solution": "3421123421434312"}
    assert converted.response == "3421123421434312" and converted.question is None
    with pytest.raises(ConfigError, match=r"puzzle='123' must be 16 characters"):
        convert("sudoku", {"puzzle": "123", "solution": "1" * 16})
