"""Every example a command's `--help` shows runs as shown.

The examples are read from the help text itself (a line that starts with the command, or with a
launcher running it), so an example added to a command's docstring is tested here without
touching this file. The paths the examples name stand for the fixtures below (`PATHS`), and
`TINY` settings are appended so that each runs in seconds.
"""

import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import run_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LAUNCHERS = ("accelerate launch",)
# What each placeholder path of the help texts stands for, relative to the workspace fixture.
PATHS = {
    "outputs/2026-11-25/10-00-00": "run",
    "outputs/.../run": "run",
    "/ckpt": "run/checkpoint",
    "outputs/RUN/checkpoint/rollout.pt": "run/checkpoint/rollout.pt",
    "rollout.pt": "run/checkpoint/rollout.pt",
    "multirun/2026-11-25/10-00-00": "sweep",
    "multirun/...": "sweep",
    "outputs/a": "sweep/0_seed=0",
    "outputs/b": "sweep/0_seed=1",
}
# Appended to every example (later overrides win): the smallest run that still shows the example.
TINY = {
    "dllm-train": ["trainer.max_steps=2", "trainer.batch_size=4", "task.num_eval=2"],
    "dllm-eval": ["task.num_eval=2", "task.gen_length=8"],
}
# A launcher's example gets the settings of the command it launches.
LAUNCHED = {"dllm.cli.train": "dllm-train"}


def help_examples(command: str) -> list[list[str]]:
    """The example command lines of `command --help`, as argument lists (comments dropped)."""
    text = run_cli(command, "--help").stdout
    lines = [line.strip() for line in text.splitlines()]
    return [
        shlex.split(line, comments=True)
        for line in lines
        if line.split(" ", 1)[0] == command or line.startswith(LAUNCHERS)
    ]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A directory holding what the examples point at: an RL run (a checkpoint with its latest
    rollout), a sweep of that run over two seeds, a prompt file and a test file."""
    root = tmp_path_factory.mktemp("examples")
    run = root / "run"
    run_cli(
        "dllm-train", "experiment=addition_tiny", "algorithm=tracerl", "trainer.max_steps=2", "task.num_eval=4",
        "trainer.log_every=1", f"hydra.run.dir={run}",
    )  # fmt: skip
    for seed in (0, 1):
        copy = root / "sweep" / f"0_seed={seed}"
        shutil.copytree(run, copy)
        overrides = copy / ".hydra" / "overrides.yaml"
        overrides.write_text(yaml.safe_dump([*yaml.safe_load(overrides.read_text()), f"seed={seed}"]))
    (root / "prompts.txt").write_text("12+34=\n7+5=\n")
    shutil.copy(ROOT / "dllm" / "data" / "samples" / "gsm8k.jsonl", root / "test.jsonl")
    return root


def concrete(example: list[str], workspace: Path) -> list[str]:
    """`example` with its placeholder paths (whole arguments or `key=` values) made real and the
    tiny settings of its command appended."""

    def real(word: str) -> str:
        if word in PATHS:
            return str(workspace / PATHS[word])
        key, equals, value = word.partition("=")
        return f"{key}={workspace / PATHS[value]}" if equals and value in PATHS else word

    command = example[0]
    if " ".join(example[:2]) in LAUNCHERS:
        command = next((LAUNCHED[word] for word in example if word in LAUNCHED), command)
    return [real(word) for word in example] + TINY.get(command, [])


@pytest.mark.parametrize(
    "command, at_least", [("dllm", 3), ("dllm-train", 5), ("dllm-eval", 4), ("dllm-generate", 2),
                          ("dllm-compare", 3), ("dllm-trace", 2)]
)  # fmt: skip
def test_every_help_example_runs(command, at_least, workspace):
    examples = help_examples(command)
    assert len(examples) >= at_least, f"{command} --help shows {len(examples)} examples: {examples}"
    failures = []
    for example in examples:
        args = concrete(example, workspace)
        result = run_cli(args[0], *args[1:], cwd=workspace, check=False)
        if result.returncode != 0 or "Traceback" in result.stderr:
            failures.append(f"{shlex.join(example)} (run as {shlex.join(args)}):\n{result.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)
