"""Progress bars with ETA for loops whose steps happen inside another component (a sampler's
decoding loop): a forward hook on the model counts the network evaluations, or advances a bar of
other units (completions) a share per evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from tqdm.auto import tqdm


@contextlib.contextmanager
def forward_progress(model: torch.nn.Module, expected: int, desc: str, enabled: bool = True) -> Iterator[tqdm]:
    """A tqdm bar advanced by every forward pass of `model` inside the block; `expected`
    forwards make it full (a decoder that stops early or runs more just ends there)."""
    quiet = {} if enabled else {"disable": True}  # enabled: TQDM_DISABLE=1 still hides it

    def count(*args) -> None:  # a forward hook that returned a value would replace the output
        bar.update(1)

    bar = tqdm(total=expected, desc=desc, leave=False, dynamic_ncols=True, **quiet)
    handle = model.register_forward_hook(count)
    try:
        yield bar
    finally:
        handle.remove()
        bar.close()


@contextlib.contextmanager
def advance_by_forwards(bar: tqdm, model: torch.nn.Module, amount: int, expected: int) -> Iterator[None]:
    """Advance `bar` by `amount` units (e.g. completions) over the block, a share per forward pass
    of `model` (`expected` passes make the whole, held one unit short until the block ends), so a
    long sampler call moves the bar and its ETA; exactly `amount` when the block ends."""
    start, forwards = bar.n, 0

    def count(*args) -> None:  # a forward hook that returned a value would replace the output
        nonlocal forwards
        forwards += 1
        reached = start + min(amount - 1, amount * forwards // max(expected, 1))
        if reached > bar.n:
            bar.update(reached - bar.n)

    handle = model.register_forward_hook(count)
    try:
        yield
    finally:
        handle.remove()
    bar.update(start + amount - bar.n)
