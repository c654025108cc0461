"""Ctrl-C during training: the step under way finishes, a checkpoint of it is written, and the run
stops with `TrainingInterrupted` (which `dllm-train` prints as one line with the command that
resumes, exiting with status 130). Stopping between two steps keeps the checkpoint exact: no
optimizer step half applied, the random streams and the rollout queue where a step left them, so
the resumed run repeats the uninterrupted one.

A second Ctrl-C before the write starts stops at once (`KeyboardInterrupt`: nothing more saved,
the last checkpoint intact); during the write it is ignored, so the write is never torn (it is
atomic anyway: `dllm.checkpoint`)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

NOTICE = b"\nCtrl-C: finishing this step, then writing a checkpoint (Ctrl-C again stops at once, without one)\n"


class TrainingInterrupted(Exception):
    """A run stopped by Ctrl-C after writing `checkpoint` at `step` of stage `stage`."""

    def __init__(self, checkpoint: Path, step: int, stage: str | None = None, is_main: bool = True) -> None:
        where = f"{stage} step {step}" if stage else f"step {step}"
        super().__init__(f"interrupted at {where}: checkpoint written to {checkpoint}")
        self.checkpoint, self.step, self.stage, self.is_main = checkpoint, step, stage, is_main


class InterruptRequest:
    """Inside `with`, in the main thread, the first SIGINT sets `requested` instead of raising;
    elsewhere (another thread, outside the block) SIGINT keeps its handler."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> InterruptRequest:
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next Ctrl-C raises at once
        os.write(2, NOTICE)  # a signal handler must not take the logging module's locks

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """SIGINT ignored inside the block (a checkpoint write), when this object installed a handler."""
        if self.previous is None:
            yield
            return
        before = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, before)
