"""Decoding speed of every cache strategy against plain one-token-per-step decoding without a
cache, on the same ~20M-parameter model in the same run (prompt 16; batch 1 and 16). Every
case decodes one token per forward, so the ratios isolate what the caches save; parallel
decoding (threshold) gains on top of that only on confident, trained models."""

import pytest
import torch

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
PARAMS = [(case, gen) for case in CASES for gen in case[4]]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: dllm.load_model(name).eval() for name in ("llada_small", "sdar_small")}


@pytest.mark.parametrize("case, gen_length", PARAMS, ids=[f"{c[0]}-{g}" for c, g in PARAMS])
def test_decode(benchmark, models, case, gen_length):
    label, model_name, sampler_name, kwargs, _ = case
    sampler = dllm.build_sampler(sampler_name, stop_at_eos=False, **kwargs)
    prompt = torch.randint(4, 100, (1, PROMPT))
    out = benchmark.pedantic(
        sampler.generate, args=(models[model_name], prompt, None, gen_length), rounds=1, iterations=1
    )
    benchmark.extra_info.update(group="samplers", label=label, gen_length=gen_length, tokens=gen_length, nfe=out.nfe)


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
