"""Checkpoints: the one place that writes and reads them.

A run's checkpoint is `RUN_DIR/checkpoint/`: the model (`save_pretrained`), its tokenizer,
and `trainer_state.pt` (optimizer, scheduler, step, random states). It is written to a
temporary directory and swapped in by rename, so a crash mid-write leaves the last good one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE = "trainer_state.pt"


def save_checkpoint(run_dir: str | Path, model, tokenizer, trainer_state: dict[str, Any]) -> Path:
    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT_DIR
    staging = run_dir / f".{CHECKPOINT_DIR}.partial"
    retired = run_dir / f".{CHECKPOINT_DIR}.old"
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    torch.save(trainer_state, staging / TRAINER_STATE)
    if final.exists():
        final.rename(retired)
    staging.rename(final)
    shutil.rmtree(retired, ignore_errors=True)
    return final


def load_trainer_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The trainer state of `run_dir`'s checkpoint, or None when it has none."""
    path = Path(run_dir) / CHECKPOINT_DIR / TRAINER_STATE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
