"""Regression against outputs recorded from the reference decoder (ML-GSAI/LLaDA `generate`,
commit 65cbed2) on the checkpoint in tests/fixtures/llada_reference: token for token, over
temperature, guidance, remasking, block layouts and left-padded batches."""

import json
from pathlib import Path

import pytest
import torch

import dllm
from tests.unit.samplers.references import NeverPredictsMask

FIXTURE = Path(__file__).parents[2] / "fixtures" / "llada_reference"
RECORD = json.loads((FIXTURE / "cases.json").read_text())


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
