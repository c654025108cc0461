"""Shared pieces of the RL tests: rollouts from real samplers on tiny models, recording models."""

from __future__ import annotations

import torch

import dllm
from dllm.algorithms.rollout import Rollout, rollout_from_output
from tests.recording import RecordingModel

Recorder = RecordingModel


def tiny(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return dllm.load_model(preset).eval()


def sampled_rollout(model, sampler, tokenizer, prompts=("12+345=", "7+8="), gen_length=8, seed=0) -> Rollout:
    """A rollout of `sampler` on `model` (every completion token scored, rewards 0)."""
    batch = tokenizer(list(prompts), padding=True, return_tensors="pt")
    out = sampler.generate(
        model, batch["input_ids"], batch["attention_mask"], gen_length, torch.Generator().manual_seed(seed)
    )
    rollout = rollout_from_output(model, batch["input_ids"], batch["attention_mask"], out, eos_id=None)
    return rollout
