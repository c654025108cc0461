"""Record layouts: how the fields of a file's records become a prompt, an SFT response and
the fields rewards read.

A layout names *roles* (`question`, `answer`, `tests`, ...) and, for each, the record fields
it is read from by default (the first one present). `task.fields.ROLE=FIELD` reads a role
from another field. The layouts cover the files users already have:

- `tracerl_math` (TraceRL, Gen-Verse/dLLM-RL): `question`, `ground_truth_answer` -> `answer`.
- `tracerl_code` (TraceRL): `question`, `test_method` (`function` or `stdio`; default function),
  `test_list` (asserts, function) or `test_input` / `test_output` (stdio), `test_time_limit`
  -> `tests` (asserts, or `{"input", "output"}` cases) and `time_limit`.
- `gsm8k` (d1, GSM8K): `question`, `answer` (a solution ending in `#### N`) -> `answer` (N);
  the whole solution is the SFT response.
- `math` (d1, MATH / MATH-500): `problem`, `answer` or else the last `\\boxed{}` of `solution`
  -> `answer`; the solution is the SFT response.
- `countdown` (d1): `nums`, `target` (training files) or `input` `"30,100,93"`, `output` `"23"`
  (d1's test file) -> `numbers` (list of int), `target` (int).
- `sudoku` (d1): `Puzzle`, `Solution` (16 digits row by row, `0` for a blank) -> `puzzle`, `solution`.
- `plain` (dllm): `prompt` (or `question`, `problem`), optional `response`; every other field
  reaches rewards as is (`answer`, `tests`, ...), and `answer` is the SFT response when there is
  no `response`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dllm.data.prompts import as_text as _text
from dllm.errors import ConfigError
from dllm.text import last_boxed

MATH_TEMPLATE = "{question}\n\nReason step by step, then put the final answer in \\boxed{}."
CODE_TEMPLATE = "{question}\n\n{code_instruction}"
FUNCTION_INSTRUCTION = "Write the solution in Python, in a single ```python code block."
STDIO_INSTRUCTION = (
    "Write the solution as a Python program in a single ```python code block; it reads the input with input() "
    "and prints the output."
)
COUNTDOWN_TEMPLATE = (
    "Using the numbers {numbers}, write an arithmetic expression that equals {target}. Use each number exactly "
    "once, with + - * / and parentheses. Answer with the expression alone."
)
SUDOKU_TEMPLATE = (
    "Solve this 4x4 sudoku. The puzzle is 16 digits, row by row, 0 for an empty cell: {puzzle}\n"
    "Each row, column and 2x2 box holds the digits 1-4 once. Answer with the 16 digits of the solved grid."
)
_COUNTDOWN_INPUT = re.compile(r"^\s*\d+(\s*,\s*\d+)+\s*$")


class MissingRole(ConfigError):
    """A record lacks the field a role is read from; `role` names it."""

    def __init__(self, role: str, candidates: tuple[str, ...]) -> None:
        self.role, self.candidates = role, candidates
        super().__init__(role)


@dataclass(frozen=True)
class Converted:
    """One record, converted: `question` (None when the template builds the prompt from the
    fields alone), the SFT `response`, the reward `fields`, and `extras` for the template."""

    question: str | None
    response: str
    fields: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)


RoleValues = Mapping[str, Any]  # role -> value read from the record (None when absent)


@dataclass(frozen=True)
class Layout:
    """`roles`: role -> record fields it is read from by default (the first present);
    `required`: roles every record must have; `convert(values, record)` builds the example;
    `matches(record)`: whether `layout=auto` picks this layout for a file whose first
    record is `record`; `template`: the default prompt template."""

    name: str
    roles: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    convert: Callable[[RoleValues, Mapping[str, Any]], Converted]
    matches: Callable[[Mapping[str, Any]], bool]
    template: str = "{question}"
    passthrough: bool = False  # plain: every record field that is no role is a reward field


def _integer(value: Any, role: str) -> int:
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, bool) or int(number) != number:
            raise ValueError
        return int(number)
    except (TypeError, ValueError):
        raise ConfigError(f"{role}={value!r} is not an integer") from None


def gsm8k_answer(solution: Any) -> str:
    """The number after the last `####` of a GSM8K solution, thousands separators removed;
    the whole text (stripped) when it has no `####`."""
    text = _text(solution)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return text.strip().replace(",", "").rstrip(".")


def _plain(values: RoleValues, record: Mapping[str, Any]) -> Converted:
    # The SFT target: `response`, else the answer itself (the `answer` field still reaches rewards).
    return Converted(_text(values["question"]), _text(values.get("response")) or _text(record.get("answer")), {})


def _tracerl_math(values: RoleValues, record: Mapping[str, Any]) -> Converted:
    answer = _text(values["answer"])
    return Converted(_text(values["question"]), _text(values.get("response")) or answer, {"answer": answer})


def _tracerl_code(values: RoleValues, record: Mapping[str, Any]) -> Converted:
    method = _text(values.get("test_method")) or "function"  # TraceRL's default
    if method == "function":
        if values.get("test_list") is None:
            raise MissingRole("test_list", ())
        tests: list[Any] = [_text(test) for test in values["test_list"]]
        instruction = FUNCTION_INSTRUCTION
    elif method == "stdio":
        for role in ("test_input", "test_output"):
            if values.get(role) is None:
                raise MissingRole(role, ())
        inputs, outputs = list(values["test_input"]), list(values["test_output"])
        if len(inputs) != len(outputs):
            raise ConfigError(f"test_input has {len(inputs)} cases but test_output {len(outputs)}; they pair up")
        tests = [{"input": _text(i), "output": _text(o)} for i, o in zip(inputs, outputs)]
        instruction = STDIO_INSTRUCTION
    else:
        raise ConfigError(f"test_method={method!r}: TraceRL's code records use 'function' or 'stdio'")
    if not tests:
        raise ConfigError("the record has no tests")
    time_limit = values.get("time_limit")
    return Converted(
        _text(values["question"]),
        _text(values.get("response")),
        {"tests": tests, "time_limit": None if time_limit is None else float(time_limit)},
        {"code_instruction": instruction},
    )


def _gsm8k(values: RoleValues, record: Mapping[str, Any]) -> Converted:
    solution = _text(values["answer"])
    return Converted(
        _text(values["question"]), _text(values.get("response")) or solution, {"answer": gsm8k_answer(solution)}
    )


def _math(values: RoleValues, record: Mapping[str, Any]) -> Converted:
    solution = values.get("solution")
    answer = values.get("answer")
    if answer is None:
        if solution is None:
            raise MissingRole("answer", ("answer", "solution"))
        answer = last_boxed(_text(solution))
        if answer is None:
            raise ConfigError("the record has no answer field and its solution has no \\boxed{} answer")
    answer = _text(answer).strip()
    return Converted(_text(values["question"]), _text(values.get("response") or solution) or answer, {"answer": answer})


def _countdown(values: RoleValues, record: Mapping[str, Any]) -> Converted:
    raw = values["numbers"]
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    numbers = [_integer(item, "numbers") for item in items]
    target = _integer(values["target"], "target")
    return Converted(None, _text(values.get("response")), {"numbers": numbers, "target": target})


def _sudoku(values: RoleValues, record: Mapping[str, Any]) -> Converted:
    puzzle, solution = _text(values["puzzle"]).strip(), _text(values["solution"]).strip()
    for role, grid in (("puzzle", puzzle), ("solution", solution)):
        if len(grid) != 16:
            raise ConfigError(f"{role}={grid!r} must be 16 characters, row by row")
    return Converted(None, _text(values.get("response")) or solution, {"puzzle": puzzle, "solution": solution})


def _has(record: Mapping[str, Any], *names: str) -> bool:
    return all(record.get(name) is not None for name in names)


def _is_countdown(record: Mapping[str, Any]) -> bool:
    if _has(record, "nums", "target"):
        return True
    # d1's countdown test file: {"input": "30,100,93", "output": "23"} and nothing else
    return set(record) == {"input", "output"} and bool(_COUNTDOWN_INPUT.match(_text(record["input"])))


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "tracerl_code",
            {
                "question": ("question",),
                "response": (),
                "test_method": ("test_method",),
                "test_list": ("test_list",),
                "test_input": ("test_input",),
                "test_output": ("test_output",),
                "time_limit": ("test_time_limit",),
            },
            ("question",),
            _tracerl_code,
            lambda r: _has(r, "question") and (_has(r, "test_method") or _has(r, "test_list") or _has(r, "test_input")),
            CODE_TEMPLATE,
        ),
        Layout(
            "tracerl_math",
            {"question": ("question",), "answer": ("ground_truth_answer",), "response": ()},
            ("question", "answer"),
            _tracerl_math,
            lambda r: _has(r, "question", "ground_truth_answer"),
            MATH_TEMPLATE,
        ),
        Layout(
            "gsm8k",
            {"question": ("question",), "answer": ("answer",), "response": ()},
            ("question", "answer"),
            _gsm8k,
            lambda r: _has(r, "question", "answer") and "####" in _text(r["answer"]),
            MATH_TEMPLATE,
        ),
        Layout(
            "math",
            {"question": ("problem",), "answer": ("answer",), "solution": ("solution",), "response": ()},
            ("question",),
            _math,
            lambda r: _has(r, "problem") and (_has(r, "answer") or _has(r, "solution")),
            MATH_TEMPLATE,
        ),
        Layout(
            "countdown",
            {"numbers": ("nums", "numbers", "input"), "target": ("target", "output"), "response": ()},
            ("numbers", "target"),
            _countdown,
            _is_countdown,
            COUNTDOWN_TEMPLATE,
        ),
        Layout(
            "sudoku",
            {"puzzle": ("Puzzle", "puzzle"), "solution": ("Solution", "solution"), "response": ()},
            ("puzzle", "solution"),
            _sudoku,
            lambda r: _has(r, "Puzzle", "Solution") or _has(r, "puzzle", "solution"),
            SUDOKU_TEMPLATE,
        ),
        Layout(
            "plain",
            {"question": ("prompt", "question", "problem"), "response": ("response", "completion")},
            ("question",),
            _plain,
            lambda r: any(_has(r, name) for name in ("prompt", "question", "problem")),
            passthrough=True,
        ),
    )
}
LAYOUT_NAMES = ("auto", *LAYOUTS)


def detect_layout(record: Mapping[str, Any], mapped: Mapping[str, str], where: str) -> Layout:
    """The first layout (in `LAYOUTS` order, `plain` last) that matches `record`, the first
    record of a file; fields renamed with `task.fields` count under their role's default name."""
    view = dict(record)
    for role, name in mapped.items():  # e.g. fields.question=q: the record reads as if it had "question"
        if name in record:
            view.setdefault(role, record[name])
    for layout in LAYOUTS.values():
        if layout.matches(view):
            return layout
    raise ConfigError(
        f"cannot tell the layout of {where} from its fields ({', '.join(sorted(record)) or 'none'}); set "
        f"task.layout to one of {', '.join(LAYOUTS)}, or name the prompt field with task.fields.question=FIELD "
        "(layout plain)"
    )
