"""dllm's import layering: the arrows point one way, and nothing leans on an import circle.

- Every `import` in `dllm/` (function-level ones included) goes from a layer to a lower one
  (`LAYERS`), or stays inside its own unit (a subpackage or a top-level module).
- The module import graph has no cycle.
- Each subpackage, top-level module and CLI entry point imports as the first dllm import of a
  process (a forked child with no dllm module loaded; the third-party libraries are loaded
  before the fork, to keep the check fast).

Python runs `dllm/__init__.py` (the public API, which imports the registries' components)
before any `dllm.X`, so the fresh imports check the import order a user meets; the layer
check is what keeps the arrows pointing down.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import dllm

PACKAGE = Path(dllm.__file__).parent

# Lowest first. A module imports its own unit and units of lower layers; units of one layer are
# peers and import none of each other.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "conf", "run_files"),  # dllm's exceptions; the YAML config package; the run directory's file names
    ("config_files", "text", "progress", "metric_window", "interrupt", "loggers", "peak_memory", "adapters"),
    ("registry", "distributed", "sandbox"),  # names -> factories (no component, no config); processes; code sandbox
    ("signatures", "tokenizer", "checkpoint", "console", "trainer_config"),
    ("models",),
    ("samplers", "data", "rewards"),
    ("generation",),  # decode_batch: tokenise -> generate -> EOS cut -> texts
    ("evaluation", "algorithms"),  # both decode through generation; RL rollouts do not go through evaluation
    # the training loop; compose, validate, build (dllm.build); `evaluate` modules; log-likelihood estimates
    ("trainer", "config", "metrics", "likelihood"),
    ("run", "targets"),  # dllm.train: plan the run, then train; what dllm-eval / dllm-generate load
    ("harness",),  # the lm-evaluation-harness model adapter (lm-eval is an optional extra)
    ("dllm",),  # the public API: dllm/__init__.py
    ("cli",),
]

# (importing unit, imported unit): why it is allowed for now. Each must still occur.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def import_edges() -> list[tuple[str, str, int]]:
    """(importer, imported dllm module, line) for every import statement, at any depth."""
    known = modules()

    def resolve(name: str) -> str:
        while name not in known:
            name = name.rpartition(".")[0]
        return name

    edges = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # `from dllm.x import y` imports the module dllm.x.y when there is one
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            else:
                continue
            edges += [(name, resolve(t), node.lineno) for t in targets if t == "dllm" or t.startswith("dllm.")]
    return edges


def unit(module: str) -> str:
    """`dllm` for the package's own `__init__`, else the subpackage or top-level module: `models`."""
    return module.split(".")[1] if "." in module else "dllm"


def layer_of(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def test_every_unit_has_a_layer():
    placed = {name for layer in LAYERS for name in layer}
    missing = sorted({unit(name) for name in modules()} - placed)
    assert not missing, f"place {missing} in LAYERS (tests/test_layers.py) and docs/architecture.md"
    assert len(placed) == sum(map(len, LAYERS)), "a unit is in two layers"


def test_imports_point_down():
    upward, seen_known = [], set()
    for importer, imported, line in sorted(set(import_edges())):
        source, target = unit(importer), unit(imported)
        if source == target or layer_of(target) < layer_of(source):
            continue
        if (source, target) in KNOWN_UPWARD:
            seen_known.add((source, target))
            continue
        relation = "a peer" if layer_of(target) == layer_of(source) else "a higher layer"
        upward.append(f"{importer}:{line} imports {imported} ({relation})")
    assert not upward, "imports against the layers (LAYERS in tests/test_layers.py):\n" + "\n".join(upward)
    stale = sorted(set(KNOWN_UPWARD) - seen_known)
    assert not stale, f"no longer imported: delete {stale} from KNOWN_UPWARD"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_module_graph_has_no_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported, _ in import_edges():
        graph[importer].add(imported)
        graph[imported]
    graph = {node: targets - {node} for node, targets in graph.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# Loads dllm whole (so that the third-party libraries it uses are loaded), drops every dllm
# module, then per name forks a child that imports it as the process's first dllm import.
FRESH_IMPORTS = textwrap.dedent(
    """
    import importlib, json, os, sys, traceback
    names = json.loads(sys.argv[1])
    for name in names:
        importlib.import_module(name)
    for loaded in [m for m in sys.modules if m == "dllm" or m.startswith("dllm.")]:
        del sys.modules[loaded]
    failures, running = {}, {}

    def reap():
        pid, status = os.wait()
        name, reader = running.pop(pid)
        with os.fdopen(reader) as pipe:
            message = pipe.read()
        if status:
            failures[name] = message or f"exit status {status}"

    for name in names:
        if len(running) >= max(os.cpu_count() or 1, 2):
            reap()
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            try:
                importlib.import_module(name)
                os._exit(0)
            except BaseException:
                os.write(writer, traceback.format_exc()[-2000:].encode())
                os._exit(1)
        os.close(writer)
        running[pid] = (name, reader)
    while running:
        reap()
    print(json.dumps(failures))
    """
)


def fresh_import_targets() -> list[str]:
    """Every subpackage and top-level module, and each CLI module (the entry points)."""
    names = {name for name in modules() if name.count(".") <= 1 or name.startswith("dllm.cli.")}
    return sorted(name for name in names if not name.rpartition(".")[2].startswith("_"))


def test_each_unit_imports_alone_as_the_first_dllm_import():
    targets = fresh_import_targets()
    assert {"dllm", "dllm.models", "dllm.registry", "dllm.cli.train", "dllm.generation"} <= set(targets)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_IMPORTS, json.dumps(targets)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PACKAGE.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"import {name} failed:\n{error}" for name, error in failures.items())
