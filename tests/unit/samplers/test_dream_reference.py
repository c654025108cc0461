"""Regression against outputs recorded from Dream's `_sample` (see tests/fixtures/dream_reference):
token for token over every alg, temperature, alg_temp, top-p/top-k, with and without padding."""

import json
from pathlib import Path

import pytest
import torch

import dllm
from tests.unit.samplers.references import NeverPredictsMask

FIXTURE = Path(__file__).parents[2] / "fixtures" / "dream_reference"
RECORD = json.loads((FIXTURE / "cases.json").read_text())


@pytest.fixture(scope="module")
def model():
    return NeverPredictsMask(dllm.load_model(FIXTURE).eval())


@pytest.mark.parametrize(
    "case", RECORD["cases"], ids=lambda c: "-".join(str(v) for k, v in c.items() if k != "expected")
)
def test_reproduces_the_reference_token_for_token(model, case):
    sampler = dllm.build_sampler(
        "dream", steps=case["steps"], alg=case["alg"], alg_temp=case["alg_temp"], temperature=case["temperature"],
        top_p=case["top_p"], top_k=case["top_k"], stop_at_eos=False,
    )  # fmt: skip
    prompt_ids = torch.tensor(RECORD["prompt_ids"])
    attention_mask = torch.tensor(RECORD["attention_mask"])
    if not case["batch"]:
        prompt_ids, attention_mask = prompt_ids[:1, 3:], None
    out = sampler.generate(
        model,
        prompt_ids,
        attention_mask,
        gen_length=case["gen_length"],
        generator=torch.Generator().manual_seed(case["seed"]),
    )
    assert out.sequences.tolist() == case["expected"]
