"""`dllm-train`: compose a run from Hydra config groups, validate it, train, evaluate.

dllm-train                                   # llada_small, SFT on addition, on the CPU
dllm-train model=llada_tiny trainer.max_steps=50
dllm-train -m sampler.steps=4,8              # a sweep: one run directory per value
"""

from __future__ import annotations

import logging
import random
import shutil
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dllm.cli.common import reports_user_errors, setup_logging
from dllm.config import build_components, build_node, validate
from dllm.errors import DllmError
from dllm.trainer import Stage, Trainer

logger = logging.getLogger("dllm.train")

MIN_FREE_BYTES = 64 * 2**20


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_output_dir(run_dir: Path) -> None:
    """Fail before training when the run directory is unwritable or its disk is full."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DllmError(f"cannot write to the output directory {str(run_dir)!r}: {exc}; set hydra.run.dir") from None
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise DllmError(f"only {free // 2**20} MiB free under {str(run_dir)!r}; free some disk or set hydra.run.dir")


def run_training(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Validate, build, train and evaluate one run in `run_dir`; return its final metrics."""
    validate(cfg)
    check_output_dir(run_dir)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    seed_everything(cfg.seed)
    components = build_components(cfg)
    stages = [Stage("main", build_node(cfg.trainer), components.algorithm)]
    if cfg.get("warmup") is not None:
        stages.insert(0, Stage("warmup", build_node(cfg.warmup.trainer), build_node(cfg.warmup.algorithm)))
    trainer = Trainer(components, stages, run_dir, seed=cfg.seed)
    trainer.resume_if_possible()
    metrics = trainer.train()
    logger.info(
        "held-out accuracy %.3f over %d prompts (%.1f tokens/s, %.2f NFE/token); run directory: %s",
        metrics["eval/accuracy"],
        metrics["eval/num_samples"],
        metrics["eval/tokens_per_s"],
        metrics["eval/nfe_per_token"],
        run_dir,
    )
    return metrics


@hydra.main(config_path="pkg://dllm.conf", config_name="train", version_base="1.3")
@reports_user_errors
def _hydra_main(cfg: DictConfig) -> float:
    setup_logging()
    metrics = run_training(cfg, Path(HydraConfig.get().runtime.output_dir))
    return metrics["eval/accuracy"]


@reports_user_errors
def check_requested_output_dir(argv: list[str]) -> None:
    """Refuse an unwritable `hydra.run.dir` before Hydra itself tries to create it."""
    for arg in argv:
        if arg.startswith("hydra.run.dir="):
            check_output_dir(Path(arg.split("=", 1)[1]))


def main() -> None:
    check_requested_output_dir(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
