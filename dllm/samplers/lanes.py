"""Per-row progress for batch decoding: which rows decode now, and where each one is.

A batch decoding keeps a running set of at most `capacity` rows, one per slot. Each slot works
through its row's blocks independently: a row moves to its next block as soon as its own block
is done, and leaves as soon as it has stopped (EOS) or decoded its last block. Its slot then
takes the next waiting row (continuous batching), or, when no row is waiting, the slot is
dropped so that finished rows cost nothing. One forward serves every slot at once, whatever
block each one is in.

`RowRandomness` draws each row's noise from its own generator when the caller gives one per
row, so each row decodes exactly as it would alone, in any batch; with one shared generator
the rows draw in slot order, as a batch of rows in lockstep draws (the references' batches).
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.models.chosen import CHUNK_BYTES


class Lanes:
    """The slots of one decoding: per slot its canvas row, its block's first column, the step
    within that block, and whether its finished block is yet to be committed (block cache).
    Host-side lists: each step's scheduling decisions come from one small status read."""

    def __init__(self, batch: int, capacity: int | None, first_block: int, ends: list[int], block_length: int) -> None:
        """`ends`: each row's last column to decode, plus one: its last block ends there."""
        if capacity is not None and capacity < 1:
            raise ConfigError(f"max_batch_rows must be a positive number of rows (or null: all rows), got {capacity}")
        self.batch = batch
        self.capacity = min(capacity or batch, batch)
        self.first_block = first_block
        self.ends = ends
        self.block_length = block_length
        self.waiting = deque(range(batch))
        self.rows: list[int] = []
        self.starts: list[int] = []
        self.block_steps: list[int] = []
        self.committing: list[bool] = []
        self.free: list[int] = []
        self.device_rows: Tensor | None = None
        self._columns: tuple[tuple[int, ...], int, Tensor] | None = None  # the last `columns`, while starts hold

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self) -> list[int]:
        """Place waiting rows in free slots (then new ones, up to `capacity`); the slots filled."""
        filled = []
        while self.waiting and (self.free or len(self.rows) < self.capacity):
            row = self.waiting.popleft()
            if self.free:
                slot = self.free.pop(0)
                self.rows[slot], self.starts[slot], self.block_steps[slot] = row, self.first_block, 0
                self.committing[slot] = False
            else:
                slot = len(self.rows)
                self.rows.append(row)
                self.starts.append(self.first_block)
                self.block_steps.append(0)
                self.committing.append(False)
            filled.append(slot)
        if filled:
            self.device_rows = None
        return filled

    def release(self, slots: list[int]) -> list[int] | None:
        """Free `slots` (their rows are done): as many as there are waiting rows stay, to take them;
        the others are dropped, and then the slots kept are returned, in order (the caller shrinks
        its per-slot state the same way)."""
        slots = sorted(slots)
        refill = len(self.waiting) - len(self.free)
        self.free.extend(slots[: max(refill, 0)])
        gone = set(slots[max(refill, 0) :])
        if not gone:
            return None
        kept = [slot for slot in range(len(self.rows)) if slot not in gone]
        for name in ("rows", "starts", "block_steps", "committing"):
            values = getattr(self, name)
            setattr(self, name, [values[slot] for slot in kept])
        renumber = {slot: index for index, slot in enumerate(kept)}
        self.free = [renumber[slot] for slot in self.free]
        self.device_rows = None
        return kept

    def row_tensor(self, device: torch.device) -> Tensor:
        """[S] each slot's canvas row (free slots hold their last row; their results are never read)."""
        if self.device_rows is None:
            self.device_rows = torch.tensor(self.rows, device=device)
        return self.device_rows

    def row_index(self, device: torch.device) -> Tensor | slice:
        """Each slot's canvas row as an index: a slice when the slots are the whole canvas, in order
        (one row, or a batch in which no row has left)."""
        if len(self.rows) == self.batch and self.rows == list(range(self.batch)):
            return slice(None)
        return self.row_tensor(device)

    def common_start(self) -> int | None:
        """The first column of every slot's block when all slots are in the same block (their blocks
        are one slice of the canvas), else None."""
        first = self.starts[0]
        return first if all(start == first for start in self.starts) else None

    def shared_start(self) -> int | None:
        """`common_start` when all slots are also at the same step (rows in lockstep), else None."""
        return self.common_start() if len(set(self.block_steps)) == 1 else None

    def columns(self, device: torch.device, shift: int = 0) -> Tensor:
        """[S, block_length] the columns of each slot's block, moved by `shift` (built once per step)."""
        key = tuple(self.starts)
        if self._columns is None or self._columns[:2] != (key, shift):
            starts = torch.tensor(key, device=device) + shift
            self._columns = (key, shift, starts[:, None] + torch.arange(self.block_length, device=device))
        return self._columns[2]

    def is_last_block(self, slot: int) -> bool:
        return self.starts[slot] + self.block_length >= self.ends[self.rows[slot]]


def row_generators(generator: torch.Generator, rows: int) -> list[torch.Generator]:
    """`rows` generators seeded from `generator`: each row of a decoding samples from its own, so its
    tokens do not depend on the rows it is batched with (nor on `max_batch_rows`)."""
    seeds = torch.randint(2**62, (rows,), generator=generator, device=generator.device).tolist()
    return [torch.Generator(device=generator.device).manual_seed(seed) for seed in seeds]


class RowRandomness:
    """Where each row's random draws come from: `generator` is one `torch.Generator` shared by the
    batch (rows draw in slot order), a list with one per canvas row, or None (the global one)."""

    def __init__(self, generator: torch.Generator | list[torch.Generator] | None, batch: int) -> None:
        if isinstance(generator, (list, tuple)) and len(generator) != batch:
            raise ConfigError(f"got {len(generator)} generators for {batch} prompts; give one per prompt (or one)")
        self.generator = generator

    @property
    def per_row(self) -> bool:
        return isinstance(self.generator, (list, tuple))

    def of(self, row: int) -> torch.Generator | None:
        return self.generator[row] if self.per_row else self.generator

    def for_rows(self, rows: list[int]) -> torch.Generator | list[torch.Generator | None] | None:
        """What a sampling function takes for a batch of `rows`: their generators, or the shared one."""
        return [self.of(row) for row in rows] if self.per_row else self.generator

    def uniform(
        self,
        rows: list[int],
        shapes: list[tuple[int, ...]],
        windows: list[int],
        length: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> Tensor:
        """[len(rows), length, ...] uniform noise: row i draws `shapes[i]` ([F_i, ...], the shape
        its own forward's output has) from its generator and keeps `length` entries from
        `windows[i]` on (a reference's draw over its whole forward, cut to the block)."""
        noise = []
        for row, shape, start in zip(rows, shapes, windows, strict=True):
            noise.append(self._window(self.of(row), shape, start, length, dtype, device))
        return torch.cat(noise)

    @staticmethod
    def _window(
        generator: torch.Generator | None,
        shape: tuple[int, ...],
        start: int,
        length: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> Tensor:
        """[1, length, ...] entries `start` on of one draw of `shape`. On the CPU a generator is one
        stream, so the draw is taken in pieces of at most `CHUNK_BYTES` and only the window is
        kept: the same numbers, without [F, V] float64 noise over a large vocabulary (on CUDA the
        pieces of a Philox draw would not match one draw, so it is taken whole)."""
        position = math.prod(shape[1:]) * dtype.itemsize
        if device.type != "cpu" or shape[0] * position <= CHUNK_BYTES:
            return torch.rand((1, *shape), dtype=dtype, device=device, generator=generator)[:, start : start + length]
        piece = max(1, CHUNK_BYTES // position)

        def draw(positions: int) -> Tensor:
            return torch.rand((1, positions, *shape[1:]), dtype=dtype, device=device, generator=generator)

        def skip(positions: int) -> None:
            for taken in range(0, positions, piece):
                draw(min(piece, positions - taken))

        skip(start)
        kept = draw(length)
        skip(shape[0] - start - length)
        return kept
