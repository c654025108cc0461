"""Checkpoints: the one place that writes and reads them.

A run's latest checkpoint is `RUN_DIR/checkpoint/`: the model (`save_pretrained`), its
tokenizer, `trainer_state.pt` (stage, step, optimizer, scheduler, random states, the
algorithm's state — those of process 0), `run_config.yaml` (the resolved config of the run
that trained these weights, to refuse resuming with another model), whatever models the algorithm keeps (a
frozen reference, a value model) in their own subdirectories, and in a multi-process run
`rank_states/rankR.pt` (each process's own random streams and algorithm state) and, under
DeepSpeed, `deepspeed/` (the partitioned optimizer and model states).

Writing is atomic: everything goes to `.checkpoint.partial/`, a `COMPLETE` marker is
written last, then renames swap it in. A crash at any point leaves a complete checkpoint
(`recover` finishes an interrupted swap), never a torn one. With `keep > 1`, the replaced
checkpoint moves to `RUN_DIR/checkpoints/LABEL/` and only the newest `keep - 1` of those stay.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dllm.distributed import Collective
from dllm.errors import DllmError, unreadable
from dllm.run_files import CHECKPOINT_CONFIG, CHECKPOINT_DIR, COMPLETE, KEPT_DIR, RANK_STATES, TRAINER_STATE

STAGING, RETIRED = f".{CHECKPOINT_DIR}.partial", f".{CHECKPOINT_DIR}.old"


def recover(run_dir: Path) -> None:
    """Finish a swap a crash interrupted, and drop leftovers of an unfinished write: with no
    `checkpoint/`, a complete staging directory (the newest) or the retired one is put back."""
    final, staging, retired = run_dir / CHECKPOINT_DIR, run_dir / STAGING, run_dir / RETIRED
    if not final.exists():
        if staging.is_dir() and (staging / COMPLETE).is_file():
            staging.rename(final)
        elif retired.is_dir():
            retired.rename(final)
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)


def save_checkpoint(
    run_dir: str | Path,
    model,
    tokenizer,
    trainer_state: dict[str, Any],
    write_extra: Callable[[Path], None] | None = None,
    *,
    keep: int = 1,
    label: str = "",
    collective: Collective | None = None,
    rank_state: dict[str, Any] | None = None,
    write_shards: Callable[[Path], None] | None = None,
    model_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    run_config: str | None = None,
) -> Path:
    """Write `run_dir/checkpoint/` atomically and return it.

    Every process of a distributed run calls this: process 0 writes the model, tokenizer,
    `write_extra(directory)`, the trainer state and `run_config`; each process writes its
    `rank_state` (when there are several) and `write_shards(directory)` (e.g. DeepSpeed's
    partitions); `model_context()` is entered by all around the model's save (ZeRO-3 gathers
    the weights there). `keep`: checkpoints kept in all; the replaced one is kept as
    `checkpoints/LABEL` when `keep > 1`.
    """
    run_dir = Path(run_dir)
    collective = collective or Collective()
    final, staging, retired = run_dir / CHECKPOINT_DIR, run_dir / STAGING, run_dir / RETIRED
    if collective.is_main:
        recover(run_dir)
        staging.mkdir(parents=True)
    collective.barrier()
    if write_shards is not None:
        write_shards(staging)
    if rank_state is not None and collective.active:
        (staging / RANK_STATES).mkdir(exist_ok=True)
        torch.save(rank_state, staging / RANK_STATES / f"rank{collective.rank}.pt")
    with model_context():
        if collective.is_main:
            model.save_pretrained(staging)
    if collective.is_main:
        tokenizer.save_pretrained(staging)
        if write_extra is not None:
            write_extra(staging)
        if run_config is not None:
            (staging / CHECKPOINT_CONFIG).write_text(run_config)
        torch.save(trainer_state, staging / TRAINER_STATE)
    collective.barrier()
    if collective.is_main:
        (staging / COMPLETE).write_text(json.dumps({"label": label, "world_size": collective.world_size}))
        if final.exists():
            previous = _label(final)
            if keep > 1 and previous:
                (run_dir / KEPT_DIR).mkdir(exist_ok=True)
                kept = run_dir / KEPT_DIR / previous
                shutil.rmtree(kept, ignore_errors=True)
                final.rename(kept)
            else:
                final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
        prune(run_dir, keep - 1)
    collective.barrier()
    return final


def _label(directory: Path) -> str:
    try:
        return json.loads((directory / COMPLETE).read_text()).get("label", "")
    except (OSError, ValueError):
        return ""


def kept_checkpoints(run_dir: str | Path) -> list[Path]:
    """The older checkpoints `keep > 1` retained, oldest first (their labels sort by stage, then step)."""
    folder = Path(run_dir) / KEPT_DIR
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` of the retained older checkpoints."""
    kept = kept_checkpoints(run_dir)
    for old in kept[: max(0, len(kept) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(run_dir: str | Path) -> Path | None:
    """`run_dir/checkpoint` when there is one, else None (call `recover` first to finish a swap a
    crash interrupted). A `checkpoint/` without `trainer_state.pt` (emptied, or the file lost) is
    an error: starting over would overwrite the weights it still holds."""
    final = Path(run_dir) / CHECKPOINT_DIR
    if not final.exists():
        return None
    if not (final / TRAINER_STATE).is_file():
        what = "is empty" if final.is_dir() and not any(final.iterdir()) else f"has no {TRAINER_STATE}"
        raise DllmError(
            f"{final} {what}, so the run cannot resume from it, and starting over would overwrite it: restore "
            f"{final / TRAINER_STATE}, or start afresh in another run directory (hydra.run.dir=...) or here with "
            f"trainer.resume=false (its first checkpoint replaces this one)"
        )
    return final


def read_torch(path: Path) -> Any:
    """`torch.load` of a checkpoint file onto the CPU; a damaged file is an `unreadable` error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors alike
        raise unreadable(path, exc) from None


def load_trainer_state(run_dir: str | Path, rank: int | None = None) -> dict[str, Any] | None:
    """The trainer state of `run_dir`'s checkpoint, or None when it has none; with `rank`,
    that process's own states (random streams, algorithm) laid over it when the checkpoint
    has them."""
    directory = checkpoint_dir(run_dir)
    if directory is None:
        return None
    state = read_torch(directory / TRAINER_STATE)
    if not isinstance(state, dict) or "step" not in state:
        raise unreadable(directory / TRAINER_STATE, ValueError("no trainer state in it"))
    own = directory / RANK_STATES / f"rank{rank}.pt"
    if rank is not None and own.is_file():
        state.update(read_torch(own))
        state["has_rank_state"] = True
    return state


def load_run_config(run_dir: str | Path) -> str | None:
    """The resolved config (YAML) the checkpoint of `run_dir` was written under, if it kept one."""
    path = Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_CONFIG
    return path.read_text() if path.is_file() else None


def load_model_weights(model: torch.nn.Module, directory: str | Path) -> None:
    """Load the safetensors weights `save_pretrained` wrote into `model`, in place; a tensor
    the model lacks or a weight the files lack (other than tied ones) is an error."""
    from safetensors.torch import load_file

    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise unreadable(index, exc) from None
    else:
        files = ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (directory / name).is_file():
            raise DllmError(f"checkpoint {str(directory)!r} lacks {name}; it cannot be resumed")
        try:
            state.update(load_file(directory / name))
        except Exception as exc:  # safetensors' own error type, or an OSError
            raise unreadable(directory / name, exc) from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or ())
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        raise DllmError(
            f"checkpoint {str(directory)!r} does not fit the model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}; resume with the config the run was started with"
        )


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: saved -> current` for every leaf that differs between two nested mappings."""
    differences = []
    for key in sorted(set(saved) | set(current), key=str):
        name = f"{prefix}{key}"
        old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, f"{name}.")
        elif old != new:
            differences.append(f"{name} is {old!r} in the checkpoint but {new!r} now")
    return differences
