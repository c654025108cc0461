"""Compose every config of a source tree's `dllm/conf` from the *installed* dllm package.

    python .ci/compose_presets.py /path/to/checkout/dllm/conf    # run from outside the checkout

The list of configs comes from the source tree, the configs themselves from the installed
package: a YAML the wheel lacks fails here (the root configs, `GROUP=OPTION` for every YAML
of every group folder, nested ones such as `algorithm/estimator` inside an option of their
parent that declares them, and every experiment), and the shipped lm-eval tasks load their
local files (dllm/harness/tasks). Exits 1 naming each failure.
"""

from __future__ import annotations

import sys
from pathlib import Path


def composes(config_name: str, overrides: list[str]) -> str | None:
    """None if the installed package composes `config_name` with `overrides`, else the error."""
    from dllm.config import compose

    try:
        compose(overrides, config_name=config_name)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def check(source: Path) -> list[str]:
    """The failures of composing every config found under `source` from the installed package."""
    roots = sorted(path.stem for path in source.glob("*.yaml"))
    failures = [f"{name}.yaml: {error}" for name in roots if (error := composes(name, []))]
    root = "train" if "train" in roots else roots[0]
    for path in sorted(source.glob("*/**/*.yaml")):
        group = path.parent.relative_to(source).as_posix()
        override = f"{group}={path.stem}"
        error = composes(root, [override])
        if error and "No match in the defaults list" in error:  # a group other options mount (optim@trainer)
            error = composes(root, [f"+{override}"])
        if error and "/" in group:  # a nested group composes only inside a parent option that declares it
            parent = group.rsplit("/", 1)[0]
            choices = sorted(p.stem for p in (source / parent).glob("*.yaml"))
            if any(composes(root, [f"{parent}={choice}", override]) is None for choice in choices):
                error = None
        if error:
            failures.append(f"{override}: {error}")
    return failures


def harness_tasks() -> list[str]:
    """The failures of loading every shipped lm-eval task's documents from the installed package."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from dllm.harness import TASKS_DIR

    names = ["dllm_addition", "dllm_addition_mc"]  # gsm8k_boxed reads the hub
    try:
        tasks = get_task_dict(names, TaskManager(include_path=str(TASKS_DIR), include_defaults=False))
        counts = {name: len(list(tasks[name].test_docs())) for name in names}
    except Exception as exc:
        return [f"dllm/harness/tasks: {type(exc).__name__}: {str(exc).splitlines()[0]}"]
    return [f"{name}: {count} documents, expected 32" for name, count in counts.items() if count != 32]


def main() -> None:
    source = Path(sys.argv[1]).resolve()
    import dllm

    installed = Path(dllm.__file__).resolve().parent
    if installed == source.parent:
        sys.exit(f"dllm is imported from the source tree ({installed}); run this outside the checkout")
    count = sum(1 for _ in source.rglob("*.yaml"))
    failures = check(source) + harness_tasks()
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if failures:
        sys.exit(f"{len(failures)} of {count} configs do not compose from {installed}")
    print(f"all {count} configs compose, and the shipped lm-eval tasks load, from {installed}")


if __name__ == "__main__":
    main()
