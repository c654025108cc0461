"""One training forward+backward of a preset at a sequence length, in a fresh process:
prints JSON with the step time and the process's peak resident memory growth (CPU) or peak
allocated memory (CUDA). Used by test_bench_models.py; runnable alone:

    python benchmarks/training_step_probe.py sdar_small 512
"""

from __future__ import annotations

import json
import resource
import sys
import time

import torch

import dllm
from dllm.algorithms.sft import SFT, SFTBatch


def main(preset: str, length: int, backend: str = "sdpa") -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = dllm.load_model(preset, attn_backend=backend).to(device).train()
    half = length // 2
    batch = SFTBatch(
        torch.randint(4, 100, (1, length), device=device),
        torch.ones(1, length, dtype=torch.long, device=device),
        torch.cat([torch.zeros(1, half), torch.ones(1, length - half)], 1).long().to(device),
    )
    sft, generator = SFT(), torch.Generator(device=device).manual_seed(0)
    # First step: peak memory above what the process held before it (resident set on the CPU).
    resident_before = current_resident_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sft.loss(model, batch, generator).loss.backward()
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - resident_before
    # Second step: time.
    model.zero_grad(set_to_none=True)
    began = time.perf_counter()
    sft.loss(model, batch, generator).loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(json.dumps({"seconds": time.perf_counter() - began, "peak_mb": peak_mb, "device": device.type}))


def current_resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
