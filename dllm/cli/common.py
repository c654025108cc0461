"""What every command shares: user errors print as one line, never as a traceback."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from dllm.errors import DllmError

F = TypeVar("F", bound=Callable[..., object])


def reports_user_errors(function: F) -> F:
    """Run `function`; a `DllmError` prints `error: MESSAGE` to stderr and exits with status 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except DllmError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
