"""Every `dllm-train` command the docs show composes, and (where it names no checkpoint of the
reader's own) passes the run plan's checks: a renamed key or option cannot leave a doc stale."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dllm.config import compose, first_run
from dllm.run import plan

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "plugin" / "README.md"]
# The walk-through's components exist only in the package a reader writes from adding_components.md
# (tests/test_adding_components.py runs those); Hydra's own launcher options need the sweeps extra.
ELSEWHERE = re.compile(r"^(model=mini|(task|sampler|reward|algorithm/advantage)=my_|\+algorithm/filter@.*my_)")
PLACEHOLDER = re.compile(r"=(\.\.\.|[A-Z_]+|.*\bRUN\b.*|.*SFT_RUN.*)$")


def doc_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        text = doc.read_text().replace("\\\n", " ")
        for match in re.finditer(r"dllm-train((?:[ \t]+[^\s`#|;&]+)*)", text):
            try:
                words = shlex.split(match.group(1))
            except ValueError:  # a quote the regex cut at a backtick: not a whole command
                continue
            if "..." in words or any("=" not in w and not w.startswith("-") for w in words):
                continue  # prose that names the command, or an elided one
            found.append((f"{doc.relative_to(ROOT)}: dllm-train{match.group(1)}", words))
    return found


COMMANDS = doc_commands()


def first_of_each_sweep(words: list[str]) -> list[str]:
    return first_run([w for w in words if not w.startswith("-") and not w.startswith(("hydra.", "hydra/"))])


def test_the_docs_show_commands_to_check():
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize("where, words", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_doc_command_composes_and_plans(where, words):
    if any("=glob(" in word for word in words):
        pytest.skip("a glob sweep: tests/configs/test_ablation.py expands it with Hydra's loader, checks every point")
    overrides = first_of_each_sweep(words)
    if any(ELSEWHERE.match(o) for o in overrides) or any(PLACEHOLDER.search(o) for o in overrides):
        pytest.skip("names a component or path of the reader's own")
    cfg = compose(overrides)
    readers_files = [o for o in overrides if o.split("=", 1)[0].endswith(("_file", ".pretrained"))]
    if not readers_files:  # a checkpoint or data file of the reader's own: composing is what can be checked
        plan(cfg)
