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
        self.calls.append(Call(input_ids.clone(), length, capacity, replace_position, out.logits.detach().clone(), read))
        return out
