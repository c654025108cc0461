"""`dllm-train`: compose a run from Hydra config groups, validate it, train, evaluate.

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
import random
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dllm.checkpoint import (
    CHECKPOINT_DIR,
    RUN_CONFIG,
    checkpoint_dir,
    config_differences,
    load_run_config,
    recover,
    unreadable,
)
from dllm.cli.common import reports_user_errors, setup_logging
from dllm.cli.runs import OVERRIDE
from dllm.config import build_components, build_node, compose, validate
from dllm.distributed import launched_world_size, require_deepspeed, start_runtime
from dllm.errors import ConfigError, DllmError
from dllm.interrupt import TrainingInterrupted
from dllm.trainer import Stage, Trainer, zero3_refusal

logger = logging.getLogger("dllm.train")

MIN_FREE_BYTES = 64 * 2**20
EXIT_INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT (128 + 2)
# What a checkpoint must share with the run that resumes it: the weights' shapes and meaning
# (model keys that choose only numerics or kernels may change). The tokenizer is compared by
# its vocabulary when the trainer resumes (`tokenizer=char` and null can be the same one).
RESUME_KEYS = ("model",)
FREE_MODEL_KEYS = ("dtype", "attn_backend", "gradient_checkpointing")
HYDRA_CONFIG_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_output_dir(run_dir: Path) -> None:
    """Fail before training when the run directory is unwritable or its disk is full."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write_test{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DllmError(f"cannot write to the output directory {str(run_dir)!r}: {exc}; set hydra.run.dir") from None
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise DllmError(f"only {free // 2**20} MiB free under {str(run_dir)!r}; free some disk or set hydra.run.dir")


def check_resumable_config(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse to resume a checkpoint written under another model, naming the differing keys
    (before anything is built; `Trainer.check_resumable` compares the tokenizers' vocabularies)."""
    if not cfg.trainer.resume or checkpoint_dir(run_dir) is None:  # refuses a checkpoint without its state
        return
    saved_text = load_run_config(run_dir)
    if saved_text is None:
        return
    try:
        saved = OmegaConf.to_container(OmegaConf.create(saved_text), resolve=False)
    except Exception as exc:  # omegaconf or yaml parse errors
        raise unreadable(run_dir / CHECKPOINT_DIR / RUN_CONFIG, exc) from None
    current = OmegaConf.to_container(cfg, resolve=True)

    def weights_part(config: dict) -> dict:
        part = {key: config.get(key) for key in RESUME_KEYS}
        if isinstance(part["model"], dict):
            part["model"] = {k: v for k, v in part["model"].items() if k not in FREE_MODEL_KEYS}
        return part

    differences = config_differences(weights_part(saved), weights_part(current))
    if differences:
        raise DllmError(
            f"cannot resume {run_dir / 'checkpoint'}: it was trained with another model — "
            f"{'; '.join(differences[:5])}. Resume with the config it was trained with, start a new run "
            f"directory (hydra.run.dir=...), or set trainer.resume=false to train from scratch"
        )


def check_strategy(cfg: DictConfig) -> None:
    """Refuse what a distributed strategy cannot run, before any model is built."""
    trainer = cfg.trainer
    if trainer.get("strategy") == "deepspeed":
        require_deepspeed()
        if trainer.get("zero_stage") == 3:
            algorithms = [("main", cfg.algorithm)]
            if cfg.get("warmup") is not None:
                algorithms.insert(0, ("warmup", cfg.warmup.algorithm))
            for stage, node in algorithms:
                if not build_node(node).uniform_forwards:
                    raise ConfigError(zero3_refusal(stage))


def run_training(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Validate, build, train and evaluate one run in `run_dir`; return its final metrics.
    Under a launcher, every process calls this with the same `cfg` and `run_dir`."""
    validate(cfg)
    check_strategy(cfg)
    runtime = start_runtime(cfg.trainer.strategy, cfg.trainer.device)
    check_output_dir(run_dir)
    if runtime.is_main:
        recover(run_dir)  # finish a checkpoint swap a crash interrupted
    runtime.collective.barrier()
    check_resumable_config(cfg, run_dir)  # every process reads it, so all refuse together
    if not runtime.is_main:
        logging.getLogger("dllm").setLevel(logging.WARNING)
    run_config = OmegaConf.to_yaml(cfg, resolve=True)
    if runtime.is_main:
        (run_dir / "config.yaml").write_text(run_config)
    seed_everything(cfg.seed)
    components = build_components(cfg)
    stages = [Stage("main", build_node(cfg.trainer), components.algorithm)]
    if cfg.get("warmup") is not None:
        stages.insert(0, Stage("warmup", build_node(cfg.warmup.trainer), build_node(cfg.warmup.algorithm)))
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else None
    trainer = Trainer(
        components, stages, run_dir, seed=cfg.seed, runtime=runtime, run_config=run_config, choices=choices
    )
    trainer.resume_if_possible()
    metrics = trainer.train()
    if runtime.is_main:
        logger.info(
            "held-out accuracy %.3f over %d prompts (%.1f tokens/s, %.2f NFE/token); run directory: %s",
            metrics["eval/accuracy"],
            metrics["eval/num_samples"],
            metrics["eval/tokens_per_s"],
            metrics["eval/nfe_per_token"],
            run_dir,
        )
    return metrics


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
    eval_json = json.loads((run_dir / "eval.json").read_text())
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
            validate(cfg)  # refuse a bad config once, here, rather than once per process
            check_strategy(cfg)
            check_output_dir(run_dir)
            metrics = launch_processes(cfg, run_dir, overrides)
        else:
            metrics = run_training(cfg, run_dir)
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
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(arg.split("=", 1)[0] in HYDRA_CONFIG_FLAGS for arg in argv):
        return
    items = [arg for arg in argv if not arg.startswith("-") and OVERRIDE.fullmatch(arg)]
    try:
        parsed = OverridesParser.create().parse_overrides(items)
        first = [
            f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override() else o.input_line
            for o in parsed
        ]
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
