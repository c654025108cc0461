"""SFT sequence packing (`sft.pack`): several examples per row, each its own document.

A document is an example exactly as the unpacked batch holds it (prompt, response, EOS fill),
without its left padding; rows are filled first-fit by decreasing length, so padding is left
only at row ends. Each document keeps its place in the unpacked batch (`columns`): its noise is
drawn there, as the unpacked run draws it, and its loss weight is its own (1 / p_mask / its
response length, averaged over documents, not rows), so the packed loss is the unpacked one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dllm.errors import ConfigError


@dataclass
class Packing:
    """`document_ids` [R, P]: the example (its row in the unpacked micro-batch of every process)
    at each position, -1 on row-end padding; `columns` [R, P]: its column there (0 on padding);
    `source_response` [N, W]: that micro-batch's response mask, where noise is drawn; `examples`:
    the documents these rows hold."""

    document_ids: Tensor
    columns: Tensor
    source_response: Tensor
    examples: int

    def to(self, device: torch.device) -> Packing:
        moved = (t.to(device) for t in (self.document_ids, self.columns, self.source_response))
        return Packing(*moved, self.examples)

    def gather(self, unpacked: Tensor) -> Tensor:
        """[R, P] the values an unpacked [N, W] tensor holds at each packed position."""
        return unpacked[self.document_ids.clamp(min=0), self.columns]

    def weighted_nll(self, log_probs: Tensor, masked: Tensor, p_mask: Tensor) -> Tensor:
        """`sft.weighted_nll` per document: its masked tokens' -log-probs [R, P] / p_mask [N] of
        its example / its response length, summed, averaged over the documents."""
        example = self.document_ids.clamp(min=0)
        lengths = self.source_response.sum(1).clamp(min=1)
        weights = masked.float() / p_mask[example] / lengths[example]
        return -(log_probs * weights).sum() / self.examples


def pack_examples(
    input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor, keep: range, pack_length: int | None
) -> tuple[Tensor, Tensor, Tensor, Packing]:
    """Rows `keep` of an unpacked batch ([N, W] each) packed into rows of `pack_length` columns
    (None: W, the longest example's length): (input_ids, attention_mask, response_mask, Packing)."""
    width = pack_length or input_ids.shape[1]
    lengths = attention_mask.sum(1).tolist()
    rows: list[list[int]] = []
    room: list[int] = []
    for example in sorted(keep, key=lambda i: -lengths[i]):  # first fit, longest first
        if lengths[example] > width:
            raise ConfigError(
                f"an example of {lengths[example]} tokens does not fit sft.pack_length={width}; raise "
                "sft.pack_length or leave it null (the longest example's length)"
            )
        row = next((r for r, free in enumerate(room) if free >= lengths[example]), len(rows))
        if row == len(rows):
            rows.append([])
            room.append(width)
        rows[row].append(example)
        room[row] -= lengths[example]
    shape = (len(rows), width)
    packed = [torch.zeros(shape, dtype=torch.long) for _ in range(3)]
    document_ids, columns = torch.full(shape, -1, dtype=torch.long), torch.zeros(shape, dtype=torch.long)
    for r, examples in enumerate(rows):
        at = 0
        for example in examples:
            own = attention_mask[example].nonzero().squeeze(1)
            span = slice(at, at + len(own))
            for target, source in zip(packed, (input_ids, attention_mask, response_mask)):
                target[r, span] = source[example, own]
            document_ids[r, span], columns[r, span] = example, own
            at += len(own)
    return *packed, Packing(document_ids, columns, response_mask, len(keep))
