"""Regression against outputs recorded from the reference decoder (ML-GSAI/LLaDA `generate`,
commit 65cbed2) on the checkpoint in tests/fixtures/llada_reference: token for token, over
temperature, guidance, remasking, block layouts and left-padded batches."""

import json
from pathlib import Path

import pytest
import torch

import dllm

FIXTURE = Path(__file__).parents[2] / "fixtures" / "llada_reference"
RECORD = json.loads((FIXTURE / "cases.json").read_text())


class NeverPredictsMask(torch.nn.Module):
    """Trained LLaDA models never predict the mask token; the recording made the random
    fixture model behave the same way (mask logit -1e4), and so does this wrapper."""

    block_size = None

    def __init__(self, inner):
        super().__init__()
        self.inner, self.mask_token_id, self.config = inner, inner.mask_token_id, inner.config
        self.shift_logits = inner.shift_logits

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        out = self.inner(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        out.logits[..., self.mask_token_id] = -1e4
        return out


@pytest.fixture(scope="module")
def model():
    return NeverPredictsMask(dllm.load_model(FIXTURE).eval())


@pytest.mark.parametrize(
    "case", RECORD["cases"], ids=lambda c: "-".join(str(v) for k, v in c.items() if k != "expected")
)
def test_reproduces_the_reference_token_for_token(model, case):
    sampler = dllm.build_sampler(
        "llada",
        steps=case["steps"],
        block_length=case["block_length"],
        temperature=case["temperature"],
        cfg_scale=case["cfg_scale"],
        remasking=case["remasking"],
        stop_at_eos=False,
    )
    prompt_ids = torch.tensor(RECORD["prompt_ids"])
    attention_mask = torch.tensor(RECORD["attention_mask"]) if case["use_attention_mask"] else None
    out = sampler.generate(
        model,
        prompt_ids,
        attention_mask,
        gen_length=case["gen_length"],
        generator=torch.Generator().manual_seed(case["seed"]),
    )
    assert out.sequences.tolist() == case["expected"]
