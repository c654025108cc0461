"""`dllm-train`: compose a run from Hydra config groups, then `dllm.train` it (plan, train,
evaluate) — on this process, or relaunched on `trainer.num_processes` processes.

dllm-train                                   # llada_small, SFT on addition, on the CPU
dllm-train seed=1 task.num_eval=500          # change any group or value
dllm-train -m sampler.steps=4,8              # a sweep: one run directory per value
dllm-train trainer=ddp trainer.num_processes=2   # relaunches itself on 2 processes (torchrun)
accelerate launch --num_processes 2 -m dllm.cli.train trainer=ddp hydra.run.dir=outputs/run
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dllm.cli.common import reports_user_errors, setup_logging
from dllm.cli.runs import OVERRIDE
from dllm.config import compose, first_run
from dllm.distributed import launched_world_size
from dllm.errors import DllmError
from dllm.interrupt import TrainingInterrupted
from dllm.run import check_output_dir, plan, train
from dllm.run_files import EVAL

logger = logging.getLogger("dllm.train")

EXIT_INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT (128 + 2)
HYDRA_CONFIG_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


def launch_processes(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Run this job on `trainer.num_processes` processes through `torch.distributed.run` (what
    `accelerate launch` runs too), each with the same overrides and run directory; its metrics."""
    count = int(cfg.trainer.num_processes)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={count}",
        "-m", "dllm.cli.train", *overrides, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null",
    ]  # fmt: skip
    env = dict(os.environ)
    if cfg.trainer.device in ("cpu",) or not torch.cuda.is_available():
        # One thread per process: CPU processes share the cores, and oversubscribed torch crawls.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // count)))
    logger.info("launching %d processes: %s", count, " ".join(command))
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise DllmError(
            f"the {count}-process run in {run_dir} failed (exit status {result.returncode}); its processes' "
            f"errors are above"
        )
    eval_json = json.loads((run_dir / EVAL).read_text())
    return {"eval/accuracy": eval_json["accuracy"]}


def resume_command(overrides: list[str], run_dir: Path) -> str:
    """The command line that continues the run in `run_dir` (started with `overrides`)."""
    kept = [item for item in overrides if not item.startswith("hydra.run.dir=")]
    return shlex.join(["dllm-train", *kept, f"hydra.run.dir={run_dir}"])


@hydra.main(config_path="pkg://dllm.conf", config_name="train", version_base="1.3")
@reports_user_errors
def _hydra_main(cfg: DictConfig) -> float:
    setup_logging()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    overrides = list(HydraConfig.get().overrides.task)
    try:
        if int(cfg.trainer.get("num_processes", 1)) > 1 and launched_world_size() == 1:
            plan(cfg)  # refuse a bad config once, here, rather than once per process
            check_output_dir(run_dir)
            metrics = launch_processes(cfg, run_dir, overrides)
        else:
            metrics = train(cfg, run_dir)
    except TrainingInterrupted as stop:
        if stop.is_main:
            print(f"{stop}; resume with: {resume_command(overrides, run_dir)}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    return metrics["eval/accuracy"]


@reports_user_errors
def check_requested_output_dir(argv: list[str]) -> None:
    """Refuse an unwritable `hydra.run.dir` before Hydra itself tries to create it."""
    for arg in argv:
        if arg.startswith("hydra.run.dir="):
            check_output_dir(Path(arg.split("=", 1)[1]))


@reports_user_errors
def check_launch(argv: list[str]) -> None:
    """Under a launcher with several processes, every process must write the same run directory:
    a dated default would differ between processes started a second apart."""
    if launched_world_size() > 1:
        if any(arg in ("-m", "--multirun") for arg in argv):
            raise DllmError(
                "a sweep (-m) cannot run under a launcher; run `dllm-train -m ... trainer.num_processes=N`, which "
                "launches each run's processes itself"
            )
        if not any(arg.startswith("hydra.run.dir=") for arg in argv):
            raise DllmError(
                f"launched on {launched_world_size()} processes without hydra.run.dir: every process must write to "
                f"the same run directory; add hydra.run.dir=outputs/NAME"
            )


@reports_user_errors
def check_overrides(argv: list[str]) -> None:
    """Compose the config the command line asks for (a sweep's first run) before Hydra does, so
    an unknown option or key is one dllm line (`did you mean ...`) rather than Hydra's advice to
    add the typo with `+`. A command line dllm cannot compose alone (another config, Hydra's
    own sweepers) is left to Hydra."""
    if any(arg.split("=", 1)[0] in HYDRA_CONFIG_FLAGS for arg in argv):
        return
    items = [arg for arg in argv if not arg.startswith("-") and OVERRIDE.fullmatch(arg)]
    try:
        first = first_run(items)
    except Exception:  # Hydra's grammar errors and sweeps it expands itself: Hydra reports those
        return
    compose(first)


def main() -> None:
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(__doc__)  # the examples; Hydra's help, printed next, lists the groups and the config
    check_overrides(sys.argv[1:])
    check_requested_output_dir(sys.argv[1:])
    check_launch(sys.argv[1:])
    try:
        _hydra_main()
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print("interrupted: stopped at once; nothing saved since the last checkpoint", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
