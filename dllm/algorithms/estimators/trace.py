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
        """[N, G] merged step of each completion position: the rank of its decoding step among
        the distinct steps that revealed an action (a scored token) in its row (in its block, for
        block models), divided by `shrinkage`. A position revealed between two such steps takes
        the earlier one's rank, one revealed before all of them -1: in merged step k's state a
        position is masked iff its round is >= k, i.e. iff the sampler had not revealed it before
        the first step of k — whether or not it is an action (tokens after EOS, revealed while
        other rows decoded on, included)."""
        steps, scored = rollout.step_map, rollout.scored
        block = rollout.block_size or steps.shape[1]
        steps, scored = steps.reshape(steps.shape[0], -1, block), scored.reshape(steps.shape[0], -1, block)
        after_all = int(steps.max()) + 1
        action_steps = torch.where(scored, steps, after_all).sort(dim=-1).values.contiguous()
        distinct = torch.ones_like(action_steps, dtype=torch.bool)
        distinct[..., 1:] = action_steps[..., 1:] != action_steps[..., :-1]
        distinct_so_far = torch.cumsum(distinct & (action_steps < after_all), dim=-1)
        distinct_so_far = torch.cat([torch.zeros_like(distinct_so_far[..., :1]), distinct_so_far], dim=-1)
        # the number of sorted action steps <= each position's step, then of distinct ones among them
        at_or_before = torch.searchsorted(action_steps, steps.contiguous(), right=True)
        ranks = distinct_so_far.gather(-1, at_or_before) - 1
        return torch.div(ranks, self.shrinkage, rounding_mode="floor").reshape_as(rollout.step_map)

    def states(self, rollout: Rollout) -> Iterator[tuple[Tensor, Tensor]]:
        """(noisy sequence [N, P + G], actions [N, G]) for each merged step, in order: the
        completion as the sampler left it, masked where it had not revealed it yet."""
        if not bool(rollout.scored.any()):
            return
        rounds = self.rounds(rollout)
        prompt = rollout.sequences[:, : rollout.prompt_length]
        for merged in range(int(rounds[rollout.scored].max()) + 1):
            actions = (rounds == merged) & rollout.scored
            if bool(actions.any()):
                completion = rollout.completions.masked_fill(rounds >= merged, rollout.mask_id)
                yield torch.cat([prompt, completion], dim=1), actions

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
        output = noisy_outputs(
            model, noisy, rollout.sequences, rollout.attention_mask, rollout.block_size, rollout.prompt_length, field
        )
        return token_log_probs(output, rollout.completions) if field == "logits" else output

    @staticmethod
    def _read_block_by_block(model, rollout: Rollout, noisy: Tensor, actions: Tensor, field: Field) -> Tensor:
        """The naive replay: one forward per block that has actions, over the sequence up to
        its end (the block in its state, the blocks before it clean) with the model's own mask."""
        read = torch.zeros(actions.shape, device=noisy.device)
        block, start = rollout.block_size, rollout.prompt_length
        for first in range(0, actions.shape[1], block):
            if not bool(actions[:, first : first + block].any()):
                continue
            end = start + first + block
            inputs = torch.cat([rollout.sequences[:, : start + first], noisy[:, start + first : end]], dim=1)
            keys = rollout.attention_mask[:, :end]
            output = getattr(model(inputs, attention_mask=keys, block_size=block), field)[:, -block:]
            targets = rollout.sequences[:, start + first : end]
            values = token_log_probs(output, targets) if field == "logits" else output
            read[:, first : first + block] = values
        return read
