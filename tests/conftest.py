"""Shared fixtures: tiny models, the character tokenizer, and a scripted fake model."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

import dllm
from dllm.tokenizer import build_char_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return dllm.load_model("llada_tiny").eval()


@pytest.fixture
def prompts(tokenizer):
    """Two ragged, left-padded prompts."""
    batch = tokenizer(["12+345=", "7+8="], padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


@dataclass
class ScriptedOutput:
    logits: torch.Tensor


class ScriptedModel(torch.nn.Module):
    """A fake denoiser: `logits_fn(input_ids) -> logits`; records every input it is called with."""

    block_size = None
    shift_logits = False

    def __init__(self, logits_fn, mask_token_id: int = 2, eos_token_id: int | None = 1, max_length: int = 64):
        super().__init__()
        self.logits_fn = logits_fn
        self.mask_token_id = mask_token_id
        self.config = SimpleNamespace(eos_token_id=eos_token_id, pad_token_id=0, max_position_embeddings=max_length)
        self.calls: list[torch.Tensor] = []
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        self.calls.append(input_ids.clone())
        return ScriptedOutput(self.logits_fn(input_ids) + 0 * self.anchor)


@pytest.fixture
def scripted_model():
    return ScriptedModel
