"""A model wrapper that records every forward: what the samplers and estimators ask of a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Call:
    input_ids: torch.Tensor
    cache_length: int | None  # committed cache length when the call began (None: no cache)
    cache_capacity: int  # the cache's buffer size after the call (0: no cache)
    replace_position: int | None
    logits: torch.Tensor
    read_length: int | None = None  # a per-row slot cache: the columns the forward attended

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]


class RecordingModel(torch.nn.Module):
    """Wraps a model and keeps a `Call` per forward in `calls`."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []
        self.config, self.mask_token_id = inner.config, inner.mask_token_id
        self.block_size, self.shift_logits = inner.block_size, inner.shift_logits

    @property
    def inputs(self) -> list[torch.Tensor]:
        return [call.input_ids for call in self.calls]

    def forward(self, input_ids, past_key_values=None, replace_position=None, logits_slice=None, **kwargs):
        length = past_key_values.length if past_key_values is not None else None
        out = self.inner(
            input_ids, past_key_values=past_key_values, replace_position=replace_position, logits_slice=logits_slice,
            **kwargs,
        )  # fmt: skip
        keys = past_key_values.keys[0] if past_key_values is not None else None
        capacity = keys.shape[2] if keys is not None else 0
        read = getattr(past_key_values, "read_length", None)
        call = Call(input_ids.clone(), length, capacity, replace_position, out.logits.detach().clone(), read)
        call.positions = logits_slice
        self.calls.append(call)
        return out

    def logits_at(self, call: int, row: int, position: int) -> torch.Tensor:
        """The logits call `call` computed for input row `row` at input position `position`."""
        record = self.calls[call]
        if isinstance(record.positions, torch.Tensor):
            (index,) = (record.positions[row] == position).nonzero()[:, 0].tolist()[:1]
            return record.logits[row, index]
        first = 0 if record.positions is None else record.positions.start or 0
        return record.logits[row, position - first]

    def row_forwards(self, prefix: torch.Tensor, known: torch.Tensor | None = None) -> list[list[tuple[int, int]]]:
        """For each canvas row, the (call, input row) of every forward it took part in, in order.
        Each row decodes at its own pace and leaves when done, so call k's row i need not be canvas
        row i: rows are told apart by their first `prefix.shape[1]` columns (`prefix` [N, k], compared
        where `known` [N, k]), and a forward holds its rows in canvas order (no `max_batch_rows`:
        slots are never reused)."""
        known = torch.ones_like(prefix, dtype=torch.bool) if known is None else known
        seen: list[list[tuple[int, int]]] = [[] for _ in range(prefix.shape[0])]
        for index, inputs in enumerate(self.inputs):
            last = -1
            for i, row in enumerate(inputs[:, : prefix.shape[1]]):
                fits = ((prefix == row) | ~known).all(1).nonzero()[:, 0].tolist()
                last = next(m for m in fits if m > last)
                seen[last].append((index, i))
        return seen
