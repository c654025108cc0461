"""The harness that runs one program inside the sandbox's child process.

Loaded by path into the sandbox worker (stdlib only). `run_program` runs the program, then
either the job's probes or its test, in the same process.

Probes (the code reward's function tests, see `dllm/sandbox/checks.py`): expressions of
the program's names and plain literals, evaluated in the program's namespace; their values
go to the report channel as plain data, and the trusted process judges them. Nothing here
decides a score, so nothing here needs defending: a program that tampers with the probes or
the report only reports values it could have returned.

A test (the fallback for tests that cannot be split): run after the program, it ends by
writing a proof to the report channel, which the worker checks; the worker decides pass or
fail, never the program's output or exit code. This path stops the cheats a program can make
without studying the harness:
- exit early (`sys.exit(0)`, `os._exit(0)`, a signal): the proof is written only after
  the test's last line, so no proof, no pass;
- print a fake "passed" marker: stdout is not the proof channel;
- replace builtins or library functions (`builtins.len`, `AssertionError`, `math.isclose`,
  `os.write`, `exec`): the harness binds what it uses before the program runs; after it,
  every loaded module's namespace is restored from a snapshot the worker took before any
  program ran, and the test sees the program's names except those that shadow builtins
  (and, for names the test uses as `name.attribute`, loaded modules);
- jump over the test with a tracer, or patch builtins from a thread it left running:
  tracing is switched off, and other threads get no turn while the test runs (unless it
  blocks);
- return an object that agrees with anything (`mock.ANY`, an `int` subclass whose `__eq__`
  is `int.__ne__`, a `__sub__` returning 0, always-equal items in a list): every comparison
  and arithmetic operation with a plain value on one side is done on plain content (a
  subclass by its base type's content, anything else not plain data fails), and assert
  conditions refuse program-defined truth;
- overwrite the harness: it lives in the worker's memory, the file is read-only to the
  sandbox, and every test runs in a fresh fork.
What it does not stop: a program that studies this harness — reads the test's source from
memory (it is in this process while the program runs), writes the proof channel itself
(reads fd 3, writes fd 4), or runs code during the test (the functions the test calls are
the program's) that edits the harness's state. That is why function tests are judged
outside wherever they can be split, and the reward counts the tests judged here.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import gc
import io
import json
import linecache
import operator
import os
import socket
import sys
import traceback
import types
from collections.abc import Sequence

NONCE_FD, PROOF_FD = 3, 4  # the proof channel carries a probe job's answers (its report)
SOLUTION_FILE = "solution.py"
_MISSING = object()
_MODULES = sys.modules  # the interpreter's own dict, whatever the program rebinds `sys.modules` to
_SNAPSHOT: list | None = None


def prepare() -> None:
    """Snapshot every loaded module's namespace, once, in the worker: each child inherits it
    (no copying per job), and `gc.freeze()` after this hides it from `gc.get_referrers`."""
    global _SNAPSHOT
    _SNAPSHOT = _snapshot()


def run_program(job: dict, workdir: str, refuse: frozenset[str] = frozenset()) -> int:
    """Run the program (then the test, if any) in this process; the exit code to end with.
    `refuse`: what an audit hook must refuse because the kernel could not isolate it (see
    `_audit_hook`).

    Everything used after the program runs is bound here first: the program may replace
    builtins, `os` functions and `sys` hooks, and none of that reaches this frame's locals.
    """
    read, write, exec_, settrace, setprofile = os.read, os.write, builtins.exec, sys.settrace, sys.setprofile
    setrecursionlimit, setswitchinterval = sys.setrecursionlimit, sys.setswitchinterval
    collect, disable_gc, restore, test_namespace = gc.collect, gc.disable, _restore, _test_namespace
    streams = _fresh_streams()
    stdout, stderr = streams[1:]
    filename = os.path.join(workdir, SOLUTION_FILE)
    program = job["program"]
    linecache.cache[filename] = (len(program), None, program.splitlines(True), filename)
    snapshot = (_SNAPSHOT or _snapshot()) if job["test"] is not None else None
    probes = job.get("probes")
    module = types.ModuleType("__main__" if job["test"] is None and probes is None else "solution")
    module.__file__ = filename
    sys.modules[module.__name__] = module
    sys.argv = [filename]
    code = 0
    try:
        test, module_names = (None, frozenset()) if job["test"] is None else _compiled(job["test"])
        program_code = compile(program, filename, "exec")
        answer = None if probes is None else _prober(probes, module.__dict__, write, setrecursionlimit)
        if refuse:
            sys.addaudithook(_audit_hook(refuse, job.get("readable", ())))
        exec_(program_code, module.__dict__)
        if answer is not None:
            answer()
        elif test is not None:
            settrace(None)  # a tracer could jump over the test's lines
            setprofile(None)
            collect()  # run the program's pending finalizers now, not in the middle of the test
            disable_gc()
            # Threads the program left (an idle pool is an honest habit) get no turn from here
            # on unless the test itself blocks: none can patch what is restored next.
            setswitchinterval(3600.0)
            restore(snapshot)
            sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
            exec_(test, test_namespace(module.__dict__, snapshot, module_names))
            write(PROOF_FD, read(NONCE_FD, 64))  # reached only when every line of the test ran
    except SystemExit as exc:  # Python's own rules for the exit code (only stdio jobs look at it)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            stderr.write(f"{exc.code}\n")
    except BaseException as exc:
        with contextlib.suppress(BaseException):  # the program's frames only, not this one
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next, file=stderr)
        code = 1
    for stream in (stdout, stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    return code & 0xFF


def _fresh_streams() -> tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper]:
    """New stream objects over fds 0-2 (the worker's own may hold buffered bytes), installed."""
    stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), "utf-8")
    stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), "utf-8")
    stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)), "utf-8", "backslashreplace", line_buffering=True
    )
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = stdin, stdout, stderr
    return stdin, stdout, stderr


# --- probes: values for the trusted process to judge ---------------------------------------


def _prober(probes: list, namespace: dict, write, setrecursionlimit):
    """What answers a probe job once the program ran: each probe's expression evaluated in
    the program's namespace, in order (`__dllm_probe_<k>` holds result k for later ones),
    written to the report channel as JSON: ["v", plain value] where the value is sent back,
    ["k"] where it only feeds later probes, ["x"] where it raised, ["u", type] where it is
    no plain data. The program may tamper with any of this: it only ever reports values it
    could have returned, and the trusted process decodes them strictly."""
    compiled = []
    for source, _ in probes:
        try:
            compiled.append(compile(source, "<probe>", "eval"))
        except (SyntaxError, ValueError):
            compiled.append(None)
    eval_, dumps, prefix, to_plain, to_json = builtins.eval, json.dumps, "__dllm_probe_", as_plain, tagged

    def answer() -> None:
        entries = []
        for index, ((_, send), code) in enumerate(zip(probes, compiled)):
            try:
                value = eval_(code, namespace)
            except BaseException:  # a probe that raises (SystemExit included) fails its checks alone
                entries.append(["x"])
                continue
            namespace[prefix + str(index)] = value
            if not send:
                entries.append(["k"])
                continue
            try:
                setrecursionlimit(max(1000, 4 * MAX_DEPTH))
                entries.append(["v", to_json(to_plain(value))])
            except BaseException as exc:
                entries.append(["u", exc.args[0] if type(exc) is _NotPlain else "unreadable"])
        write(PROOF_FD, dumps(entries).encode())

    return answer


MAX_DEPTH = 200
_PLAIN_BASES = (bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)
_TAGS = {list: "l", tuple: "t", set: "s", frozenset: "f"}


class _NotPlain(Exception):
    pass


def as_plain(value: object, depth: int = 0) -> object:
    """`value` rebuilt from exact built-in types. A subclass of a plain type is read as its
    base type (its content; its own `__eq__` is never consulted), a numpy scalar as the
    Python value it holds; anything else (and nesting past MAX_DEPTH) raises _NotPlain."""
    kind = type(value)
    if depth > MAX_DEPTH:
        raise _NotPlain(f"nested deeper than {MAX_DEPTH}")
    if value is None or kind in (bool, int, float, complex, str, bytes):
        return value
    if kind is dict:
        return {as_plain(k, depth + 1): as_plain(v, depth + 1) for k, v in value.items()}
    if kind in _TAGS:
        return kind(as_plain(item, depth + 1) for item in value)
    for base in _PLAIN_BASES:
        if issubclass(kind, base):  # the real type: `isinstance` believes a `__class__` property
            return as_plain(str.__str__(value) if base is str else base(value), depth)
    if getattr(kind, "__module__", None) == "numpy" and getattr(value, "ndim", None) == 0:
        return as_plain(value.item(), depth)
    raise _NotPlain(kind.__name__ if isinstance(getattr(kind, "__name__", None), str) else "object")


def tagged(value: object) -> object:
    """A plain value as JSON: containers tagged (["l", ...], ["t", ...], ["s", ...], ["f", ...],
    ["d", k, v, ...]), ["b", latin-1 text] for bytes, ["I", hex] for ints past 2**53."""
    kind = type(value)
    if kind is int:
        return value if -(1 << 53) < value < (1 << 53) else ["I", hex(value)]
    if kind is bytes:
        return ["b", value.decode("latin-1")]
    if kind is complex:
        return ["c", value.real, value.imag]
    if kind is dict:
        return ["d", *[tagged(x) for pair in value.items() for x in pair]]
    if kind in _TAGS:
        return [_TAGS[kind], *[tagged(item) for item in value]]
    return value


_BYPASSES = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "pty.spawn")
_BYPASSES += ("ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Audit events that change a path, with the positions of their path arguments.
_CHANGES = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.symlink": (1,)}
_CHANGES |= {"os.link": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,)}
_CHANGES |= {"shutil.rmtree": (0,)}


def _audit_hook(refuse: frozenset[str], readable: Sequence[str] = ()):
    """The fallback where the kernel could not isolate the program, one refusal per gap:
    "network": internet sockets; "signals": signals to any process but this one and its
    children; "files": writing outside the work directory (or opening a directory there, a
    way around the check) and reading anything but the work directory and `readable` (the
    interpreter, standard library, shared libraries and allowed packages: what the worker's new
    root would have held, see `isolation.needed_paths`) or /proc and /dev; "proc":
    other processes' /proc entries (their environment).
    With any of these, new programs and foreign calls are refused too: they would run
    without this hook."""
    me, workdir = os.getpid(), os.getcwd()
    readable_files = frozenset(readable)
    readable_dirs = tuple(os.path.join(path, "") for path in readable) + ("/proc/", "/dev/")

    def outside(path: object) -> bool:
        if isinstance(path, int):
            return True  # a descriptor: where it points cannot be checked
        real = os.path.realpath(os.fsdecode(path))
        return not (real == "/dev/null" or real == workdir or real.startswith(workdir + os.sep))

    def hook(event: str, args: tuple) -> None:
        if event in _BYPASSES:
            raise PermissionError(f"the sandbox refuses {event}: this machine cannot isolate it otherwise")
        if "network" in refuse and event == "socket.__new__" and args[1] != socket.AF_UNIX:
            raise PermissionError("the sandbox has no network: sockets other than AF_UNIX are refused")
        if "signals" in refuse and event in ("os.kill", "os.killpg") and not _own(args[0], me):
            raise PermissionError(f"the sandbox refuses {event}({args[0]}): not this process or its child")
        if event == "open" and not isinstance(args[0], int):
            real = os.path.realpath(os.fsdecode(args[0]))
            pid = real.split("/")[2] if real.startswith("/proc/") else ""
            if "proc" in refuse and pid.isdigit() and int(pid) != me:
                raise PermissionError(f"the sandbox refuses another process's {real}")
            if "files" in refuse and outside(real):
                if (args[2] or 0) & _WRITE_FLAGS or (args[1] and set(str(args[1])) & set("wax+")):
                    raise PermissionError(f"the sandbox refuses writing {real}: outside the work directory")
                if os.path.isdir(real):
                    raise PermissionError(f"the sandbox refuses opening the directory {real}")
                if real not in readable_files and not real.startswith(readable_dirs):
                    raise PermissionError(f"the sandbox refuses reading {real}: not a library's file")
        if "files" in refuse and event in _CHANGES and any(outside(args[i]) for i in _CHANGES[event]):
            raise PermissionError(f"the sandbox refuses {event} outside the work directory")

    return hook


def _own(pid: int, me: int) -> bool:
    if pid == me:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return pid > 0 and int(f.read().rsplit(")", 1)[1].split()[1]) == me
    except (OSError, ValueError, IndexError):
        return False


# --- undoing what the program changed --------------------------------------------------


def _snapshot() -> list[tuple[str, types.ModuleType, dict]]:
    """Every loaded module with a copy of its namespace, builtins first."""
    modules = [(name, m, dict(m.__dict__)) for name, m in list(_MODULES.items()) if isinstance(m, types.ModuleType)]
    modules.sort(key=lambda entry: entry[1] is not builtins)
    return modules


def _restore(snapshot: list[tuple[str, types.ModuleType, dict]]) -> None:
    # Uses only dict and item operations: until builtins are restored, any builtin may be fake.
    for name, module, contents in snapshot:
        _MODULES[name] = module
        current = module.__dict__
        for key, value in contents.items():
            if current.get(key, _MISSING) is not value:
                current[key] = value
        if module is builtins:  # and no new builtin names either (a fake `math` the test would find)
            for key in [key for key in current if key not in contents]:
                del current[key]


def _test_namespace(program_globals: dict, snapshot: list, module_names: frozenset[str]) -> dict:
    """The program's names for the test, less those that shadow a builtin, and with the
    real module for every loaded module's name the test uses as `name.attribute`."""
    builtin_names = snapshot[0][2]
    modules = {name: module for name, module, _ in snapshot}
    namespace = {k: v for k, v in program_globals.items() if k not in builtin_names or k.startswith("__")}
    for name in module_names & namespace.keys() & modules.keys():
        namespace[name] = modules[name]  # `math.isclose(...)` in a test means the real math module
    namespace.update(__builtins__=builtins, __name__="test", __dllm_compare__=_compare, __dllm_truth__=_truth)
    namespace["__dllm_arith__"] = _arith
    return namespace


# --- comparisons the program cannot fake -------------------------------------------------


class _Harden(ast.NodeTransformer):
    """Route comparisons, arithmetic and assert conditions through `_compare`, `_arith` and
    `_truth`, which judge a program's value against a plain one by its plain content."""

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        ops = ast.Tuple([ast.Constant(type(op).__name__) for op in node.ops], ast.Load())
        values = ast.List([node.left, *node.comparators], ast.Load())
        return ast.copy_location(ast.Call(ast.Name("__dllm_compare__", ast.Load()), [values, ops], []), node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        args = [node.left, node.right, ast.Constant(type(node.op).__name__)]
        return ast.copy_location(ast.Call(ast.Name("__dllm_arith__", ast.Load()), args, []), node)

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        self.generic_visit(node)
        node.test = ast.copy_location(ast.Call(ast.Name("__dllm_truth__", ast.Load()), [node.test], []), node.test)
        return node


def _compiled(source: str) -> tuple[types.CodeType, frozenset[str]]:
    return compile_test(source) or _hardened_test(source)  # the latter raises the SyntaxError to report


@functools.lru_cache(maxsize=1024)
def compile_test(source: str) -> tuple[types.CodeType, frozenset[str]] | None:
    """`_hardened_test`, cached: the worker compiles each test once, before forking (a group
    of completions shares its tests); None when it does not compile (the child reports why)."""
    try:
        return _hardened_test(source)
    except (SyntaxError, ValueError):
        return None


def _hardened_test(source: str) -> tuple[types.CodeType, frozenset[str]]:
    """The test compiled with `_Harden`, and the names it uses as `name.attribute`."""
    tree = ast.parse(source, "<test>")
    bases = frozenset(
        n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    )
    tree = ast.fix_missing_locations(_Harden().visit(tree))
    return compile(tree, "<test>", "exec"), bases


_PLAIN = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset)
_C_METHODS = (types.WrapperDescriptorType, types.MethodDescriptorType, types.BuiltinFunctionType)
# Python code in these directories is the installed library's, not the program's.
_LIBRARY_DIRS = tuple(os.path.join(os.path.realpath(p), "") for p in sys.path if p and os.path.isdir(p))


def _forges(value: object, names: tuple[str, ...]) -> bool:
    """Whether `type(value)` implements one of `names` in code the program wrote."""
    for name in names:
        method = getattr(type(value), name, None)
        if method is None or isinstance(method, _C_METHODS):
            continue
        code = getattr(method, "__code__", None)
        if code is None or not os.path.realpath(code.co_filename).startswith(_LIBRARY_DIRS):
            return True
    return False


_OPERATORS = {
    "Eq": operator.eq, "NotEq": operator.ne, "Lt": operator.lt, "LtE": operator.le, "Gt": operator.gt,
    "GtE": operator.ge, "Is": operator.is_, "IsNot": operator.is_not, "In": lambda a, b: a in b,
    "NotIn": lambda a, b: a not in b, "Add": operator.add, "Sub": operator.sub, "Mult": operator.mul,
    "Div": operator.truediv, "FloorDiv": operator.floordiv, "Mod": operator.mod, "Pow": operator.pow,
    "LShift": operator.lshift, "RShift": operator.rshift, "BitOr": operator.or_, "BitXor": operator.xor,
    "BitAnd": operator.and_, "MatMult": operator.matmul,
}  # fmt: skip


def _by_content(a: object, b: object, op: str) -> tuple[object, object]:
    """Where one side is a plain value, both sides as their plain content: the program's
    object never sees the other operand (the expected value) and cannot answer for it."""
    if op in ("Is", "IsNot") or not (type(a) in _PLAIN or type(b) in _PLAIN):
        return a, b
    try:
        return as_plain(a), as_plain(b)
    except _NotPlain as exc:
        raise AssertionError(f"{exc.args[0]} is not plain data; compared with a plain value") from None


def _compare(values: list, ops: tuple[str, ...]) -> object:
    """`values[0] op values[1] op values[2] ...` as Python chains it (each value evaluated once,
    all of them up front), by content where a side is plain."""
    result: object = True
    for left, right, op in zip(values, values[1:], ops):
        result = _OPERATORS[op](*_by_content(left, right, op))
        if not result:
            return result
    return result


def _arith(left: object, right: object, op: str) -> object:
    return _OPERATORS[op](*_by_content(left, right, op))


def _truth(value: object) -> object:
    with contextlib.suppress(_NotPlain):
        return as_plain(value)
    if _forges(value, ("__bool__", "__len__")):
        raise AssertionError(f"{type(value).__name__} overrides truth")
    return value
