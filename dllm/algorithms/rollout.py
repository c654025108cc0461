"""Rollouts: completions of the live policy, in token space, with what RL needs of them.

`collect_rollout` samples prompts, decodes `group_size` completions of each with the run's
sampler from the current weights, and scores them; nothing is re-tokenised: the trainer
trains on the very tokens (and the decoding trajectory, `step_map`) the sampler produced.
Rewards read the completions as users do (cut at the first EOS); the rollout keeps the
sampler's raw trajectory, so that a replay sees every state exactly as the sampler saw it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dllm.algorithms.tree_rollout import decode_tree
from dllm.data.base import Example, reward_fields
from dllm.generation import decode_batch
from dllm.rewards.base import RewardError, score_batch
from dllm.samplers.base import GenerationOutput
from dllm.text import through_eos, token_offsets, truncated


@dataclass
class Rollout:
    """N = prompts x group_size completions. Per row: `sequences` [N, P + G] (the left-padded
    prompt, then the completion as decoding left it: the sampler's `raw_completions` — its own
    tokens also after the first EOS, the mask id where it never revealed one; a block model's
    blocks count from each row's first real token, as the sampler decoded them),
    `attention_mask` [N, P + G] (0 on prompt padding), `step_map` [N, G] (the decoding step that
    revealed each completion position; never revealed: after the last), `overhang` /
    `overhang_steps` [N, E] (block models: the tokens the sampler decoded after G to finish each
    row's last block, see `GenerationOutput`), `scored` [N, G] (the actions: completion tokens up
    to and including the first EOS), `read_completions` [N, G] (the completions as users read them:
    EOS after a stopped row's first EOS, where the trajectory holds whatever decoding left there;
    the x_0 that masked-diffusion estimators train on, as a reference decoding every position
    sees it; `completions_as_read()`),
    `group` [N] (the row's group in the step's rollout, numbered as one process holds it: the
    order optimizer steps take rows in), `rewards` [N] (total), `truncated` [N] (no EOS within G tokens),
    `process_rewards` [N, G] (the part of the reward a process reward placed on tokens), `branch_step` [N]
    (tree rollouts, `dllm.algorithms.tree_rollout`: the first decoding step of a row's own branch, its
    earlier steps shared with the other `branches` rows of its node). Later stages fill
    `advantages` ([N], or [N, G] from a value model), `returns`/`old_values` [N, G] (value
    model), and per inner iteration the estimator's `plans` and the `old_log_probs` /
    `ref_log_probs` [N, G] computed once, before any update."""

    sequences: Tensor
    attention_mask: Tensor
    step_map: Tensor
    scored: Tensor
    group: Tensor
    rewards: Tensor
    truncated: Tensor
    prompt_length: int
    block_size: int | None
    mask_id: int
    overhang: Tensor | None = None
    overhang_steps: Tensor | None = None
    read_completions: Tensor | None = None
    process_rewards: Tensor | None = None  # [N, G] step-level reward values at the tokens they name
    branch_step: Tensor | None = None  # [N] tree rollouts: the first step of the row's own branch
    branches: int | None = None  # tree rollouts: leaves per first-level node (contiguous rows)
    advantages: Tensor | None = None
    returns: Tensor | None = None
    old_values: Tensor | None = None
    plans: list[dict[str, Tensor]] = field(default_factory=list)
    old_log_probs: list[Tensor] = field(default_factory=list)
    ref_log_probs: list[Tensor | None] = field(default_factory=list)

    def __len__(self) -> int:
        return self.sequences.shape[0]

    @property
    def completions(self) -> Tensor:
        return self.sequences[:, self.prompt_length :]

    def completions_as_read(self) -> Tensor:
        """[N, G] the completions as users read them (`read_completions`; the trajectory when unset)."""
        return self.read_completions if self.read_completions is not None else self.completions

    def prompt_lengths(self) -> Tensor:
        """[N] real (unpadded) prompt tokens of each row."""
        return self.attention_mask[:, : self.prompt_length].sum(1)

    def completion_blocks(self, width: int | None = None) -> Tensor:
        """[N, width] (default G) block of each completion position, counted from each row's block
        holding its first completion token (all 0 for full attention)."""
        width = width or self.step_map.shape[1]
        lengths = self.prompt_lengths()[:, None]
        offsets = torch.arange(width, device=lengths.device)
        if self.block_size is None:
            return torch.zeros_like(offsets)[None].expand(lengths.shape[0], -1)
        return (lengths + offsets) // self.block_size - lengths // self.block_size

    def map_rows(self, function: Callable[[Tensor], Tensor]) -> Rollout:
        """A copy with `function` applied to every per-row tensor (to slice rows, move devices)."""

        def apply(value: Any) -> Any:
            if isinstance(value, Tensor):
                return function(value)
            if isinstance(value, dict):
                return {key: apply(item) for key, item in value.items()}
            if isinstance(value, list):
                return [apply(item) for item in value]
            return value

        return replace(self, **{item.name: apply(getattr(self, item.name)) for item in fields(self)})

    def select(self, rows: Tensor) -> Rollout:
        """The rollout restricted to `rows` (an index tensor)."""
        return self.map_rows(lambda tensor: tensor[rows])

    def to(self, device: torch.device) -> Rollout:
        return self.map_rows(lambda tensor: tensor.to(device))

    @classmethod
    def concatenate(cls, parts: list[Rollout], pad_id: int) -> Rollout:
        """Scored rollouts of one generation length (several draws of one step), as one: prompts
        left-padded with `pad_id` to the longest, overhangs right-padded (mask, step -1), groups
        renumbered in order. Before advantages: a part must carry nothing the later stages fill."""
        if len(parts) == 1:
            return parts[0]
        if any(part.advantages is not None or part.plans for part in parts):
            raise ValueError("Rollout.concatenate joins scored rollouts before their advantages and plans")
        width = max(part.prompt_length for part in parts)

        def left(tensor: Tensor, value: int, prompt_length: int) -> Tensor:
            return torch.nn.functional.pad(tensor, (width - prompt_length, 0), value=value)

        def right(name: str, value: int) -> Tensor | None:
            values = [getattr(part, name) for part in parts]
            if values[0] is None:
                return None
            extra = max(v.shape[1] for v in values)
            return torch.cat([torch.nn.functional.pad(v, (0, extra - v.shape[1]), value=value) for v in values])

        def joined(name: str) -> Tensor | None:
            values = [getattr(part, name) for part in parts]
            return None if values[0] is None else torch.cat(values)

        offsets, groups = 0, []
        for part in parts:  # each part's groups, in order, after the previous parts'
            _, ids = torch.unique_consecutive(part.group, return_inverse=True)
            groups.append(ids + offsets)
            offsets += int(ids.max()) + 1 if len(ids) else 0
        first = parts[0]
        return replace(
            first,
            sequences=torch.cat([left(p.sequences, pad_id, p.prompt_length) for p in parts]),
            attention_mask=torch.cat([left(p.attention_mask, 0, p.prompt_length) for p in parts]),
            step_map=joined("step_map"), scored=joined("scored"), group=torch.cat(groups),
            rewards=joined("rewards"), truncated=joined("truncated"), prompt_length=width,
            overhang=right("overhang", first.mask_id), overhang_steps=right("overhang_steps", -1),
            read_completions=joined("read_completions"), process_rewards=joined("process_rewards"),
            branch_step=joined("branch_step"),
        )  # fmt: skip


def rollout_from_output(
    model: torch.nn.Module,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    output: GenerationOutput,
    eos_id: int | None,
    group_size: int = 1,
) -> Rollout:
    """The rollout of a sampler's `output` for left-padded prompts [N, P] (rewards 0 until
    scored), in the layout the sampler decoded (blocks from each row's first real token); the
    completion is the raw trajectory, whose tokens up to the first EOS are the users' completion."""
    completions = output.raw_completions
    rows = completions.shape[0]
    return Rollout(
        sequences=torch.cat([prompt_ids, completions], dim=1),
        attention_mask=torch.cat([prompt_mask, torch.ones_like(completions)], dim=1),
        step_map=output.step_map,
        scored=through_eos(completions, eos_id) & (output.step_map >= 0),  # not the tokens given before decoding
        group=torch.arange(rows, device=completions.device) // group_size,
        rewards=torch.zeros(rows, device=completions.device),
        truncated=truncated(completions, eos_id),
        prompt_length=prompt_ids.shape[1],
        block_size=output.block_size,
        mask_id=model.mask_token_id,
        overhang=output.overhang,
        overhang_steps=output.overhang_steps,
        read_completions=output.completions(prompt_ids.shape[1]),
    )


def place_step_values(steps: list[list[tuple[int, float]]], length: int, device) -> Tensor:
    """[N, G] the step-level values of a reward at the token positions they name; a position
    outside the completion is an error naming it."""
    placed = torch.zeros(len(steps), length, device=device)
    for row, pairs in enumerate(steps):
        for position, value in pairs:
            if not 0 <= position < length:
                raise RewardError(
                    f"a step-level reward gave completion {row} a value at token position {position}, outside "
                    f"the completion (positions 0..{length - 1}); return positions of the completion's own tokens "
                    f"(the `token_offsets` field maps characters to tokens)"
                )
            placed[row, position] += value
    return placed


def save_rollout(rollout: Rollout, tokenizer, path: str | Path) -> Path:
    """Write what `dllm-trace` renders: per row the prompt text, each completion token of the raw
    trajectory as text (after the first EOS: what decoding revealed there, or the mask), the
    step that revealed it, and the row's reward; the mask token's text (a position still reading it
    was never revealed); plus the raw tensors."""
    completions = rollout.completions.tolist()
    prompt_ids = rollout.sequences[:, : rollout.prompt_length]
    record = {
        "prompts": tokenizer.batch_decode(prompt_ids, skip_special_tokens=True),
        "tokens": [[tokenizer.decode([token]) for token in row] for row in completions],
        "step_map": rollout.step_map.tolist(),
        "scored": rollout.scored.tolist(),
        "rewards": rollout.rewards.tolist(),
        "block_size": rollout.block_size,
        "prompt_phases": (rollout.prompt_lengths() % (rollout.block_size or 1)).tolist(),
        "sequences": rollout.sequences.cpu(),
        "prompt_length": rollout.prompt_length,
        "mask_token": tokenizer.mask_token,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, path)
    return path


@dataclass
class RolloutStats:
    """What a rollout logs: reward mean/std, each reward term, failures, lengths, times."""

    metrics: dict[str, float]
    texts: list[str]
    prompts: list[str]
    own_rewards: Tensor | None = None  # the policy's own rewards, where rows were replaced (IGPO's inpainting)


@torch.no_grad()
def collect_rollout(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[Example],
    sampler,
    reward,
    generator: torch.Generator,
    group_size: int,
    gen_length: int,
    device: torch.device,
    reward_timeout_s: float | None = None,
    max_batch_rows: int | None = None,
    canvas: Tensor | None = None,
    branches: int | None = None,
) -> tuple[Rollout, RolloutStats]:
    """Decode `group_size` completions of `gen_length` tokens for each of `prompts` with
    `sampler` from the live weights, at most `max_batch_rows` at once (see `decode_batch`), and
    score them with `reward` (guarded: see `score_batch`). `canvas` [N, G]: tokens given in the
    completions before decoding (inpainting; see `Sampler.generate`). `branches` (without a
    canvas): as a tree, each prompt's `group_size / branches` shared halves continued `branches`
    ways (`decode_tree`)."""
    examples = [example for example in prompts for _ in range(group_size)]
    prompt_texts = [e.prompt for e in examples]
    if branches:
        nodes = [e.prompt for e in prompts for _ in range(group_size // branches)]
        decoded, branch_step = decode_tree(
            model, tokenizer, sampler, nodes, gen_length, generator, branches, device, max_batch_rows
        )
    else:
        decoded = decode_batch(
            model, tokenizer, sampler, prompt_texts, gen_length, generator,
            device=device, max_batch_rows=max_batch_rows, canvas=canvas,
        )  # fmt: skip
    rollout = rollout_from_output(
        model, decoded.prompt_ids, decoded.prompt_mask, decoded.output, tokenizer.eos_token_id, group_size
    )
    if branches:
        rollout.branch_step, rollout.branches = branch_step, branches
    completions = decoded.completions  # as users read them, for the rewards
    fields = {
        **reward_fields(examples),
        "truncated": decoded.truncated.tolist(),
        "token_offsets": token_offsets(tokenizer, completions),
    }
    scores = score_batch(reward, prompt_texts, decoded.texts, fields, reward_timeout_s)
    rollout.rewards = torch.tensor(scores.total, dtype=torch.float32, device=device)
    rollout.process_rewards = place_step_values(scores.steps, completions.shape[1], device)
    rewards = rollout.rewards
    metrics = {
        "reward": float(rewards.mean()),
        "reward_std": float(rewards.std(unbiased=False)),
        "accuracy": float((rewards >= 1.0).float().mean()),
        "reward_failures": float(scores.failures),
        "response_length": sum(decoded.lengths) / len(decoded.lengths),
        "truncated": float(decoded.truncated.float().mean()),
        "rollout_time": decoded.elapsed,
        "rollout_nfe": float(decoded.output.nfe),
    }
    if len(scores.terms) > 1:
        metrics.update({f"reward/{name}": sum(values) / len(values) for name, values in scores.terms.items()})
    metrics.update(scores.counts)
    return rollout, RolloutStats(metrics, decoded.texts, prompt_texts)
