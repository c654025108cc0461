"""Decoding throughput of the `llada` sampler (batched vs one prompt) and the compute
efficiency of an SFT step (model FLOP/s against dense matmul FLOP/s, same process)."""

import pytest
import torch

import dllm
from dllm.algorithms.sft import SFT, SFTBatch

PROMPT, GEN = 16, 64


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return dllm.load_model("llada_small").eval()


@pytest.mark.parametrize("batch", [1, 16])
def test_llada_decode(benchmark, small_model, batch):
    sampler = dllm.build_sampler("llada", steps=GEN, block_length=GEN, stop_at_eos=False)
    prompts = torch.randint(4, 100, (batch, PROMPT))
    out = benchmark.pedantic(sampler.generate, args=(small_model, prompts, None, GEN), rounds=3, iterations=1)
    benchmark.extra_info.update(tokens=batch * GEN, nfe=out.nfe, group="decode")


def model_flops_per_token(model) -> int:
    """6 * parameters per token for forward + backward (attention scores are negligible at L=24)."""
    return 6 * sum(p.numel() for p in model.parameters())


def test_sft_step(benchmark, small_model):
    model = small_model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sft = SFT()
    generator = torch.Generator().manual_seed(0)
    batch = SFTBatch(
        torch.randint(4, 100, (64, 24)),
        torch.ones(64, 24, dtype=torch.long),
        torch.cat([torch.zeros(64, 12), torch.ones(64, 12)], 1).long(),
    )

    def step():
        optimizer.zero_grad()
        sft.loss(model, batch, generator).loss.backward()
        optimizer.step()

    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=2)
    benchmark.extra_info.update(flops=model_flops_per_token(model) * batch.input_ids.numel(), group="train")


def test_dense_matmul(benchmark):
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=20, iterations=1, warmup_rounds=2)
    benchmark.extra_info.update(flops=2 * 1024**3, group="train")
