"""`trace` (TraceRL): score each completion token in the very state the sampler revealed it from.

The rollout's `step_map` says when each token was revealed. Consecutive decoding steps are
merged `shrinkage` at a time (counting the distinct steps that revealed actions in a row, or in
a block for block diffusion models). For merged step k the state masks every position revealed
at or after k's first step, and the actions are the scored tokens revealed in k; log pi(action)
is the log-softmax at its position. The rollout holds the sampler's raw trajectory, so with EOS
stopping on the states are still exactly the sampler's: positions after a row's EOS show what
the sampler had revealed there (decoding goes on while other rows are unfinished), and
positions it never revealed (every row had stopped) are masked in every state.

Block diffusion models: every block's k-th merged step is scored in ONE forward over
`[x_t[P:] ; x_0]` under the block-diffusion mask — noisy block b sees its own state and the
clean blocks before it, exactly what the sampler's block-causal attention saw — so a
completion of many blocks costs as many forwards as its longest block has merged steps.
Blocks are each row's own, as decoded: a prompt's tail sits, clean, in the block of the first
completion tokens, and the rollout's `overhang` (tokens decoded past G to finish the last
block) is replayed in its states too, though never scored.
Full-attention models need one forward per merged step. `packed=False` replays naively, one
forward per merged step of each block (the same numbers; for benchmarks and checks).

`targets: masked` (MDPO, arXiv 2508.13148): the same states, but each scores EVERY action still
masked in it (not only those revealed in the step), as the model is trained at that inference
state: a term log pi(action | state k) x lambda_k / K, lambda_k = the block's width over its
positions masked in state k (1/t, the completion for full attention), averaged over the row's K
merged steps. A token is scored in every state that masks it, so the states form one part (their
forwards are held together: the PPO ratio compares the whole estimate with the old one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

from dllm.algorithms.denoise import Field, denoising_outputs, token_log_probs
from dllm.algorithms.estimators.base import ESTIMATORS, Estimator, Plan
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError
from dllm.models.masks import block_causal_mask, combine, row_positions


@ESTIMATORS.register("trace")
class TraceEstimator(Estimator):
    fresh_each_iteration = False
    replays_trajectory = True

    def __init__(
        self, shrinkage: int = 1, packed: bool = True, targets: Literal["revealed", "masked"] = "revealed"
    ) -> None:
        if shrinkage < 1:
            raise ConfigError(f"trace.shrinkage must be >= 1 (decoding steps merged per update step), got {shrinkage}")
        if targets not in ("revealed", "masked"):
            raise ConfigError(f"trace.targets must be revealed (TraceRL) or masked (MDPO), got {targets!r}")
        self.shrinkage = shrinkage
        self.packed = packed
        self.targets = targets

    def rounds(self, rollout: Rollout) -> Tensor:
        """[N, G] merged step of each completion position: the rank of its decoding step among
        the distinct steps that revealed an action (a scored token) in its row's block (each
        row's own blocks; the whole row for full attention), divided by `shrinkage`. A position
        revealed between two such steps takes the earlier one's rank, one revealed before all of
        them -1: in merged step k's state a position is masked iff its round is >= k, i.e. iff the
        sampler had not revealed it before the first step of k — whether or not it is an action
        (tokens after EOS, revealed while other rows decoded on, included)."""
        return self._rounds(rollout)[:, : rollout.step_map.shape[1]]

    def _rounds(self, rollout: Rollout) -> Tensor:
        """`rounds` over the completion and the overhang, [N, G + E]."""
        steps = extended_completion(rollout)[1]
        blocks = rollout.completion_blocks(steps.shape[1])
        scored = torch.zeros_like(steps, dtype=torch.bool)
        scored[:, : rollout.scored.shape[1]] = rollout.scored
        span = int(steps.max()) + 1
        keys = blocks * span + steps  # block-major, then step: one sorted order for every block of a row
        beyond = (int(blocks.max()) + 1) * span
        action_keys = torch.where(scored, keys, beyond).sort(dim=-1).values.contiguous()
        distinct = torch.ones_like(action_keys, dtype=torch.bool)
        distinct[:, 1:] = action_keys[:, 1:] != action_keys[:, :-1]
        distinct_so_far = torch.cumsum(distinct & (action_keys < beyond), dim=-1)
        distinct_so_far = torch.cat([torch.zeros_like(distinct_so_far[:, :1]), distinct_so_far], dim=-1)
        # distinct action keys <= each position's key, less those of the blocks before its own
        at_or_before = distinct_so_far.gather(1, torch.searchsorted(action_keys, keys.contiguous(), right=True))
        before_block = distinct_so_far.gather(1, torch.searchsorted(action_keys, (blocks * span).contiguous()))
        return torch.div(at_or_before - before_block - 1, self.shrinkage, rounding_mode="floor")

    def states(self, rollout: Rollout) -> Iterator[tuple[Tensor, Tensor]]:
        """(noisy sequence [N, P + G + E], actions [N, G]) for each merged step, in order: the
        completion (and the overhang, E wide; 0 without one) as the sampler left it, masked where
        it had not revealed it yet. The actions: those revealed in the step (`revealed`), or every
        one the state masks (`masked`)."""
        for noisy, actions, _ in self._states(rollout):
            yield noisy, actions

    def _states(self, rollout: Rollout) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """`states` with each action's weight [N, G] (1 for `revealed`; lambda_k / K for `masked`)."""
        if not bool(rollout.scored.any()):
            return
        completions = extended_completion(rollout)[0]
        rounds = self._rounds(rollout)
        width = rollout.scored.shape[1]
        prompt = rollout.sequences[:, : rollout.prompt_length]
        blocks = rollout.completion_blocks(rounds.shape[1])
        span = int(blocks.max()) + 1
        one_hot = torch.nn.functional.one_hot(blocks, span).float()  # [N, G + E, blocks]
        # K: the row's merged steps (its last action's round + 1)
        steps = torch.where(rollout.scored, rounds[:, :width], -1).amax(1, keepdim=True) + 1
        for merged in range(int(rounds[:, :width][rollout.scored].max()) + 1):
            masked = rounds >= merged
            if self.targets == "revealed":
                actions = (rounds[:, :width] == merged) & rollout.scored
                weights = torch.ones(actions.shape, device=rounds.device)
            else:
                actions = masked[:, :width] & rollout.scored
                # each position's block: its width over its positions masked in this state (1/t)
                sizes = torch.einsum("nlb,nl->nb", one_hot, torch.ones_like(masked, dtype=torch.float))
                hidden = torch.einsum("nlb,nl->nb", one_hot, masked.float())
                ratio = (sizes / hidden.clamp(min=1)).gather(1, blocks)[:, :width]
                weights = ratio / steps.clamp(min=1)
            if bool(actions.any()):
                noisy = completions.masked_fill(masked, rollout.mask_id)
                yield torch.cat([prompt, noisy], dim=1), actions, weights

    def chunks(
        self, model: torch.nn.Module, rollout: Rollout, plan: Plan | None = None, field: Field = "logits"
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Per merged step: (the model's log-prob of each action — or its value, `field="values"`
        for a value model — [N, G], the actions [N, G]); `masked`: one part, the weighted sum over
        the states (each token's actions overlap across states)."""
        if self.targets == "masked":
            if field != "logits":
                raise ConfigError("trace.targets=masked scores log-probs only: a value model needs targets=revealed")
            total = torch.zeros(rollout.step_map.shape, device=rollout.sequences.device)
            for noisy, actions, weights in self._states(rollout):
                read = self._read_state(model, rollout, noisy, actions, field)
                total = total + torch.where(actions, read * weights, 0.0)
            yield total, rollout.scored
            return
        for noisy, actions in self.states(rollout):
            yield self._read_state(model, rollout, noisy, actions, field), actions

    def _read_state(self, model, rollout: Rollout, noisy: Tensor, actions: Tensor, field: Field) -> Tensor:
        if self.packed or rollout.block_size is None:
            return self._read(model, rollout, noisy, actions, field)
        return self._read_block_by_block(model, rollout, noisy, actions, field)

    def gather(self, model: torch.nn.Module, rollout: Rollout, field: Field = "logits") -> Tensor:
        """[N, G]: every action's log-prob (or value) in the state it was revealed from; 0 elsewhere."""
        gathered = torch.zeros(rollout.step_map.shape, device=rollout.sequences.device)
        for read, actions in self.chunks(model, rollout, None, field):
            gathered = torch.where(actions, read, gathered)
        return gathered

    def log_probs(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        return self.gather(model, rollout, "logits"), rollout.scored

    @staticmethod
    def _read(model, rollout: Rollout, noisy: Tensor, actions: Tensor, field: Field) -> Tensor:
        """The state's read at its actions only (the head runs there alone), 0 elsewhere."""
        clean, keys = extended_sequences(rollout)
        scored = torch.zeros(noisy[:, rollout.prompt_length :].shape, dtype=torch.bool, device=actions.device)
        scored[:, : actions.shape[1]] = actions  # never the overhang
        output = denoising_outputs(model, noisy, clean, keys, rollout.block_size, rollout.prompt_length, field, scored)
        return output[:, : actions.shape[1]]

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
