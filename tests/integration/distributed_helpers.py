"""Test-only components that make an RL run independent of how its prompts are split over
processes, so that 1 and 2 processes can be compared number for number.

A real rollout's sampling noise depends on the batch it decodes (one generator stream for the
whole batch), so the same prompts decoded on 2 processes get other completions than on 1.
`RowSeededSampler` decodes each row alone with a generator seeded by the row's prompt, its
copy number within the batch and the number of sampling (rollout) calls so far: the completions of a prompt are the same
whichever process decodes it. `DigitShare` gives graded rewards (a tiny untrained model never
gets an exact answer), so group advantages are not all zero.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from dllm.rewards.base import Reward
from dllm.samplers.base import GenerationOutput
from dllm.samplers.llada import LLaDASampler

CALLS = {"count": 0}


class RowSeededSampler(LLaDASampler):
    @torch.no_grad()
    def generate(self, model, prompt_ids, attention_mask=None, gen_length=32, generator=None) -> GenerationOutput:
        if self.temperature > 0:  # rollouts; evaluation (greedy) is sharded by batch, so it counts differently
            CALLS["count"] += 1
        seen: dict[tuple[int, ...], int] = {}
        outputs = []
        for row in range(prompt_ids.shape[0]):
            key = tuple(prompt_ids[row].tolist())
            copy = seen[key] = seen.get(key, -1) + 1
            digest = hashlib.blake2b(f"{key}:{copy}:{CALLS['count']}".encode(), digest_size=8).digest()
            row_generator = torch.Generator(device=prompt_ids.device).manual_seed(int.from_bytes(digest, "big") >> 1)
            mask = attention_mask[row : row + 1] if attention_mask is not None else None
            outputs.append(super().generate(model, prompt_ids[row : row + 1], mask, gen_length, row_generator))
        return GenerationOutput(
            sequences=torch.cat([o.sequences for o in outputs]),
            step_map=torch.cat([o.step_map for o in outputs]),
            nfe=max(o.nfe for o in outputs),
            block_size=outputs[0].block_size,
            raw_completions=torch.cat([o.raw_completions for o in outputs]),
        )


class DigitShare(Reward):
    """The share of a completion's characters that are digits."""

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        return [sum(c.isdigit() for c in text) / max(1, len(text)) for text in completions]
