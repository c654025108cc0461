"""The run's peak memory so far, logged with every evaluation (`dllm-compare` reports it)."""

from __future__ import annotations

import resource
import sys

import torch

MIB = 1024 * 1024


def peak_memory(device: torch.device) -> dict[str, float]:
    """`peak_rss_mb`: this process's largest resident set since it started (getrusage's max RSS,
    in MiB); on a CUDA device also `peak_gpu_memory_mb`, the most tensor memory it held there
    (`torch.cuda.max_memory_allocated`, without the allocator's cached blocks)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = {"peak_rss_mb": rss / MIB if sys.platform == "darwin" else rss / 1024}  # macOS: bytes; Linux: KiB
    if device.type == "cuda":
        peak["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / MIB
    return peak
