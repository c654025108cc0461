"""Progress bars with ETA for loops whose steps happen inside another component (a sampler's
decoding loop): a forward hook on the model counts the network evaluations."""

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
