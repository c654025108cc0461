"""Evaluate a test's Python expressions in the trusted process, over plain values only.

The code reward judges a function test outside the sandbox (`checks`): the sandbox
returns, as plain data, the values the test needs from the candidate program, and the
test's own logic (comparisons, `abs`, `sorted`, `math.isclose`, loops, local variables)
runs here. This module is that evaluator: a small interpreter of Python expressions that
knows only plain values (None, bool, int, float, str, bytes, list, tuple, dict, set,
frozenset), a whitelist of builtins, the `math` and `copy` modules, and the test's own
lambdas, and never calls code the program wrote.

A value the program computes is not known while the test is first walked: it is a
`Deferred`, and every operation on one is deferred too, building the check that the
sandbox's answers decide later (`force`). Sizes are bounded where an operation on a
value from the program could make this process spend unbounded time or memory (powers,
shifts, repetition, ranges).
"""

from __future__ import annotations

import ast
import builtins
import copy
import math
import operator
from collections.abc import Callable, Iterator
from typing import Any

PLAIN = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)
MAX_BITS = 1 << 22  # a power or shift past ~4 Mbit (1.2 M decimal digits) is refused
MAX_ITEMS = 10_000_000  # a repeated sequence or a range longer than this is refused


class Unsplittable(Exception):
    """The test cannot be judged outside the sandbox (the reason says why)."""


class MalformedTest(ValueError):
    """The test itself is broken: no program's score can depend on it."""


class Deferred:
    """A value that the sandbox's answers decide: `compute(answers)` gives it."""

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        self.compute = compute


class ProbeValue(Deferred):
    """What probe `index` (an expression the sandbox evaluates) returned."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        super().__init__(lambda answers: answers.value(index))
        self.index = index


class Program:
    """Something the program defines (a name, or an attribute of one): only the sandbox
    can touch it. `source` is how the sandbox spells it."""

    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source


def force(value: Any, answers: Any) -> Any:
    return value.compute(answers) if isinstance(value, Deferred) else value


def deferred(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` now, or, when an argument is deferred, once it is known.
    Mutable plain arguments are copied: the test may change them before the check runs."""
    if not any(isinstance(a, Deferred) for a in (*args, *kwargs.values())):
        return function(*args, **kwargs)
    args = tuple(_frozen(a) for a in args)
    kwargs = {k: _frozen(v) for k, v in kwargs.items()}
    return Deferred(
        lambda answers: function(
            *(force(a, answers) for a in args), **{k: force(v, answers) for k, v in kwargs.items()}
        )
    )


def _frozen(value: Any) -> Any:
    return copy.deepcopy(value) if type(value) in (list, dict, set) else value


# --- guarded operations ----------------------------------------------------------------


def _too_long(sequence: Any, times: Any) -> bool:
    return (
        type(times) in (int, bool)
        and isinstance(sequence, (str, bytes, list, tuple))
        and len(sequence) * times > MAX_ITEMS
    )


def _mul(a: Any, b: Any) -> Any:
    if _too_long(a, b) or _too_long(b, a):
        raise MemoryError("a repetition longer than 10 million items")
    return a * b


def _pow(a: Any, b: Any, modulo: Any = None) -> Any:
    integers = type(a) in (int, bool) and type(b) in (int, bool)
    if modulo is None and integers and b > 0 and abs(a) > 1 and a.bit_length() * b > MAX_BITS:
        raise MemoryError("a power of more than 4 million bits")
    return pow(a, b) if modulo is None else pow(a, b, modulo)


def _lshift(a: Any, b: Any) -> Any:
    if type(b) in (int, bool) and b > MAX_BITS:
        raise MemoryError("a shift of more than 4 million bits")
    return a << b


def _range(*args: Any) -> range:
    result = range(*args)
    if len(result) > MAX_ITEMS:
        raise MemoryError("a range of more than 10 million items")
    return result


def _bounded_int(function: Callable[..., Any], limit: int = 100_000) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        if any(type(a) is int and a > limit for a in args):
            raise MemoryError(f"{function.__name__} of a number above {limit}")
        return function(*args)

    return call


BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow, ast.LShift: _lshift,
    ast.RShift: operator.rshift, ast.BitOr: operator.or_, ast.BitXor: operator.xor, ast.BitAnd: operator.and_,
}  # fmt: skip
UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}
COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip


def _no_print(*args: Any, **kwargs: Any) -> None:
    return None  # a test's debugging output has nowhere to go


_BUILTIN_NAMES = """abs all any bin bool chr dict divmod enumerate filter float frozenset hex int isinstance len
list map max min oct ord repr reversed round set sorted str sum tuple type zip ValueError TypeError"""
SAFE_BUILTINS: dict[str, Any] = {name: getattr(builtins, name) for name in _BUILTIN_NAMES.split()}
SAFE_BUILTINS.update(pow=_pow, range=_range, print=_no_print)

_MATH_NAMES = """isclose fabs sqrt isqrt floor ceil trunc isnan isinf isfinite log log2 log10 exp sin cos tan asin
acos atan atan2 hypot gcd lcm fsum prod copysign degrees radians dist pi e tau inf nan"""
_MATH = {name: getattr(math, name) for name in _MATH_NAMES.split()}
_MATH.update(factorial=_bounded_int(math.factorial), comb=_bounded_int(math.comb), perm=_bounded_int(math.perm))
MODULES: dict[str, dict[str, Any]] = {"math": _MATH, "copy": {"copy": copy.copy, "deepcopy": copy.deepcopy}}


class Module:
    """A module the test may use: only its whitelisted names."""

    __slots__ = ("name", "names")

    def __init__(self, name: str) -> None:
        self.name, self.names = name, MODULES[name]


def plain_attribute(value: Any, name: str) -> Any:
    """`value.name` for a module or a plain value's public method (C code of a built-in type)."""
    if isinstance(value, Module):
        if name not in value.names:
            raise Unsplittable(f"{value.name}.{name} is not available to tests judged outside the sandbox")
        return value.names[name]
    if type(value) in PLAIN and not name.startswith("_"):
        return getattr(value, name)
    raise Unsplittable(f"attribute {name!r} of a {type(value).__name__}")


def literal(value: Any, depth: int = 0) -> str:
    """Python source that rebuilds a plain `value` in the sandbox."""
    kind = type(value)
    if depth > 100:
        raise Unsplittable("a value nested more than 100 deep passed to the program")
    if kind is float and not math.isfinite(value):
        return f"float({str(value)!r})"
    if kind is int and value.bit_length() > 10_000:  # decimal text of big ints is capped; hex is not
        return f"({'-' if value < 0 else ''}{hex(abs(value))})"
    if kind is complex:
        return f"complex({literal(value.real)}, {literal(value.imag)})"
    if kind in (type(None), bool, int, float, str, bytes):
        return repr(value)
    if kind is dict:
        items = [f"{literal(k, depth + 1)}: {literal(v, depth + 1)}" for k, v in value.items()]
    elif kind in (list, tuple, set, frozenset):
        items = [literal(v, depth + 1) for v in value]
    if kind is list:
        return f"[{', '.join(items)}]"
    if kind is tuple:
        return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
    if kind is dict:
        return f"{{{', '.join(items)}}}"
    if kind in (set, frozenset):
        inner = f"{{{', '.join(items)}}}" if items else ""
        return f"{kind.__name__}({inner})"
    if callable(value) and getattr(builtins, getattr(value, "__name__", ""), None) is value:
        return value.__name__  # e.g. `candidate(int)`: the builtin type itself
    raise Unsplittable(f"a {kind.__name__} passed to the program")


def iterate(value: Any) -> Iterator[Any]:
    if isinstance(value, (Deferred, Program)):
        raise Unsplittable("a loop over a value the program computes")
    return iter(value)
