"""Decoding speed of every cache strategy against plain one-token-per-step decoding without a
cache, on the same ~20M-parameter model in the same run (prompt 16; batch 1 and 16). Every
case decodes one token per forward, so the ratios isolate what the caches save; parallel
decoding (threshold) gains on top of that only on confident, trained models."""

import pytest
import torch
from generation_memory_probe import SIZES  # ~20M parameters, the same width and depth for both families

import dllm

PROMPT = 16
ONE_PER_STEP = {"block_length": 32, "threshold": None}
SEQUENTIAL = {"remasking_strategy": "sequential"}
CASES = [
    # (label, model, sampler, sampler kwargs, gen lengths)
    ("llada plain", "llada_small", "llada", {"block_length": 32, "steps": None}, (64, 256)),
    ("fast_dllm none", "llada_small", "fast_dllm", {**ONE_PER_STEP, "use_cache": "none"}, (64, 256)),
    ("fast_dllm prefix", "llada_small", "fast_dllm", {**ONE_PER_STEP, "use_cache": "prefix"}, (64, 256)),
    ("fast_dllm dual", "llada_small", "fast_dllm", {**ONE_PER_STEP, "use_cache": "dual"}, (64, 256)),
    ("sdar no cache", "sdar_small", "sdar", {**SEQUENTIAL, "use_cache": False}, (64, 256, 1024)),
    ("sdar block cache", "sdar_small", "sdar", {**SEQUENTIAL, "use_cache": True}, (64, 256, 1024)),
]
# batch 16 at 64 tokens only: plain decoding of 16 x 256 tokens takes minutes on 2 CPU cores
PARAMS = [(case, gen, batch) for case in CASES for gen in case[4] for batch in (1, 16) if batch == 1 or gen == 64]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: dllm.load_model(name, **sizes).eval() for name, sizes in SIZES.items()}


@pytest.mark.parametrize("case, gen_length, batch", PARAMS, ids=[f"{c[0]}-{g}-b{b}" for c, g, b in PARAMS])
def test_decode(benchmark, models, case, gen_length, batch):
    label, model_name, sampler_name, kwargs, _ = case
    sampler = dllm.build_sampler(sampler_name, stop_at_eos=False, **kwargs)
    prompt = torch.randint(4, 100, (batch, PROMPT))
    model = models[model_name]
    out = benchmark.pedantic(sampler.generate, args=(model, prompt, None, gen_length), rounds=1, iterations=1)
    benchmark.extra_info.update(
        group="samplers", label=label, gen_length=gen_length, batch=batch, tokens=gen_length * batch, nfe=out.nfe,
        params=sum(p.numel() for p in model.parameters()),
    )  # fmt: skip


@pytest.mark.parametrize("label", ["sdar block cache"])
def test_generation_memory(benchmark, label):
    import json
    import subprocess
    import sys
    from pathlib import Path

    probe = Path(__file__).with_name("generation_memory_probe.py")
    result = subprocess.run(
        [sys.executable, str(probe), *label.split()], capture_output=True, text=True, cwd=probe.parent
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(group="generation_memory", label=label, **measured)


def test_decode_overhead(benchmark):
    """The loop's ms per forward outside the model (`decode_overhead_probe.py`), median of 5 repeats."""
    from statistics import median

    from decode_overhead_probe import measure

    results = benchmark.pedantic(measure, args=(5,), rounds=1, iterations=1)
    benchmark.extra_info.update(group="decode_overhead", ms_per_forward={k: median(v) for k, v in results.items()})


def test_batch_scaling(benchmark):
    """Tokens/s at batch 1, 8 and 32 on a confident model, and a TraceRL rollout's completions/s
    (`batch_scaling_probe.py`, one thread; BATCH_PROBE_QUICK=1 shrinks it)."""
    from batch_scaling_probe import measure

    results = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(
        group="batch_scaling",
        tokens_per_s={key: r["tokens"] / r["seconds"] for key, r in results["decoding"].items()},
        nfe={key: r["nfe"] for key, r in results["decoding"].items()},
        rollout_completions_per_s=[r["completions"] / r["seconds"] for r in results["rollout"]],
    )
