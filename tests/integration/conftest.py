import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
QUICK = ["experiment=addition_tiny", "trainer.max_steps=2", "task.num_eval=10", "trainer.log_every=1"]


def run_cli(
    command: str, *args: str, cwd: Path | None = None, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "TQDM_DISABLE": "1", **(env or {})}
    result = subprocess.run(
        [str(BIN / command), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A two-step training run of the tiny model, through the command line."""
    run_dir = tmp_path_factory.mktemp("run")
    run_cli("dllm-train", *QUICK, f"hydra.run.dir={run_dir}")
    return run_dir
