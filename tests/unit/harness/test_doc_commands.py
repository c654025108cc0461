"""Every `dllm-lm-eval` command the docs show names only model arguments the adapter or its
sampler knows, and tasks lm-eval (with dllm's task folder) knows: a renamed option or task
cannot leave a reproduction command stale."""

import re
import shlex
from pathlib import Path

import pytest

from dllm.config import compose
from dllm.harness.model import ADAPTER_ARGS

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def doc_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        text = re.sub(r"\\\n\s*", " ", doc.read_text())
        for match in re.finditer(r"dllm-lm-eval((?:[ \t]+[^\s`#|;&]+)*)", text):
            words = shlex.split(match.group(1))
            if "--model_args" in words:
                found.append((f"{doc.name}: dllm-lm-eval{match.group(1)[:60]}", words))
    return found


COMMANDS = doc_commands()


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_the_docs_show_reproduction_commands():
    assert len(COMMANDS) >= 6


@pytest.fixture(scope="module")
def all_tasks():
    from dllm.harness.tasks_run import task_manager

    return set(task_manager().all_tasks)


@pytest.mark.parametrize("where, words", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_doc_command_names_known_arguments_and_tasks(where, words, all_tasks):
    args = dict(item.split("=", 1) for item in option(words, "--model_args").split(","))
    sampler_keys = set(compose([f"sampler={args.get('sampler', 'llada')}"]).sampler) - {"_target_"}
    unknown = set(args) - set(ADAPTER_ARGS) - sampler_keys
    assert not unknown, f"{where}: unknown model arguments {sorted(unknown)}"
    tasks = option(words, "--tasks").split(",")
    assert set(tasks) <= all_tasks, f"{where}: unknown tasks {sorted(set(tasks) - all_tasks)}"
