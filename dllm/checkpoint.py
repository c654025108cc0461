"""Checkpoints: the one place that writes and reads them.

A run's checkpoint is `RUN_DIR/checkpoint/`: the model (`save_pretrained`), its tokenizer,
`trainer_state.pt` (stage, step, optimizer, scheduler, random states, the algorithm's state),
and whatever models the algorithm keeps (a frozen reference, a value model) in their own
subdirectories. It is written to a temporary directory and swapped in by rename, so a crash
mid-write leaves the last good one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dllm.errors import DllmError

CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE = "trainer_state.pt"


def save_checkpoint(
    run_dir: str | Path,
    model,
    tokenizer,
    trainer_state: dict[str, Any],
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write `run_dir/checkpoint/` atomically; `write_extra(directory)` adds files to it."""
    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT_DIR
    staging = run_dir / f".{CHECKPOINT_DIR}.partial"
    retired = run_dir / f".{CHECKPOINT_DIR}.old"
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if write_extra is not None:
        write_extra(staging)
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


def load_model_weights(model: torch.nn.Module, directory: str | Path) -> None:
    """Load the safetensors weights `save_pretrained` wrote into `model`, in place; a tensor
    the model lacks or a weight the files lack (other than tied ones) is an error."""
    from safetensors.torch import load_file

    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (directory / name).is_file():
            raise DllmError(f"checkpoint {str(directory)!r} lacks {name}; it cannot be resumed")
        state.update(load_file(directory / name))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or ())
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        raise DllmError(
            f"checkpoint {str(directory)!r} does not fit the model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}; resume with the config the run was started with"
        )
