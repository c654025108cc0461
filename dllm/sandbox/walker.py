"""The walker behind `checks.split_test`: a small interpreter of a test's Python.

It runs the test's statements and expressions here, in the trusted process, over plain
values (`trusted_eval`). A value of the program's is a `Program` (a name it defines) or a
`ProbeValue` (what a probe returned): calling one, or reading its attribute, records a probe
for the sandbox; using one here (comparing it, summing it) marks the probe's value to be sent
back and defers the operation to `judge` time. Control flow that would depend on the
program's output, and anything outside the whitelist, raises `Unsplittable`.
"""

from __future__ import annotations

import ast
import builtins
import functools
from typing import Any

from dllm.sandbox.trusted_eval import (
    BINARY,
    COMPARE,
    MODULES,
    SAFE_BUILTINS,
    UNARY,
    Deferred,
    MalformedTest,
    Module,
    ProbeValue,
    Program,
    Unsplittable,
    deferred,
    force,
    iterate,
    literal,
    plain_attribute,
)

MAX_PROBES = 10_000
MAX_STEPS = 2_000_000  # expression nodes evaluated while walking one test
PROBE_PREFIX = "__dllm_probe_"
# Methods that change the list, dict or set they belong to.
_MUTATORS = frozenset(
    (
        "append",
        "extend",
        "insert",
        "remove",
        "pop",
        "clear",
        "sort",
        "reverse",
        "add",
        "update",
        "discard",
        "setdefault",
    )
)


_MUTABLE = (list, dict, set)
_OWN = (Program, ProbeValue)
_CONVERTERS = frozenset(
    ("list", "tuple", "set", "frozenset", "sorted", "sum", "len", "min", "max", "any", "all", "dict", "str", "repr")
)


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Scope:
    def __init__(self, parent: _Scope | None = None) -> None:
        self.names: dict[str, Any] = {}
        self.parent = parent

    def find(self, name: str) -> tuple[bool, Any]:
        owner = self.owner(name)
        return (False, None) if owner is None else (True, owner.names[name])

    def owner(self, name: str) -> _Scope | None:
        scope: _Scope | None = self
        while scope is not None and name not in scope.names:
            scope = scope.parent
        return scope


class _TestFunction:
    """A function or lambda the test defines, run by the walker."""

    def __init__(self, walker: Walker, node: ast.FunctionDef | ast.Lambda, scope: _Scope) -> None:
        args = node.args
        if args.vararg or args.kwarg or args.posonlyargs or getattr(node, "decorator_list", None):
            raise Unsplittable("a test function with *args, **kwargs, / or decorators")
        self.walker, self.node, self.scope = walker, node, scope
        self.names = [a.arg for a in args.args] + [a.arg for a in args.kwonlyargs]
        defaults = [walker.eval(d, scope) for d in args.defaults]
        self.defaults = dict(zip([a.arg for a in args.args][len(args.args) - len(defaults) :], defaults))
        self.defaults |= {a.arg: walker.eval(d, scope) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d}
        bound = set(self.names) | {
            n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        free = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound
        self.uses_program = any(isinstance(walker.lookup(name, scope), Program) for name in free)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) > len(self.names):
            raise TypeError(f"{len(args)} arguments for {len(self.names)} parameters")
        scope = _Scope(self.scope)
        scope.names = {**self.defaults, **dict(zip(self.names, args)), **kwargs}
        missing = [name for name in self.names if name not in scope.names]
        if missing:
            raise TypeError(f"missing arguments {missing}")
        if isinstance(self.node, ast.Lambda):
            return self.walker.eval(self.node.body, scope)
        try:
            self.walker.block(self.node.body, scope)
        except _Return as result:
            return result.value
        return None


class Walker:
    """Runs the test's statements here; program values become probes, asserts become checks."""

    def __init__(self) -> None:
        self.probes: list[str] = []
        self.sent: set[int] = set()
        self.checks: list[Any] = []
        self.asserts_run = 0
        self.steps = 0
        self.recording = True
        self.last_call = -1  # the last probe that ran the program's code (it may change earlier values)

    def run(self, body: list[ast.stmt]) -> None:
        """Walk the test; raises MalformedTest where it fails whatever the program does."""
        try:
            self.block(body, _Scope())
        except (_Return, _Break, _Continue):
            raise Unsplittable("return, break or continue outside their place") from None
        except (Unsplittable, MalformedTest, RecursionError):
            raise
        except Exception as exc:  # on the test's own values: what the program returns is deferred
            raise MalformedTest(f"raises {type(exc).__name__} ({exc}) on its own values") from None
        finally:
            self.recording = False  # a probe asked for while judging has no answer

    # --- values -----------------------------------------------------------------------

    def lookup(self, name: str, scope: _Scope) -> Any:
        found, value = scope.find(name)
        if found:
            return value
        if name in SAFE_BUILTINS:
            return SAFE_BUILTINS[name]
        if name in MODULES:  # `math.isclose` in an MBPP assert: the program imported it
            return Module(name)
        if hasattr(builtins, name):
            raise Unsplittable(f"the builtin {name!r} is not available to tests judged outside the sandbox")
        return Program(name)

    def probe(self, source: str, call: bool = True) -> ProbeValue:
        """A new probe; `call=False` for one that only reads a value (runs no program code)."""
        if not self.recording:
            raise Unsplittable("the program is called while judging")
        if len(self.probes) >= MAX_PROBES:
            raise Unsplittable(f"more than {MAX_PROBES} calls of the program")
        self.probes.append(source)
        if call:
            self.last_call = len(self.probes) - 1
        return ProbeValue(len(self.probes) - 1)

    def value(self, value: Any) -> Any:
        """`value` for use here: a program's name becomes a probe whose value comes back; a
        result the program may have changed since (a later call ran) is read again."""
        if isinstance(value, Program):
            value = self.probe(value.source)
        if isinstance(value, ProbeValue) and value.index < self.last_call:
            value = self.probe(f"{PROBE_PREFIX}{value.index}", call=False)
        if isinstance(value, ProbeValue):
            self.sent.add(value.index)
        if isinstance(value, _TestFunction) and value.uses_program:
            raise Unsplittable("a test function that calls the program, passed to another function")
        return value

    def lift(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        args = tuple(self.value(a) for a in args)
        kwargs = {k: self.value(v) for k, v in kwargs.items()}
        return deferred(function, *args, **kwargs)

    def source(self, value: Any) -> str:
        """How the sandbox spells `value`, an argument passed to the program."""
        if isinstance(value, ProbeValue):
            return f"{PROBE_PREFIX}{value.index}"
        if isinstance(value, Program):
            return value.source
        if isinstance(value, Deferred):
            raise Unsplittable("a value computed from the program's output is passed back to it")
        if isinstance(value, (Module, _TestFunction)):
            raise Unsplittable("a module or a test function passed to the program")
        return literal(value)

    # --- expressions ------------------------------------------------------------------

    def eval(self, node: ast.expr, scope: _Scope) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Unsplittable(f"more than {MAX_STEPS} steps to walk")
        handler = getattr(self, f"_{type(node).__name__}", None)
        if handler is None:
            raise Unsplittable(f"{type(node).__name__} expressions")
        return handler(node, scope)

    def _Constant(self, node: ast.Constant, scope: _Scope) -> Any:
        return node.value

    def _Name(self, node: ast.Name, scope: _Scope) -> Any:
        return self.lookup(node.id, scope)

    def _items(self, nodes: list[ast.expr], scope: _Scope) -> tuple[list[Any], list[bool]]:
        values, starred = [], []
        for node in nodes:
            star = isinstance(node, ast.Starred)
            values.append(self.eval(node.value if star else node, scope))
            starred.append(star)
        return values, starred

    def _display(self, kind: type, nodes: list[ast.expr], scope: _Scope) -> Any:
        values, starred = self._items(nodes, scope)

        def build(*items: Any) -> Any:
            flat: list[Any] = []
            for item, star in zip(items, starred):
                flat.extend(item) if star else flat.append(item)
            return kind(flat)

        return self.lift(build, *values)

    def _List(self, node: ast.List, scope: _Scope) -> Any:
        return self._display(list, node.elts, scope)

    def _Tuple(self, node: ast.Tuple, scope: _Scope) -> Any:
        return self._display(tuple, node.elts, scope)

    def _Set(self, node: ast.Set, scope: _Scope) -> Any:
        return self._display(set, node.elts, scope)

    def _Dict(self, node: ast.Dict, scope: _Scope) -> Any:
        keys = [None if k is None else self.eval(k, scope) for k in node.keys]
        values = [self.eval(v, scope) for v in node.values]
        spread = [k is None for k in node.keys]

        def build(*items: Any) -> dict:
            result: dict = {}
            for i, is_spread in enumerate(spread):
                result.update(items[2 * i + 1]) if is_spread else result.__setitem__(items[2 * i], items[2 * i + 1])
            return result

        return self.lift(build, *[x for pair in zip(keys, values) for x in pair])

    def _BinOp(self, node: ast.BinOp, scope: _Scope) -> Any:
        operation = BINARY.get(type(node.op))
        if operation is None:
            raise Unsplittable(f"the operator {type(node.op).__name__}")
        return self.lift(operation, self.eval(node.left, scope), self.eval(node.right, scope))

    def _UnaryOp(self, node: ast.UnaryOp, scope: _Scope) -> Any:
        return self.lift(UNARY[type(node.op)], self.eval(node.operand, scope))

    def _Compare(self, node: ast.Compare, scope: _Scope) -> Any:
        operations = [COMPARE[type(op)] for op in node.ops]
        values = [self.eval(node.left, scope)] + [self.eval(c, scope) for c in node.comparators]
        if any(isinstance(a, _OWN) and isinstance(b, _OWN) for a, b in zip(values, values[1:])):
            # `midpoint(p, q) == Point(2, 3)`: the program's objects, equal by its own rules
            raise Unsplittable("a comparison of two of the program's values")

        def chain(*operands: Any) -> bool:
            return all(op(a, b) for op, a, b in zip(operations, operands, operands[1:]))

        return self.lift(chain, *values)

    def _later(self, node: ast.expr, scope: _Scope) -> Any:
        """`node` evaluated now, for a branch that only the sandbox's answers decide: an error
        here is raised only if that branch is taken."""
        try:
            return self.value(self.eval(node, scope))
        except (Unsplittable, MalformedTest):
            raise
        except Exception as exc:
            return Deferred(functools.partial(_raise, exc))

    def _BoolOp(self, node: ast.BoolOp, scope: _Scope) -> Any:
        is_and = isinstance(node.op, ast.And)
        first = self.value(self.eval(node.values[0], scope))
        rest = node.values[1:]
        while not isinstance(first, Deferred) and rest:
            if bool(first) != is_and:
                return first
            first, rest = self.value(self.eval(rest[0], scope)), rest[1:]
        if not rest:
            return first
        later = [self._later(n, scope) for n in rest]

        def decide(answers: Any) -> Any:
            value = force(first, answers)
            for item in later:
                if bool(value) != is_and:
                    return value
                value = force(item, answers)
            return value

        return Deferred(decide)

    def _IfExp(self, node: ast.IfExp, scope: _Scope) -> Any:
        test = self.value(self.eval(node.test, scope))
        if not isinstance(test, Deferred):
            return self.eval(node.body if test else node.orelse, scope)
        body, orelse = self._later(node.body, scope), self._later(node.orelse, scope)
        return Deferred(lambda answers: force(body if force(test, answers) else orelse, answers))

    def _Attribute(self, node: ast.Attribute, scope: _Scope) -> Any:
        base = self.eval(node.value, scope)
        if isinstance(base, Program):
            return Program(f"{base.source}.{node.attr}")
        if isinstance(base, ProbeValue):
            return Program(f"{PROBE_PREFIX}{base.index}.{node.attr}")
        return self.lift(plain_attribute, base, node.attr)

    def _Subscript(self, node: ast.Subscript, scope: _Scope) -> Any:
        return self.lift(_getitem, self.eval(node.value, scope), self.eval(node.slice, scope))

    def _Slice(self, node: ast.Slice, scope: _Scope) -> Any:
        parts = [None if part is None else self.eval(part, scope) for part in (node.lower, node.upper, node.step)]
        return self.lift(slice, *parts)

    def _JoinedStr(self, node: ast.JoinedStr, scope: _Scope) -> Any:
        return self.lift(lambda *parts: "".join(parts), *[self.eval(v, scope) for v in node.values])

    def _FormattedValue(self, node: ast.FormattedValue, scope: _Scope) -> Any:
        convert = {-1: None, 115: str, 114: repr, 97: ascii}[node.conversion]
        spec = "" if node.format_spec is None else self.eval(node.format_spec, scope)
        return self.lift(lambda v, s: format(convert(v) if convert else v, s), self.eval(node.value, scope), spec)

    def _Lambda(self, node: ast.Lambda, scope: _Scope) -> Any:
        return _TestFunction(self, node, scope)

    def _NamedExpr(self, node: ast.NamedExpr, scope: _Scope) -> Any:
        value = self.eval(node.value, scope)
        scope.names[node.target.id] = value
        return value

    def spell(self, node: ast.expr, scope: _Scope) -> str:
        """How the sandbox spells the argument `node` of a call of the program: a display is
        spelled item by item (it may hold the program's objects, `[Item(1), Item(2)]`)."""
        if isinstance(node, ast.Starred):
            return "*" + self.spell(node.value, scope)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and node.elts:
            items = ", ".join(self.spell(e, scope) for e in node.elts)
            if isinstance(node, ast.List):
                return f"[{items}]"
            return f"({items}{',' * (len(node.elts) == 1)})" if isinstance(node, ast.Tuple) else f"{{{items}}}"
        if isinstance(node, ast.Name) and (owner := scope.owner(node.id)) and type(owner.names[node.id]) in _MUTABLE:
            # the program may change it in place (`xs = [3, 1]; sort_in_place(xs)`): from now on
            # it lives in the sandbox, and the test reads it back from there
            moved = self.probe(literal(owner.names[node.id]), call=False)
            owner.names[node.id] = Program(f"{PROBE_PREFIX}{moved.index}")
            return owner.names[node.id].source
        if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
            return (
                "{"
                + ", ".join(f"{self.spell(k, scope)}: {self.spell(v, scope)}" for k, v in zip(node.keys, node.values))
                + "}"
            )
        return self.source(self.eval(node, scope))

    def _Call(self, node: ast.Call, scope: _Scope) -> Any:
        function = self.eval(node.func, scope)
        if isinstance(function, (Program, ProbeValue)):
            parts = [self.spell(a, scope) for a in node.args]
            parts += [(f"{kw.arg}=" if kw.arg else "**") + self.spell(kw.value, scope) for kw in node.keywords]
            return self.probe(f"{self.source(function)}({', '.join(parts)})")
        args, starred = self._items(node.args, scope)
        kwargs = {kw.arg: self.eval(kw.value, scope) for kw in node.keywords if kw.arg is not None}
        spreads = [self.eval(kw.value, scope) for kw in node.keywords if kw.arg is None]
        converted = self._converted(function, args, kwargs) if not (any(starred) or spreads) else None
        if converted is not None:
            return converted
        if any(starred) or spreads:
            raise Unsplittable("*args or **kwargs in a call the test makes")
        if isinstance(function, _TestFunction):
            return function(*args, **kwargs)
        if isinstance(function, Deferred):
            return self.lift(lambda f, *a, **k: f(*a, **k), function, *args, **kwargs)
        holder = getattr(function, "__self__", None)
        mutator = type(holder) in (list, dict, set) and getattr(function, "__name__", "") in _MUTATORS
        if mutator and any(isinstance(self.value(a), Deferred) for a in (*args, *kwargs.values())):
            raise Unsplittable("a container the test changes with the program's output")
        mapped = function in (map, filter) and bool(args) and isinstance(args[0], Program)
        if mapped or isinstance(kwargs.get("key"), Program):
            raise Unsplittable("the program's function passed to map, filter or key=")
        if not callable(function) or isinstance(function, (Program, Module)):
            raise Unsplittable(f"a call of {type(function).__name__}")
        return self.lift(function, *args, **kwargs)

    def _converted(self, function: Any, args: list[Any], kwargs: dict[str, Any]) -> ProbeValue | None:
        """`list(gen())`, `sorted(obj)`, `len(obj)`...: a builtin that reads only the program's
        values is applied in the sandbox, so a generator or another iterable object the program
        returns reaches the test as the plain value the builtin makes of it. None otherwise."""
        name = getattr(function, "__name__", None)
        if name not in _CONVERTERS or SAFE_BUILTINS.get(name) is not function or not args:
            return None
        if not all(isinstance(a, (Program, ProbeValue)) for a in args):
            return None
        if not all(type(v) in (bool, int, float, str, type(None)) for v in kwargs.values()):
            return None
        parts = [self.source(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs.items()]
        return self.probe(f"{name}({', '.join(parts)})")

    def _comprehension(self, node: Any, scope: _Scope, element: Any) -> list[Any]:
        results: list[Any] = []

        def walk(generators: list[ast.comprehension], inner: _Scope) -> None:
            if not generators:
                results.append(element(inner))
                return
            first = generators[0]
            for item in iterate(self.value(self.eval(first.iter, inner))):
                child = _Scope(inner)
                self.assign(first.target, item, child)
                conditions = [self.value(self.eval(c, child)) for c in first.ifs]
                if any(isinstance(c, Deferred) for c in conditions):
                    raise Unsplittable("a comprehension filtered by the program's output")
                if all(conditions):
                    walk(generators[1:], child)

        if any(g.is_async for g in node.generators):
            raise Unsplittable("async comprehensions")
        walk(node.generators, _Scope(scope))
        return results

    def _ListComp(self, node: ast.ListComp, scope: _Scope) -> Any:
        return self.lift(
            lambda *items: list(items), *self._comprehension(node, scope, lambda s: self.eval(node.elt, s))
        )

    def _SetComp(self, node: ast.SetComp, scope: _Scope) -> Any:
        items = self._comprehension(node, scope, lambda s: self.eval(node.elt, s))
        return self.lift(lambda *values: set(values), *items)

    def _GeneratorExp(self, node: ast.GeneratorExp, scope: _Scope) -> Any:
        items = [self.value(v) for v in self._comprehension(node, scope, lambda s: self.eval(node.elt, s))]
        if not any(isinstance(item, Deferred) for item in items):
            return iter(items)
        return Deferred(lambda answers: (force(item, answers) for item in items))  # lazy: any() stops early

    def _DictComp(self, node: ast.DictComp, scope: _Scope) -> Any:
        pairs = self._comprehension(node, scope, lambda s: (self.eval(node.key, s), self.eval(node.value, s)))
        flat = [x for pair in pairs for x in pair]
        return self.lift(lambda *items: dict(zip(items[::2], items[1::2])), *flat)

    # --- statements -------------------------------------------------------------------

    def block(self, body: list[ast.stmt], scope: _Scope) -> None:
        for statement in body:
            handler = getattr(self, f"_do_{type(statement).__name__}", None)
            if handler is None:
                raise Unsplittable(f"{type(statement).__name__} statements")
            handler(statement, scope)

    def assign(self, target: ast.expr, value: Any, scope: _Scope) -> None:
        if isinstance(target, ast.Name):
            scope.names[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)) and not any(isinstance(t, ast.Starred) for t in target.elts):
            n = len(target.elts)
            items = self.lift(_unpack, value, n)
            for i, element in enumerate(target.elts):
                self.assign(
                    element, self.lift(lambda xs, i=i: xs[i], items) if isinstance(items, Deferred) else items[i], scope
                )
        else:
            raise Unsplittable(f"assignment to a {type(target).__name__}")

    def _do_Expr(self, node: ast.Expr, scope: _Scope) -> None:
        self.eval(node.value, scope)

    def _do_Assert(self, node: ast.Assert, scope: _Scope) -> None:
        condition = self.value(self.eval(node.test, scope))
        self.asserts_run += 1
        if isinstance(condition, Deferred):
            self.checks.append(condition)
        elif not condition:
            raise MalformedTest(f"asserts something false on its own values (line {node.lineno})")

    def _do_Assign(self, node: ast.Assign, scope: _Scope) -> None:
        value = self.eval(node.value, scope)
        for target in node.targets:
            self.assign(target, value, scope)

    def _do_AnnAssign(self, node: ast.AnnAssign, scope: _Scope) -> None:
        if node.value is not None:
            self.assign(node.target, self.eval(node.value, scope), scope)

    def _do_AugAssign(self, node: ast.AugAssign, scope: _Scope) -> None:
        if not isinstance(node.target, ast.Name):
            raise Unsplittable("augmented assignment to a subscript or an attribute")
        current = self._Name(node.target, scope)
        scope.names[node.target.id] = self.lift(BINARY[type(node.op)], current, self.eval(node.value, scope))

    def _loop_body(self, node: ast.For | ast.While, scope: _Scope) -> bool:
        """Run the body once; False when it breaks."""
        try:
            self.block(node.body, scope)
        except _Break:
            return False
        except _Continue:
            pass
        return True

    def _do_For(self, node: ast.For, scope: _Scope) -> None:
        for item in iterate(self.value(self.eval(node.iter, scope))):
            self.assign(node.target, item, scope)
            if not self._loop_body(node, scope):
                return
        self.block(node.orelse, scope)

    def _do_While(self, node: ast.While, scope: _Scope) -> None:
        while self._concrete(node.test, scope, "a while loop"):
            if not self._loop_body(node, scope):
                return
        self.block(node.orelse, scope)

    def _do_If(self, node: ast.If, scope: _Scope) -> None:
        self.block(node.body if self._concrete(node.test, scope, "an if") else node.orelse, scope)

    def _concrete(self, node: ast.expr, scope: _Scope, what: str) -> Any:
        value = self.value(self.eval(node, scope))
        if isinstance(value, Deferred):
            raise Unsplittable(f"{what} on the program's output")
        return value

    def _do_FunctionDef(self, node: ast.FunctionDef, scope: _Scope) -> None:
        scope.names[node.name] = _TestFunction(self, node, scope)

    def _do_Return(self, node: ast.Return, scope: _Scope) -> None:
        raise _Return(None if node.value is None else self.eval(node.value, scope))

    def _do_Import(self, node: ast.Import, scope: _Scope) -> None:
        for alias in node.names:
            if alias.name not in MODULES:
                raise Unsplittable(f"import {alias.name}")
            scope.names[alias.asname or alias.name] = Module(alias.name)

    def _do_ImportFrom(self, node: ast.ImportFrom, scope: _Scope) -> None:
        if node.module not in MODULES or node.level:
            raise Unsplittable(f"from {node.module} import")
        for alias in node.names:
            scope.names[alias.asname or alias.name] = plain_attribute(Module(node.module), alias.name)

    def _do_Pass(self, node: ast.Pass, scope: _Scope) -> None:
        pass

    def _do_Break(self, node: ast.Break, scope: _Scope) -> None:
        raise _Break

    def _do_Continue(self, node: ast.Continue, scope: _Scope) -> None:
        raise _Continue


def _raise(exc: Exception, answers: Any) -> Any:
    raise exc


def _getitem(container: Any, index: Any) -> Any:
    return container[index]


def _unpack(value: Any, n: int) -> tuple:
    items = tuple(iterate(value))
    if len(items) != n:
        raise ValueError(f"{len(items)} values to unpack into {n} names")
    return items
