"""The training loop: optimizer, schedule, accumulation, clipping, distribution, logging, checkpoints.

The algorithm supplies micro-batches and losses (`dllm.algorithms.base`); everything else
about a run — including resuming from its checkpoint and running on several processes
(`dllm.distributed`) — lives here, once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dllm.algorithms.base import Algorithm, TrainContext
from dllm.checkpoint import load_model_weights, load_trainer_state, save_checkpoint
from dllm.console import metrics_line, run_summary
from dllm.distributed import Runtime, full_replica, gathered_parameters, host_values, start_runtime, start_sync
from dllm.errors import ConfigError, DllmError
from dllm.evaluation import evaluate
from dllm.interrupt import InterruptRequest, TrainingInterrupted
from dllm.loggers import Loggers, MetricsLog
from dllm.metric_window import MetricWindow
from dllm.peak_memory import peak_memory
from dllm.run_files import CHECKPOINT_DIR, EVAL
from dllm.trainer_config import RunSettings, StageSettings, TrainerConfig, lr_factor

logger = logging.getLogger(__name__)

__all__ = ["Components", "MetricsLog", "RunSettings", "Stage", "StageSettings", "Trainer", "TrainerConfig", "lr_factor"]


@dataclass
class Components:
    model: torch.nn.Module
    tokenizer: Any
    task: Any
    sampler: Any
    reward: Any
    algorithm: Algorithm


@dataclass
class Stage:
    """One phase of a run: an algorithm trained with its own optimizer and schedule (e.g. an
    SFT `warmup` before the `main` RL stage). Stages run in order on the same model."""

    name: str
    config: StageSettings
    algorithm: Algorithm


def zero3_refusal(stage: str) -> str:
    return (
        f"trainer=zero3 cannot train the {stage} stage's algorithm: ZeRO-3 shards every weight, so each forward "
        f"pass is a collective all processes must run together, and rollouts and their replays run a different "
        f"number of forward passes on each process (EOS, decoding steps); use trainer=zero2 (optimizer states and "
        f"gradients sharded, weights whole) or trainer=ddp"
    )


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on the matrices (linear weights, embeddings), none on
    the vectors (norm gains, biases), whose decay only pulls them towards 0 (as nanoGPT and most
    trainers do). Each group says whether it `decays`, so a new stage can set its own rate."""
    trained = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trained if p.dim() >= 2], "weight_decay": weight_decay, "decays": True},
        {"params": [p for p in trained if p.dim() < 2], "weight_decay": 0.0, "decays": False},
    ]
    return [group for group in groups if group["params"]]


def local_seed(seed: int, rank: int) -> int:
    """The seed of process `rank`'s own generator (process 0 of one process: `seed` itself)."""
    if rank == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:rank{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of the tokenizer's vocabulary and special tokens."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items())
    return hashlib.sha256(json.dumps([vocab, special]).encode()).hexdigest()[:16]


class Trainer:
    """Runs `stages` in order on `components.model` under the whole run's `settings` (by
    default the main stage's `TrainerConfig`, which holds both); checkpoints and resumes
    mid-stage; on several processes, each process runs this same loop (see `dllm.distributed`).
    `dllm.run` plans and checks a run before it builds one."""

    def __init__(
        self,
        components: Components,
        stages: list[Stage],
        run_dir: Path,
        seed: int,
        runtime: Runtime | None = None,
        run_config: str | None = None,
        choices: dict[str, str] | None = None,
        settings: RunSettings | None = None,
    ) -> None:
        """`choices`: the config group options the run was composed from (Hydra's
        `runtime.choices`), which name its components in the summary printed at start."""
        self.c = components
        self.seed, self.choices = seed, choices
        self.stages = stages
        self.run_dir = run_dir
        self.run_config = run_config
        self.settings = main = settings or stages[-1].config
        if not isinstance(main, RunSettings):
            raise ConfigError("Trainer needs the whole run's settings: pass settings= or a TrainerConfig main stage")
        self.runtime = runtime or start_runtime(main.strategy, main.device)
        self.dist = self.runtime.collective
        self.device = self.runtime.device
        self.zero = main.zero
        for stage in stages:
            stage.config.check_world(self.dist.world_size)
            if self.zero == 3 and not stage.algorithm.uniform_forwards:
                raise ConfigError(zero3_refusal(stage.name))
        self.autocast_dtype = main.autocast_dtype(self.device)
        self.model = components.model.to(self.device)
        self.dist.broadcast_module(self.model)  # identical starting weights, whatever each process drew
        self.rng = random.Random(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.local_generator = (
            torch.Generator(device=self.device).manual_seed(local_seed(seed, self.dist.rank))
            if self.dist.active
            else self.generator
        )
        self.loggers = Loggers(
            run_dir, list(main.loggers), self.dist.is_main, main.wandb_project, main.wandb_mode, self._config_dict()
        )
        first = stages[0].config
        optimizer = torch.optim.AdamW(
            decay_groups(self.model, first.weight_decay), lr=first.lr, betas=(first.beta1, first.beta2)
        )
        self.sync = start_sync(
            self.model, optimizer, self.dist, main.strategy, main.zero_stage, first.max_grad_norm, main.deepspeed
        )
        self.optimizer = self.sync.optimizer
        self.last_samples: list[dict[str, Any]] | None = None
        self.elapsed = 0.0  # seconds of optimizer steps and evaluations, carried over a resume
        self.skipped_steps = self.nonfinite_in_a_row = 0  # trainer.on_nonfinite=skip's tally
        self.window = MetricWindow()  # the steps since the last log line
        self.interrupt = InterruptRequest()  # Ctrl-C while `train` runs: stop after the step, saved
        self.saved_at: tuple[int, int] | None = None  # (stage, step) of the last checkpoint written
        self.begin_stage(0)

    def _config_dict(self) -> dict[str, Any] | None:
        if self.run_config is None:
            return None
        import yaml

        return yaml.safe_load(self.run_config)

    @property
    def stage(self) -> Stage:
        return self.stages[self.stage_index]

    @property
    def config(self) -> StageSettings:
        return self.stage.config

    @property
    def shows_progress(self) -> bool:
        """Progress bars: on the main process, unless the run's trainer.progress turns them off."""
        return self.dist.is_main and self.settings.progress

    def begin_stage(self, index: int) -> None:
        """A fresh optimizer state and schedule for stage `index`, at its step 0."""
        self.stage_index, self.step = index, 0
        self.window.reset()
        cfg = self.config
        self.sync.new_stage(cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay, cfg.max_grad_norm)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, cfg.warmup, cfg.max_steps, cfg.min_lr_ratio)
        )
        self.context = TrainContext(
            self.model,
            self.c.tokenizer,
            self.c.task,
            self.c.sampler,
            self.c.reward,
            cfg.batch_size // cfg.grad_accum // self.dist.world_size,
            self.rng,
            self.generator,
            self.device,
            cfg.batch_size,
            self.autocast_dtype,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            collective=self.dist,
            local_generator=self.local_generator,
            show_progress=self.shows_progress,
            max_batch_rows=cfg.max_batch_rows,
        )
        if self.zero == 3:
            # The algorithm copies the policy at its start (frozen reference, value model); under
            # ZeRO-3 the live module holds a shard of each weight, so it sees a whole-weight replica.
            replica = full_replica(self.model, self.zero, self.device)
            self.stage.algorithm.start(TrainContext(**{**self.context.__dict__, "model": replica}))
            del replica
        else:
            self.stage.algorithm.start(self.context)

    # ---- checkpoints -----------------------------------------------------------------

    def shared_state(self) -> dict[str, Any]:
        """What every process holds alike (process 0 writes it), plus process 0's own states."""
        return {
            "stage": self.stage_index,
            "step": self.step,
            "elapsed": self.elapsed,
            "skipped_steps": self.skipped_steps,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "metric_window": self.window.state_dict(),
            "world_size": self.dist.world_size,
            "strategy": self.settings.strategy,
            "zero_stage": self.zero,
            "tokenizer": tokenizer_fingerprint(self.c.tokenizer),
            "optimizer": self.sync.optimizer_state(),
            "scheduler": self.scheduler.state_dict(),
            "data_rng": self.rng.getstate(),
            "noise_generator": self.generator.get_state(),
            **self.rank_state(),
        }

    def rank_state(self) -> dict[str, Any]:
        """What each process holds for itself: its own random streams and the algorithm's state
        (an RL process's rollout rows)."""
        return {
            "algorithm": self.stage.algorithm.state_dict(),
            "local_generator": self.local_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        }

    def state(self) -> dict[str, Any]:
        return self.shared_state()

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state: its stage (models already loaded), step and random states."""
        checkpoint = self.run_dir / CHECKPOINT_DIR
        self.begin_stage(state.get("stage", 0))
        self.stage.algorithm.load_models(checkpoint)
        self.step = state["step"]
        self.elapsed = state.get("elapsed", 0.0)
        self.skipped_steps = state.get("skipped_steps", 0)
        self.nonfinite_in_a_row = state.get("nonfinite_in_a_row", 0)
        if "metric_window" in state:
            self.window.load_state_dict(state["metric_window"])
        self.sync.restore(checkpoint, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stage.algorithm.load_state_dict(state.get("algorithm", {}))
        self.rng.setstate(state["data_rng"])
        self.generator.set_state(state["noise_generator"])
        if self.dist.active and "local_generator" in state and state.get("has_rank_state"):
            self.local_generator.set_state(state["local_generator"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])

    def save(self) -> Path:
        """Write the checkpoint (every process calls this; see `save_checkpoint`)."""
        label = f"{self.stage_index:02d}-{self.stage.name}-step{self.step:08d}"
        path = save_checkpoint(
            self.run_dir,
            self.model,
            self.c.tokenizer,
            self.shared_state() if self.dist.is_main else {},
            self.stage.algorithm.save_models,
            keep=self.settings.keep_checkpoints,
            label=label,
            collective=self.dist,
            rank_state=self.rank_state(),
            write_shards=self.sync.shard_writer(),
            model_context=lambda: gathered_parameters(self.model, self.zero),
            run_config=self.run_config,
        )
        self.saved_at = (self.stage_index, self.step)
        return path

    def resume_if_possible(self) -> None:
        """Continue from the run directory's checkpoint when `trainer.resume` (a run-level key:
        it decides for every stage) and there is one; else start afresh at stage 0, step 0 without
        reading it (its weights are replaced at the first save). Either way the logs drop what was
        logged after that point, so that they read as one uninterrupted run."""
        checkpoint = self.run_dir / CHECKPOINT_DIR
        if self.settings.resume:
            state = load_trainer_state(self.run_dir, self.dist.rank)
            if state is not None:
                self.check_resumable(state)
                if self.sync.loads_model_weights:
                    load_model_weights(self.model, checkpoint)
                self.restore(state)
                logger.info("resumed from %s: stage %s, step %d", checkpoint, self.stage.name, self.step)
        elif checkpoint.exists() and self.dist.is_main:
            logger.warning(
                "trainer.resume=false: training from scratch; %s is not read, and the first checkpoint replaces it",
                checkpoint,
            )
        self.loggers.rewind(self.logged_by_now)

    def logged_by_now(self, record: dict[str, Any]) -> bool:
        """Whether a log record belongs to the run up to its current stage and step (a record of
        a stage this run does not have is kept)."""
        names = [stage.name for stage in self.stages]
        stage = record.get("stage")
        if stage is not None and stage not in names:
            return True
        position = (names.index(stage) if stage is not None else 0, record.get("step", 0))
        evaluation = record.get("source") == "eval" or any(str(key).startswith("eval/") for key in record)
        if evaluation and position == (self.stage_index, self.step) and self.step >= self.config.max_steps:
            return False  # the stage's closing evaluation, which a run resumed at its last step runs again
        return position <= (self.stage_index, self.step)

    def check_resumable(self, state: dict[str, Any]) -> None:
        """Refuse a checkpoint this run cannot continue, naming the difference."""
        where = self.run_dir / CHECKPOINT_DIR
        fresh = "start a new run directory (hydra.run.dir=...) or set trainer.resume=false to train from scratch"
        saved_tokenizer = state.get("tokenizer")
        if saved_tokenizer is not None and saved_tokenizer != tokenizer_fingerprint(self.c.tokenizer):
            raise DllmError(
                f"cannot resume {where}: it was trained with another tokenizer (vocabulary or special tokens "
                f"differ); use the tokenizer it was trained with, or {fresh}"
            )
        strategy, world, zero = state.get("strategy", "none"), state.get("world_size", 1), state.get("zero_stage")
        here = self.settings.strategy
        if (strategy == "deepspeed") != (here == "deepspeed") or (zero is not None and zero != self.zero):
            raise DllmError(
                f"cannot resume {where}: it was written with trainer.strategy={strategy}"
                f"{f' (ZeRO-{zero})' if zero else ''} and this run uses {here}"
                f"{f' (ZeRO-{self.zero})' if self.zero else ''}; resume with the same trainer, or {fresh}"
            )
        if world != self.dist.world_size:
            if strategy == "deepspeed":
                raise DllmError(
                    f"cannot resume {where}: its DeepSpeed optimizer is partitioned over {world} processes and this "
                    f"run has {self.dist.world_size}; set trainer.num_processes={world}, or {fresh}"
                )
            logger.warning(
                "resuming a checkpoint written by %d process(es) on %d: the run continues, but each process's own "
                "random stream restarts, so it will not repeat an uninterrupted run exactly",
                world,
                self.dist.world_size,
            )

    # ---- the loop --------------------------------------------------------------------

    def train(self) -> dict[str, float]:
        """Run every stage to its `max_steps`, checkpoint, evaluate after each stage; return the
        final evaluation metrics."""
        if self.dist.is_main:
            for line in run_summary(
                self.run_dir, self.c, self.stages, self.seed, self.device, self.autocast_dtype, self.choices
            ):
                logger.info(line)
        try:
            with self.interrupt:
                while True:
                    self.run_stage()
                    result = self.logged_evaluation()
                    if self.stage_index == len(self.stages) - 1:
                        break  # a Ctrl-C during the closing evaluation: the run ends as it would anyway
                    self.stop_if_interrupted()
                    self.begin_stage(self.stage_index + 1)
                    self.save()
                with self.interrupt.shielded():
                    self.save()
            if self.dist.is_main:
                (self.run_dir / EVAL).write_text(json.dumps(result.__dict__, indent=2))
        finally:
            self.loggers.close()
        return result.metrics()

    def stop_if_interrupted(self) -> None:
        """After a Ctrl-C (on any process), write a checkpoint of this step, SIGINT ignored while
        writing, and raise `TrainingInterrupted`; else nothing."""
        requested = self.dist.any(self.interrupt.requested) if self.dist.active else self.interrupt.requested
        if not requested:
            return
        if self.saved_at != (self.stage_index, self.step):
            with self.interrupt.shielded():
                self.save()
        stage = self.stage.name if len(self.stages) > 1 else None
        raise TrainingInterrupted(self.run_dir / CHECKPOINT_DIR, self.step, stage, self.dist.is_main)

    def global_step(self) -> int:
        """Optimizer steps since the run began, stages laid end to end."""
        return sum(s.config.max_steps for s in self.stages[: self.stage_index]) + self.step

    def log(self, record: dict[str, Any]) -> None:
        prefix = {"stage": self.stage.name} if len(self.stages) > 1 else {}
        self.loggers.write({**prefix, "step": self.step, **record})

    def log_samples(self, source: str, samples: list[dict[str, Any]]) -> None:
        context = {"stage": self.stage.name, "step": self.step}
        self.loggers.samples(source, context, samples)

    def run_stage(self) -> None:
        cfg = self.config
        self.model.train()
        desc = self.stage.name if len(self.stages) > 1 else "train"
        shown = self.shows_progress
        quiet = {} if shown else {"disable": True}  # shown: TQDM_DISABLE=1 still hides it
        progress = tqdm(total=cfg.max_steps, initial=self.step, desc=desc, dynamic_ncols=True, **quiet)
        with logging_redirect_tqdm():  # log lines print above the bar, not through it
            self._steps(progress)
        progress.close()

    def _steps(self, progress: tqdm) -> None:
        """The optimizer steps of the current stage from its current step to its `max_steps`."""
        cfg = self.config
        stage = self.stage.name if len(self.stages) > 1 else None
        sample_every = self.settings.sample_every
        while self.step < cfg.max_steps:
            began = time.perf_counter()
            record = self._optimizer_step()
            step_time = time.perf_counter() - began
            self.elapsed += step_time
            record.update(lr=self.scheduler.get_last_lr()[0], step_time=step_time, elapsed=self.elapsed)
            self.scheduler.step()
            self.step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{record['loss']:.4f}")
            self.window.add(record, self.stage.algorithm.trained_rollout())
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                line = self.window.summary()
                self.window.reset()
                self.log(line)
                if self.dist.is_main:
                    logger.info(metrics_line({"step": self.step, **line}, cfg.max_steps, stage))
            if sample_every and self.step % sample_every == 0:
                samples = self.stage.algorithm.samples()
                if samples is not self.last_samples:  # a rollout that spans several steps is logged once
                    self.log_samples("rollout", samples)
                    self.last_samples = samples
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save()
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                self.logged_evaluation()
                self.model.train()
            self.stop_if_interrupted()

    def logged_evaluation(self):
        """Evaluate, count its time in `elapsed`, log the metrics with the stage's running totals
        (`Algorithm.counters`) and the peak memory so far; the evaluation's result."""
        began = time.perf_counter()
        result = self.evaluate()
        self.elapsed += time.perf_counter() - began
        work = {**self.stage.algorithm.counters(), **peak_memory(self.device)}
        self.log({**result.metrics(), **work, "elapsed": self.elapsed})
        if self.dist.is_main:
            logger.info(
                "evaluation at %sstep %d: accuracy %.4g, mean reward %.4g over %d completions",
                f"{self.stage.name} " if len(self.stages) > 1 else "",
                self.step,
                result.accuracy,
                result.mean_reward,
                result.num_samples,
            )
        return result

    def _optimizer_step(self) -> dict[str, float]:
        """One optimizer step over the stage's micro-batches; its metrics. The losses and metrics
        stay on the device until the step's end, where they come to the host in one copy: the
        one synchronisation per step, which the non-finite guard needs before the update."""
        cfg = self.config
        algorithm = self.stage.algorithm
        totals: dict[str, float | torch.Tensor] = {}
        self.context.step = self.step
        self.sync.zero_grad()
        world = self.dist.world_size
        ran = False
        with self.sync.step_context():
            for batch in algorithm.micro_batches(self.context, cfg.grad_accum):
                # Shares are fractions of the global step; gradient reductions average over
                # processes, so each process back-propagates world_size x its share.
                scale = batch.share * world
                out = algorithm.loss_and_backward(self.model, batch, self.generator, scale, self.context.autocast)
                ran = True
                for key, value in {"loss": out.loss, **out.metrics}.items():
                    if isinstance(value, torch.Tensor):  # in float64, as Python floats would add up
                        value = value.detach().double()
                    totals[key] = totals.get(key, 0.0) + value * batch.share
            if not ran and self.sync.needs_null_backward():
                self._null_backward()
        totals = self.dist.sum_metrics(totals)  # floats, the same on every process: all decide alike below
        totals.setdefault("loss", 0.0)
        # A non-finite loss never reaches the optimizer; a non-finite norm updates nothing.
        grad_norm = self.sync.finish(cfg.max_grad_norm) if math.isfinite(totals["loss"]) else math.nan
        self.context.step_applied = math.isfinite(totals["loss"]) and math.isfinite(grad_norm)
        if not self.context.step_applied:
            self.sync.zero_grad()
            self.count_nonfinite(totals["loss"], grad_norm)
        else:
            self.nonfinite_in_a_row = 0
        totals.update(host_values(algorithm.after_step(self.context)))
        if self.skipped_steps:
            totals["skipped_steps"] = self.skipped_steps
        return {**totals, "grad_norm": grad_norm}

    def count_nonfinite(self, loss: float, grad_norm: float) -> None:
        """A step whose loss or gradient is not finite, not applied to the weights: under
        `trainer.on_nonfinite=stop`, or past `max_nonfinite_in_a_row` such steps in a row, the
        run stops here — before the next checkpoint, so none ever holds non-finite weights."""
        main = self.settings
        self.skipped_steps += 1
        self.nonfinite_in_a_row += 1
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
        where = f"{self.stage.name} step {self.step + 1}" if len(self.stages) > 1 else f"step {self.step + 1}"
        if main.on_nonfinite == "stop":
            raise DllmError(
                f"non-finite {what} at {where}: stopped before updating the weights (the last checkpoint is "
                f"intact); lower trainer.lr (now {self.config.lr:g}), check the data, or set "
                f"trainer.on_nonfinite=skip to drop such steps"
            )
        if self.nonfinite_in_a_row > main.max_nonfinite_in_a_row:
            raise DllmError(
                f"{self.nonfinite_in_a_row} optimizer steps in a row had a non-finite loss or gradient (the last: "
                f"{what} at {where}), more than trainer.max_nonfinite_in_a_row={main.max_nonfinite_in_a_row}: "
                f"stopped (the last checkpoint is intact); lower trainer.lr (now {self.config.lr:g}) or check the data"
            )
        logger.warning("non-finite %s at %s: skipped that optimizer step (trainer.on_nonfinite=skip)", what, where)

    def _null_backward(self) -> None:
        """A zero gradient from a process that got no rows this step (an RL process whose groups
        were all filtered out), so that DeepSpeed's reduction sees every process."""
        ids = torch.full((1, 1), int(self.model.mask_token_id), dtype=torch.long, device=self.device)
        (self.model(ids).logits.float().sum() * 0.0).backward()

    def evaluate(self):
        """The held-out evaluation, sharded by batch over the processes (same numbers as one
        process); under ZeRO-3 on a whole-weight replica, since decoding runs a different number
        of forward passes on each process."""
        model = full_replica(self.model, self.zero, self.device)
        result = evaluate(
            model,
            self.c.tokenizer,
            self.c.sampler,
            self.c.task,
            self.c.reward,
            batch_size=self.config.eval_batch_size,
            max_batch_rows=self.config.max_batch_rows,
            collective=self.dist,
            show_progress=self.shows_progress,
        )
        if self.dist.is_main:
            self.log_samples("eval", result.samples)
        return result
