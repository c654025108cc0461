"""Running lm-eval tasks on a `DllmLM`: the task names checked up front, lm-eval's
`simple_evaluate`, and the results written with everything that reproduces them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
from lm_eval.utils import make_table

from dllm.errors import ConfigError, did_you_mean
from dllm.harness import TASKS_DIR
from dllm.harness.model import DllmLM

RESULTS = "results.json"
RESULTS_TABLE = "results.md"


def task_manager(include_paths: Sequence[str | Path] = ()) -> TaskManager:
    """lm-eval's tasks plus dllm's shipped ones and any folders of task YAMLs given."""
    return TaskManager(include_path=[str(TASKS_DIR), *map(str, include_paths)])


def check_tasks(manager: TaskManager, tasks: Sequence[str]) -> None:
    """Refuse, before any model loads, a task (or group, or tag) lm-eval does not know."""
    known = set(manager.all_tasks)
    for name in tasks:
        if name not in known:
            raise ConfigError(
                f"unknown lm-eval task {name!r}{did_you_mean(name, sorted(known))} (`dllm-lm-eval ls tasks` lists "
                f"them; a folder of task YAMLs of your own: --include-path)"
            )


def run_tasks(
    lm: DllmLM,
    tasks: Sequence[str],
    manager: TaskManager,
    *,
    num_fewshot: int | None = None,
    limit: float | None = None,
    apply_chat_template: bool = False,
    fewshot_as_multiturn: bool | None = None,
    log_samples: bool = False,
) -> dict[str, Any]:
    """lm-eval's results for `tasks` (its seeds fixed at their defaults, as its CLI does).
    `fewshot_as_multiturn` None: lm-eval's default (each example its own chat turn when the
    chat template is applied); False: the whole few-shot prompt as one user turn."""
    multiturn = apply_chat_template if fewshot_as_multiturn is None else fewshot_as_multiturn
    return simple_evaluate(
        model=lm,
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=manager,
        apply_chat_template=apply_chat_template,
        fewshot_as_multiturn=multiturn,
        log_samples=log_samples,
        batch_size=lm.batch_size,
    )


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    """`results.json` (lm-eval's results, its `config.dllm` holding the setup) and `results.md`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS).write_text(json.dumps(results, indent=2, default=str))
    setup = results["config"].get("dllm", {})
    lines = [f"- {key}: {value}" for key, value in setup.items() if key != "versions"]
    table = make_table(results)
    (out_dir / RESULTS_TABLE).write_text("# lm-eval through dllm\n\n" + table + "\n" + "\n".join(lines) + "\n")
    return out_dir / RESULTS
