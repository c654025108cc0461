"""A run as a library call: `dllm.train(cfg)` plans the run, then trains and evaluates it.

The plan (`plan(cfg)`) is the one place a run config is checked, and it builds each component
once: every node's keys against its `_target_`'s signature, the whole-run and per-stage trainer
settings, each stage's algorithm, the task, sampler and reward, and the combinations
(sampler x task x model block size, distribution x algorithms) — all before any model is built.
`RunPlan.components()` then loads the tokenizer and builds the model. `dllm-train` is a thin
Hydra wrapper around `train`; tests and notebooks call these functions.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dllm.algorithms.base import Algorithm
from dllm.checkpoint import checkpoint_dir, config_differences, load_run_config, recover
from dllm.config import (
    COMPONENT_GROUPS,
    build_node,
    build_reward,
    check_context,
    check_model_tokenizer,
    model_node,
    reject_reward_list,
    resolve_tokenizer,
)
from dllm.distributed import require_deepspeed, start_runtime
from dllm.errors import ConfigError, DllmError, did_you_mean, unreadable
from dllm.peak_memory import reset_peak_memory
from dllm.run_files import CHECKPOINT_CONFIG, CHECKPOINT_DIR, CONFIG
from dllm.signatures import check_node
from dllm.trainer import Components, Stage, Trainer, zero3_refusal
from dllm.trainer_config import RUN_KEYS, TrainerConfig

logger = logging.getLogger("dllm.train")

TOP_LEVEL_KEYS = set(COMPONENT_GROUPS) | {"seed", "tokenizer", "warmup"}
DECODING_GROUPS = ("model", "sampler", "task", "reward")  # what evaluating a run reads
WARMUP_KEYS = ("algorithm", "trainer")
MIN_FREE_BYTES = 64 * 2**20
# What a checkpoint must share with the run that resumes it: the weights' shapes and meaning
# (model keys that choose only numerics or kernels may change). The tokenizer is compared by
# its vocabulary when the trainer resumes (`tokenizer=char` and null can be the same one).
RESUME_KEYS = ("model",)
FREE_MODEL_KEYS = ("dtype", "attn_backend", "gradient_checkpointing")


@dataclass
class RunPlan:
    """A checked run config with every component but the tokenizer and model built: the whole
    run's `settings` (the main stage's `trainer` node), the `stages` in order (each with its own
    settings and algorithm; the main stage last), and the task, sampler and reward they share."""

    cfg: DictConfig
    settings: TrainerConfig
    stages: list[Stage]
    task: Any
    sampler: Any
    reward: Any

    @property
    def algorithm(self) -> Algorithm:
        """The main stage's algorithm."""
        return self.stages[-1].algorithm

    def components(self, model: torch.nn.Module | None = None) -> Components:
        """The tokenizer and the model (unless given), checked against each other and against
        the task's prompts, with the planned task, sampler, reward and main algorithm."""
        tokenizer = resolve_tokenizer(self.cfg)
        model = build_node(model_node(self.cfg)) if model is None else model
        check_model_tokenizer(model, tokenizer)
        check_context(self.task, tokenizer, model)
        return Components(model, tokenizer, self.task, self.sampler, self.reward, self.algorithm)


def plan(cfg: DictConfig) -> RunPlan:
    """Refuse unknown keys, missing values, wrong types and impossible combinations, building
    each component but the model once (each constructor checks its own values)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():  # under dllm-train (or a Hydra app of one's own): the command line
        reject_reward_list(HydraConfig.get().overrides.task)
    for key in sorted(set(cfg.keys()) - TOP_LEVEL_KEYS - {"hydra"}):
        raise ConfigError(
            f"unknown top-level key {key!r}{did_you_mean(key, TOP_LEVEL_KEYS)} "
            f"(known: {', '.join(sorted(TOP_LEVEL_KEYS))})"
        )
    check_groups(cfg, COMPONENT_GROUPS)
    warmup = cfg.get("warmup")
    check_warmup(warmup)
    settings = build_node(cfg.trainer)
    stages = [Stage("main", settings, build_node(cfg.algorithm))]
    if warmup is not None:
        stages.insert(0, Stage("warmup", build_node(warmup.trainer), build_node(warmup.algorithm)))
    task, sampler, reward = decoding_parts(cfg)
    stages[-1].algorithm.check_run(task, sampler, model_block_size(cfg.model))
    check_distribution(settings, stages)
    return RunPlan(cfg, settings, stages, task, sampler, reward)


def plan_evaluation(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """(task, sampler, reward) of a run to evaluate, checked and built, and its trainer settings
    checked (the device): what decoding and scoring read, nothing of its algorithms or
    distribution (`dllm-eval` trains nothing, so a run directory saved under older algorithm
    keys, or a ZeRO run on a machine without DeepSpeed, still evaluates)."""
    check_groups(cfg, (*DECODING_GROUPS, "trainer"))
    build_node(cfg.trainer)
    return decoding_parts(cfg)


def check_groups(cfg: DictConfig, groups: tuple[str, ...]) -> None:
    for group in groups:
        if group not in cfg:
            raise ConfigError(f"the config has no {group!r}; choose one with {group}=NAME (see `dllm list {group}`)")
        check_node(group, cfg[group])


def decoding_parts(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """The task, sampler and reward built, the sampler checked against the model's blocks."""
    reward, sampler, task = build_reward(cfg.reward), build_node(cfg.sampler), build_node(cfg.task)
    sampler.check_gen_length(task.gen_length, model_block_size(cfg.model))
    return task, sampler, reward


def check_warmup(warmup: Any) -> None:
    """`warmup`: null, or a first stage `{algorithm: NODE, trainer: NODE}` (e.g. SFT before RL)
    whose trainer node holds per-stage settings only: a whole-run key is refused, naming
    where it belongs (`trainer.KEY`, read for every stage)."""
    if warmup is None:
        return
    if not isinstance(warmup, DictConfig) or set(warmup.keys()) != set(WARMUP_KEYS):
        got = sorted(warmup.keys()) if isinstance(warmup, DictConfig) else warmup
        raise ConfigError(
            "warmup must be null or {algorithm: ..., trainer: ...} (a first stage, e.g. SFT before RL; see "
            f"experiment/sudoku_tracerl.yaml), got {got}"
        )
    trainer = warmup.trainer
    for key in trainer.keys() if isinstance(trainer, DictConfig) else ():
        if key in RUN_KEYS:
            raise ConfigError(
                f"warmup.trainer.{key} is a whole-run setting, which a stage cannot set: set trainer.{key} "
                f"(it holds for every stage) and drop warmup.trainer.{key}"
            )
    for key in WARMUP_KEYS:
        check_node(f"warmup.{key}", warmup[key])


def model_block_size(node: DictConfig) -> int | None:
    """The block size of the model `node` describes, read from its config alone (no weights)."""
    from hydra.utils import get_object

    target = get_object(node._target_)
    if not hasattr(target, "config"):
        return None
    values = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")}
    return getattr(target.config(**values), "block_size", None)


def check_distribution(settings: TrainerConfig, stages: list[Stage]) -> None:
    """Refuse what the run's strategy cannot run: DeepSpeed not installed, an algorithm ZeRO-3
    cannot train, a stage batch the processes cannot share evenly."""
    if settings.strategy == "deepspeed":
        require_deepspeed()
    for stage in stages:
        stage.config.check_world(settings.num_processes)
        if settings.zero == 3 and not stage.algorithm.uniform_forwards:
            raise ConfigError(zero3_refusal(stage.name))


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
        raise unreadable(run_dir / CHECKPOINT_DIR / CHECKPOINT_CONFIG, exc) from None
    current = OmegaConf.to_container(cfg, resolve=True)

    def weights_part(config: dict) -> dict:
        part = {key: config.get(key) for key in RESUME_KEYS}
        if isinstance(part["model"], dict):
            part["model"] = {k: v for k, v in part["model"].items() if k not in FREE_MODEL_KEYS}
        return part

    differences = config_differences(weights_part(saved), weights_part(current))
    if differences:
        raise DllmError(
            f"cannot resume {run_dir / CHECKPOINT_DIR}: it was trained with another model — "
            f"{'; '.join(differences[:5])}. Resume with the config it was trained with, start a new run "
            f"directory (hydra.run.dir=...), or set trainer.resume=false to train from scratch"
        )


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, float]:
    """Plan, build, train and evaluate the run `cfg` describes in `run_dir` (default: Hydra's
    run directory under `dllm-train`, else `outputs/DATE/TIME`); its final metrics. Under a
    launcher, every process calls this with the same `cfg` and `run_dir`."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    if run_dir is None:
        run_dir = hydra.runtime.output_dir if hydra is not None else time.strftime("outputs/%Y-%m-%d/%H-%M-%S")
    run_dir = Path(run_dir)
    run = plan(cfg)
    runtime = start_runtime(run.settings.strategy, run.settings.device)
    reset_peak_memory(runtime.device)  # this run's peak, not an earlier run's in the same process (sweep workers)
    check_output_dir(run_dir)
    if runtime.is_main:
        recover(run_dir)  # finish a checkpoint swap a crash interrupted
    runtime.collective.barrier()
    check_resumable_config(cfg, run_dir)  # every process reads it, so all refuse together
    if not runtime.is_main:
        logging.getLogger("dllm").setLevel(logging.WARNING)
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    if runtime.is_main:
        (run_dir / CONFIG).write_text(config_text)
    seed_everything(cfg.seed)
    trainer = Trainer(
        run.components(),
        run.stages,
        run_dir,
        seed=cfg.seed,
        runtime=runtime,
        run_config=config_text,
        choices=dict(hydra.runtime.choices) if hydra is not None else None,
        settings=run.settings,
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
