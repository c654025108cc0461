"""IGPO's inpainting-guided rollouts (Zhao et al., 2025, arXiv 2509.10396; facebookresearch/igpo,
`trainer_igpo.py` and `utils/generate.py`): when every completion of a group is wrong, its group
advantages are all zero and it teaches nothing. IGPO then decodes the group's prompt again,
`group_size` times, each with a part of the reference answer (the task's SFT `response`, its
reasoning trace) written into the canvas before decoding — those tokens are given, never masked,
and the model inpaints the rest — and replaces up to `max_replacements` of the group's completions
by the correct ones among them (the group's first rows), so the group has mixed rewards again.

Each inpainted completion `i` reveals a share eta_i ~ U[ratio_low, ratio_high] (sorted over the
group) of the reference: the reference's first `len(G) - free_tokens` tokens are cut into chunks
of `min_chunk`..`max_chunk` tokens (a shorter tail is dropped, as the reference's loop does),
int(chunks x (1 - eta_i)) chunks drawn at random are hidden, the rest and always the last chunk
revealed, each at its own offset in the completion; the last `free_tokens` are left to the model.

The loss covers the tokens the model decoded, and of the given tokens (up to the first EOS) the
`loss_share` (IGPO: 20%, at least one) of highest entropy under the policy when the rollout is
drawn, in d1's state (the whole completion masked: the reference's `d1_masking` state, in which it
ranks them, `entropy_clipping_ratio_inpaint`). A given token was never revealed by the sampler, so
an estimator that replays the sampler's steps (`trace`) has no state to score it from: with it,
`loss_share` must be 0.

Departure from the reference, said here because it changes numbers: it spreads the revealed chunks
up to 1.5x apart when the completion is longer than the reference (`scale_chunk_positions`); here
each sits at its own offset.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch import Tensor

from dllm.algorithms.denoise import noisy_outputs
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.rollout import Rollout
from dllm.data.base import Example
from dllm.errors import ConfigError
from dllm.text import through_eos


class Inpainting:
    """`ratio_low` <= `ratio_high` in [0, 1]: the share of the reference's chunks each inpainted
    completion reveals is drawn between them; chunks of `min_chunk`..`max_chunk` tokens;
    `free_tokens`: the completion's last tokens never given; `max_replacements`: most completions
    of a group replaced; `solved_at`: a reward at least this is a correct completion; `loss_share`:
    the share of the given tokens in the loss (highest entropy first)."""

    def __init__(
        self,
        ratio_low: float = 0.2,
        ratio_high: float = 0.6,
        min_chunk: int = 5,
        max_chunk: int = 10,
        free_tokens: int = 30,
        max_replacements: int = 4,
        solved_at: float = 1.0,
        loss_share: float = 0.2,
    ) -> None:
        if not 0.0 <= ratio_low <= ratio_high <= 1.0:
            raise ConfigError(
                f"algorithm.inpainting: need 0 <= ratio_low ({ratio_low}) <= ratio_high ({ratio_high}) <= 1 "
                f"(IGPO: 0.2 and 0.6)"
            )
        if not 1 <= min_chunk <= max_chunk:
            raise ConfigError(
                f"algorithm.inpainting: need 1 <= min_chunk ({min_chunk}) <= max_chunk ({max_chunk}) (IGPO: 5 and 10)"
            )
        if free_tokens < 0 or max_replacements < 1:
            raise ConfigError(
                f"algorithm.inpainting: free_tokens ({free_tokens}) must be >= 0 and max_replacements "
                f"({max_replacements}) >= 1 (IGPO: 30 and 4)"
            )
        if not 0.0 <= loss_share <= 1.0:
            raise ConfigError(f"algorithm.inpainting.loss_share ({loss_share}) must be in [0, 1] (IGPO: 0.2)")
        self.loss_share = loss_share
        self.ratio_low, self.ratio_high = ratio_low, ratio_high
        self.min_chunk, self.max_chunk = min_chunk, max_chunk
        self.free_tokens, self.max_replacements, self.solved_at = free_tokens, max_replacements, solved_at

    def check_estimator(self, estimator) -> None:
        """Refuse given tokens in the loss of an estimator that replays the sampler's steps."""
        if self.loss_share > 0 and isinstance(estimator, TraceEstimator):
            raise ConfigError(
                f"algorithm.inpainting.loss_share={self.loss_share} puts given tokens in the loss, but the trace "
                f"estimator replays the sampler's steps and none revealed them; set algorithm.inpainting.loss_share=0 "
                f"or use a masking estimator (algorithm/estimator=one_step, IGPO's)"
            )

    def check(self, task) -> None:
        """Refuse a task whose examples carry no reference answer to inpaint from."""
        examples = task.eval_examples()[:1]
        if not examples or not examples[0].response.strip():
            raise ConfigError(
                f"algorithm.inpainting (IGPO) seeds completions with the task's reference answer, but task "
                f"{type(task).__name__} gives none (an empty `response`); use a task with SFT responses or "
                f"algorithm.inpainting=null"
            )

    def failing_groups(self, rewards: Tensor, group_size: int) -> list[int]:
        """The groups none of whose completions is correct."""
        solved = (rewards >= self.solved_at).view(-1, group_size).any(1)
        return (~solved).nonzero().squeeze(1).tolist()

    def canvas(self, reference: list[int], gen_length: int, ratio: float, rng: random.Random, mask_id: int) -> Tensor:
        """[G] one inpainted completion's canvas: chunks of `reference` revealed at their own offsets
        (a share `ratio` of them, and the last), the mask id elsewhere."""
        canvas = torch.full((gen_length,), mask_id, dtype=torch.long)
        reference = reference[: max(0, gen_length - self.free_tokens)]
        chunks, start = [], 0
        while start < len(reference):
            end = min(start + rng.randint(self.min_chunk, self.max_chunk), len(reference))
            if end - start < self.min_chunk:  # a short tail is hard to inpaint around: the reference drops it
                break
            chunks.append((start, end))
            start = end
        if not chunks:
            return canvas
        hidden = set(rng.sample(range(len(chunks)), int(len(chunks) * (1.0 - ratio))))
        for index, (start, end) in enumerate(chunks):
            if index not in hidden or index == len(chunks) - 1:
                canvas[start:end] = torch.tensor(reference[start:end])
        return canvas

    def ratios(self, group_size: int, rng: random.Random) -> list[float]:
        """Each inpainted completion's revealed share, in increasing order over the group."""
        return sorted(rng.uniform(self.ratio_low, self.ratio_high) for _ in range(group_size))

    def replacements(self, rewards: Tensor, rng: random.Random) -> list[int]:
        """Of a group's inpainted completions' `rewards` [group_size], the correct ones that replace
        the group's first rows, in order: all when at most `max_replacements`, else that many drawn."""
        correct = (rewards >= self.solved_at).nonzero().squeeze(1).tolist()
        return sorted(rng.sample(correct, self.max_replacements)) if len(correct) > self.max_replacements else correct

    def given_in_loss(self, model: torch.nn.Module, rollout: Rollout, eos_id: int | None) -> Tensor:
        """[N, G] the given tokens (step -1) up to each row's first EOS that enter the loss: the
        `loss_share` (at least one, where a row has any) of highest entropy with the whole completion
        masked."""
        given = (rollout.step_map < 0) & through_eos(rollout.completions, eos_id)
        if self.loss_share == 0 or not bool(given.any()):
            return torch.zeros_like(given)
        prompt = rollout.sequences[:, : rollout.prompt_length]
        noisy = torch.cat([prompt, torch.full_like(rollout.completions, rollout.mask_id)], dim=1)
        context = torch.cat([prompt, rollout.completions_as_read()], dim=1)
        with torch.no_grad():
            logits = noisy_outputs(
                model, noisy, context, rollout.attention_mask, rollout.block_size, rollout.prompt_length
            ).float()
        entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
        counts = given.sum(1)
        keep = torch.where(counts > 0, (counts * self.loss_share).long().clamp(min=1), 0)
        order = entropy.masked_fill(~given, -torch.inf).argsort(dim=1, descending=True).argsort(dim=1)
        return given & (order < keep[:, None])

    def rescue(
        self,
        rollout: Rollout,
        examples: list[Example],
        group_size: int,
        decode: Callable[[list[Example], Tensor], Rollout],
        model: torch.nn.Module,
        tokenizer,
        rng: random.Random,
    ) -> tuple[Rollout, dict[str, float]]:
        """`rollout` (scored: `group_size` completions of each of `examples`, in order) with the correct
        completions of its failing groups' inpainted decodings (`decode(examples, canvas [rows, G])`, a
        scored rollout) in place of their first rows, their given tokens in the loss as `given_in_loss`
        says; and the inpainting's metrics: groups inpainted, rows replaced."""
        failing = self.failing_groups(rollout.rewards, group_size)
        if not failing:
            return rollout, {"inpainted_groups": 0.0, "inpainted_rows": 0.0}
        gen_length = rollout.step_map.shape[1]
        canvases = []
        for group in failing:
            reference = tokenizer.encode(examples[group].response, add_special_tokens=False)
            for ratio in self.ratios(group_size, rng):
                canvases.append(self.canvas(reference, gen_length, ratio, rng, rollout.mask_id))
        inpainted = decode([examples[group] for group in failing], torch.stack(canvases))
        rows = torch.arange(len(rollout))
        for k, group in enumerate(failing):
            chosen = self.replacements(inpainted.rewards[k * group_size : (k + 1) * group_size], rng)
            for i, j in enumerate(chosen):
                rows[group * group_size + i] = len(rollout) + k * group_size + j
        replaced = int((rows >= len(rollout)).sum())
        joined = Rollout.concatenate([rollout, inpainted], tokenizer.pad_token_id)
        result = joined.select(rows.to(joined.sequences.device))
        result.group = rollout.group
        result.scored = result.scored | self.given_in_loss(model, result, tokenizer.eos_token_id)
        return result, {"inpainted_groups": float(len(failing)), "inpainted_rows": float(replaced)}
