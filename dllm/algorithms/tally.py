"""An RL micro-batch's loss in parts, and the metrics tallied over them, on the device.

The RL loss is linear in per-token values, so it is summed over independent parts (one per
replayed decoding step for the trace estimator) and back-propagated part by part. Each part's
loss and metric sums stay detached tensors on the device: nothing waits for the GPU per part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from torch import Tensor


class Tally:
    """Metrics of a micro-batch summed over its parts: plain sums, and token means."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, Tensor] = {}

    def add(self, name: str, value: Tensor) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value.detach()

    def mean(self, name: str, values: Tensor, covered: Tensor) -> None:
        """Add to the mean of `values` [N, G] over the `covered` tokens."""
        self.add(name, (values.detach() * covered).sum())
        self.counts[name] = self.counts.get(name, 0.0) + covered.sum()

    def metrics(self) -> dict[str, Tensor]:
        """Each sum, or mean over its tokens, as a detached 0-dim tensor on the device: the
        trainer brings a step's metrics to the host in one copy when it logs."""
        return {name: (total / self.counts.get(name, 1.0)).float() for name, total in self.sums.items()}


def weighted_parts(
    chunks: Iterator[tuple[Tensor, ...]],
    per_token_loss: Callable[..., Tensor],
    weights: Tensor,
    autocast: Callable[[], AbstractContextManager],
    tally: Tally,
    name: str,
) -> Iterator[Tensor]:
    """Each chunk's `per_token_loss(values, covered, *extras)` summed with the step's token `weights`
    over the tokens it covers — one loss part per chunk, its forward under `autocast` — each
    tallied under `name`. A chunk is (values, covered) or (values, covered, extras)."""
    while True:
        with autocast():
            chunk = next(chunks, None)
            if chunk is None:
                return
            values, covered, *extras = chunk
            part = (per_token_loss(values, covered, *extras) * weights * covered).sum()
        tally.add(name, part)
        yield part
