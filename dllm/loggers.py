"""Where a run's numbers go: `metrics.jsonl` always, TensorBoard and Weights & Biases as options
(`trainer.loggers=[jsonl,tensorboard,wandb]`), and `samples.jsonl` (completions with their
rewards, from rollouts and evaluations). Only process 0 of a distributed run logs.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dllm.errors import DllmError
from dllm.run_files import METRICS, SAMPLES, TENSORBOARD_DIR, WANDB_ID

logger = logging.getLogger(__name__)

LOGGERS = ("jsonl", "tensorboard", "wandb")


class MetricsLog:
    """Appends one JSON object per line to `metrics.jsonl`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def close(self) -> None:
        pass


class TensorBoardLog:
    """Scalars to `RUN/tensorboard/` (`tensorboard --logdir RUN/tensorboard`), against the
    global step (stages laid end to end); tags are the metric names, prefixed by the stage."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise DllmError(
                "trainer.loggers has tensorboard, which is not installed; install it with: pip install tensorboard "
                '(or pip install -e ".[tensorboard]"), or drop it from trainer.loggers'
            ) from None
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))

    def write(self, record: dict[str, Any]) -> None:
        step = int(record.get("global_step", record.get("step", 0)))
        stage = record.get("stage")
        for key, value in record.items():
            if key in ("step", "global_step", "stage") or not isinstance(value, (int, float)):
                continue
            self.writer.add_scalar(f"{stage}/{key}" if stage else key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLog:
    """A Weights & Biases run under `RUN/wandb/`; `mode` offline (the default: no network,
    `wandb sync RUN/wandb/offline-run-*` uploads later), online, or disabled. A resumed run
    continues the same W&B run (its id is kept in `RUN/wandb_id`)."""

    def __init__(self, run_dir: Path, project: str, mode: str, config: dict[str, Any] | None) -> None:
        try:
            import wandb
        except ImportError:
            raise DllmError(
                "trainer.loggers has wandb, which is not installed; install it with: pip install wandb "
                '(or pip install -e ".[wandb]"), or drop it from trainer.loggers'
            ) from None
        id_file = run_dir / WANDB_ID
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=project, dir=str(run_dir), mode=mode, id=run_id, resume="allow", name=run_dir.name, config=config
        )

    def write(self, record: dict[str, Any]) -> None:
        step = int(record.get("global_step", record.get("step", 0)))
        stage = record.get("stage")
        values = {
            (f"{stage}/{key}" if stage else key): value
            for key, value in record.items()
            if key not in ("step", "global_step", "stage") and isinstance(value, (int, float))
        }
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class Loggers:
    """Every chosen logger, plus `samples.jsonl`; on a process other than 0, nothing."""

    def __init__(
        self,
        run_dir: Path,
        names: list[str],
        enabled: bool = True,
        wandb_project: str = "dllm",
        wandb_mode: str = "offline",
        config: dict[str, Any] | None = None,
    ) -> None:
        self.enabled, self.run_dir = enabled, run_dir
        self.sinks: list[Any] = []
        if not enabled:
            return
        for name in names:
            if name == "jsonl":
                self.sinks.append(MetricsLog(run_dir / METRICS))
            elif name == "tensorboard":
                self.sinks.append(TensorBoardLog(run_dir))
            elif name == "wandb":
                self.sinks.append(WandbLog(run_dir, wandb_project, wandb_mode, config))

    def write(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(record)

    def rewind(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Drop the records of `metrics.jsonl` and `samples.jsonl` that `keep` refuses (those a
        resumed run is about to log again), so that each file reads as one uninterrupted run."""
        if self.enabled:
            for name in (METRICS, SAMPLES):
                rewind_jsonl(self.run_dir / name, keep)

    def samples(self, source: str, context: dict[str, Any], samples: list[dict[str, Any]]) -> None:
        """Append `samples` (prompt, completion, reward, ...) to `samples.jsonl`, one per line."""
        if not self.enabled or not samples:
            return
        with (self.run_dir / SAMPLES).open("a") as handle:
            for sample in samples:
                handle.write(json.dumps({"source": source, **context, **sample}) + "\n")

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def check_logger_names(names: list[str]) -> None:
    from dllm.errors import ConfigError, did_you_mean

    for name in names:
        if name not in LOGGERS:
            raise ConfigError(
                f"unknown logger {name!r} in trainer.loggers{did_you_mean(name, LOGGERS)} (known: {', '.join(LOGGERS)})"
            )


def json_record(line: bytes) -> dict[str, Any] | None:
    """The JSON object on one line of a JSON Lines file, or None when it holds none (a torn or
    corrupted write)."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return None
    return record if isinstance(record, dict) else None


def rewind_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite the JSON Lines file `path` with only the records `keep` accepts, atomically (a
    temporary file, then `os.replace`: a crash leaves the old file or the new one). A line that
    is not a JSON object is dropped: a torn last line (a run killed mid-write) silently, any
    other with a warning naming FILE:LINE."""
    if not path.is_file():
        return
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    kept = []
    for number, line in enumerate(lines, 1):
        record = json_record(line)
        if record is None:
            if number < len(lines):
                logger.warning("%s:%d is not a JSON record (a torn write); dropped it", path, number)
            continue
        if keep(record):
            kept.append(line + b"\n")
    if len(kept) == len(lines):
        return
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as handle:
        handle.writelines(kept)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
