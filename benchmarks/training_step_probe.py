"""One training forward+backward of a preset at a sequence length, in a fresh process:
prints JSON with the step time and the process's peak resident memory growth (CPU) or peak
allocated memory (CUDA). Used by test_bench_models.py; runnable alone:

    python benchmarks/training_step_probe.py sdar_small 512
"""

from __future__ import annotations

import json
import resource
import sys
import threading
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
    # First step: peak memory above what the process held before it. On the CPU the resident
    # set is sampled by a thread (large tensors are mmapped, so it tracks live memory).
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        sft.loss(model, batch, generator).loss.backward()
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        with ResidentPeak() as peak:
            sft.loss(model, batch, generator).loss.backward()
        peak_mb = peak.growth_mb
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


class ResidentPeak:
    """Highest resident set size while the block runs, above the size when it began."""

    def __enter__(self) -> ResidentPeak:
        self.before = self.peak = current_resident_mb()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, current_resident_mb())
            time.sleep(0.0005)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, current_resident_mb())
        self.growth_mb = self.peak - self.before


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
