"""`trace` (TraceRL): score each completion token in the very state the sampler revealed it from.

The rollout's `step_map` says when each token was revealed. Consecutive decoding steps are
merged `shrinkage` at a time (counting the distinct steps of a row, or of a block for block
diffusion models). For merged step k the state masks every token revealed at step >= k, and
the actions are the tokens revealed in k; log pi(action) is the log-softmax at its position.

Block diffusion models: every block's k-th merged step is scored in ONE forward over
`[x_t[P:] ; x_0]` under the block-diffusion mask — noisy block b sees its own state and the
clean blocks before it, exactly what the sampler's block-causal attention saw — so a
completion of many blocks costs as many forwards as its longest block has merged steps.
Blocks are each row's own, as decoded: a prompt's tail sits, clean, in the block of the first
completion tokens, and the rollout's `overhang` (tokens decoded past G to finish the last
block) is replayed in its states too, though never scored.
Full-attention models need one forward per merged step. `packed=False` replays naively, one
forward per merged step of each block (the same numbers; for benchmarks and checks).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from dllm.algorithms.denoise import Field, noisy_outputs, token_log_probs
from dllm.algorithms.estimators.base import ESTIMATORS, Estimator, Plan
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError
from dllm.models.masks import block_causal_mask, combine, row_positions


def dense_ranks(steps: Tensor) -> Tensor:
    """[..., n] rank of each value among the distinct values of its last-dimension row (0 = smallest)."""
    ordered, order = steps.sort(dim=-1)
    new_value = torch.ones_like(ordered, dtype=torch.long)
    new_value[..., 0] = 0
    new_value[..., 1:] = (ordered[..., 1:] != ordered[..., :-1]).long()
    return torch.empty_like(order).scatter_(-1, order, new_value.cumsum(-1))


@ESTIMATORS.register("trace")
class TraceEstimator(Estimator):
    fresh_each_iteration = False

    def __init__(self, shrinkage: int = 1, packed: bool = True) -> None:
        if shrinkage < 1:
            raise ConfigError(f"trace.shrinkage must be >= 1 (decoding steps merged per update step), got {shrinkage}")
        self.shrinkage = shrinkage
        self.packed = packed

    def rounds(self, rollout: Rollout) -> Tensor:
        """[N, G] merged step of each completion token: the dense rank of its decoding step in
        its row (in its block, for block models), divided by `shrinkage`."""
        return self._rounds(rollout)[:, : rollout.step_map.shape[1]]

    def _rounds(self, rollout: Rollout) -> Tensor:
        """`rounds` over the completion and the overhang, [N, G + E]."""
        steps = extended_completion(rollout)[1]
        blocks = rollout.completion_blocks(steps.shape[1])
        ranks = dense_ranks(blocks * (int(steps.max()) + 2) + steps + 1)  # block-major, then step (-1 >= 0)
        first = torch.full_like(ranks, ranks.numel()).scatter_reduce(1, blocks, ranks, "amin")
        return (ranks - first.gather(1, blocks)) // self.shrinkage

    def states(self, rollout: Rollout) -> Iterator[tuple[Tensor, Tensor]]:
        """(noisy sequence [N, P + G + E], actions [N, G]) for each merged step, in order; E: the
        overhang's width (0 without one)."""
        completions = extended_completion(rollout)[0]
        rounds = self._rounds(rollout)
        scored = torch.zeros_like(rounds, dtype=torch.bool)
        scored[:, : rollout.scored.shape[1]] = rollout.scored
        if not bool(scored.any()):
            return
        prompt = rollout.sequences[:, : rollout.prompt_length]
        for merged in range(int(rounds[scored].max()) + 1):
            actions = (rounds == merged) & scored
            if bool(actions.any()):
                noisy = completions.masked_fill(rounds >= merged, rollout.mask_id)
                yield torch.cat([prompt, noisy], dim=1), actions[:, : rollout.scored.shape[1]]

    def chunks(
        self, model: torch.nn.Module, rollout: Rollout, plan: Plan | None = None, field: Field = "logits"
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Per merged step: (the model's log-prob of each action — or its value, `field="values"`
        for a value model — [N, G], the actions [N, G])."""
        for noisy, actions in self.states(rollout):
            if self.packed or rollout.block_size is None:
                yield self._read(model, rollout, noisy, field), actions
            else:
                yield self._read_block_by_block(model, rollout, noisy, actions, field), actions

    def gather(self, model: torch.nn.Module, rollout: Rollout, field: Field = "logits") -> Tensor:
        """[N, G]: every action's log-prob (or value) in the state it was revealed from; 0 elsewhere."""
        gathered = torch.zeros(rollout.step_map.shape, device=rollout.sequences.device)
        for read, actions in self.chunks(model, rollout, None, field):
            gathered = torch.where(actions, read, gathered)
        return gathered

    def log_probs(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        return self.gather(model, rollout, "logits"), rollout.scored

    @staticmethod
    def _read(model, rollout: Rollout, noisy: Tensor, field: Field) -> Tensor:
        clean, keys = extended_sequences(rollout)
        output = noisy_outputs(model, noisy, clean, keys, rollout.block_size, rollout.prompt_length, field)
        output = output[:, : rollout.step_map.shape[1]]
        return token_log_probs(output, rollout.completions) if field == "logits" else output

    @staticmethod
    def _read_block_by_block(model, rollout: Rollout, noisy: Tensor, actions: Tensor, field: Field) -> Tensor:
        """The naive replay: one forward per block that has actions, over the whole sequence with
        the model's own block-causal mask (each row's blocks, from its positions): the block in its
        state, the blocks before it clean (those after it cannot be seen)."""
        clean, keys = extended_sequences(rollout)
        start, width = rollout.prompt_length, actions.shape[1]
        blocks = rollout.completion_blocks(clean.shape[1] - start)
        positions = row_positions(keys)
        structure = block_causal_mask(positions, positions, rollout.block_size)
        read = torch.zeros(actions.shape, device=noisy.device)
        for block in range(int(blocks.max()) + 1):
            here = blocks[:, :width] == block
            if not bool((actions & here).any()):
                continue
            inputs = clean.clone()
            inputs[:, start:] = torch.where(blocks == block, noisy[:, start:], clean[:, start:])
            output = getattr(model(inputs, attention_mask=combine(structure, keys), position_ids=positions), field)
            output = output[:, start : start + width]
            values = token_log_probs(output, rollout.completions) if field == "logits" else output
            read = torch.where(here, values, read)
        return read


def extended_completion(rollout: Rollout) -> tuple[Tensor, Tensor]:
    """(tokens, steps) [N, G + E]: the completion, then the overhang the sampler decoded to finish
    each row's last block (never revealed there: a step after every other)."""
    if rollout.overhang is None:
        return rollout.completions, rollout.step_map
    late = int(rollout.step_map.max()) + 1
    steps = torch.where(rollout.overhang_steps < 0, late, rollout.overhang_steps)
    return torch.cat([rollout.completions, rollout.overhang], 1), torch.cat([rollout.step_map, steps], 1)


def extended_sequences(rollout: Rollout) -> tuple[Tensor, Tensor]:
    """(sequences, attention mask) [N, P + G + E], the overhang after each row's completion."""
    if rollout.overhang is None:
        return rollout.sequences, rollout.attention_mask
    ones = torch.ones_like(rollout.overhang, dtype=rollout.attention_mask.dtype)
    return torch.cat([rollout.sequences, rollout.overhang], 1), torch.cat([rollout.attention_mask, ones], 1)
