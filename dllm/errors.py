"""Errors `dllm` raises for bad input: each message names the input and the fix.

Command-line entry points catch `DllmError` and print its message alone, so a user never
sees a traceback from deep inside torch for a mistake in their own arguments.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class DllmError(Exception):
    """Base class of every error caused by user input (config, names, files, arguments)."""


class ConfigError(DllmError, ValueError):
    """A configuration value, key or combination that cannot work."""


class UnknownNameError(DllmError, KeyError):
    """A name that no registry, group or option knows."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class PluginError(DllmError, RuntimeError):
    """A third-party plugin that failed to load or to register."""


def did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """`" — did you mean 'x'?"` for the closest known names, or an empty string. Names are
    compared bare and shown after `prefix` (`trainer.` for the keys of `trainer`)."""
    matches = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not matches:
        return ""
    return " — did you mean " + " or ".join(repr(prefix + m) for m in matches) + "?"


def unreadable(path: Path | str, exc: BaseException) -> DllmError:
    """The one-line error for a checkpoint file that exists but cannot be read."""
    why = (str(exc).strip().splitlines() or [""])[0][:200]
    return DllmError(
        f"cannot read {path}: it is truncated or corrupted ({type(exc).__name__}: {why}); restore it, resume "
        f"from an older checkpoint (copy one of checkpoints/ over checkpoint/), or start afresh with "
        f"trainer.resume=false or another hydra.run.dir"
    )
