"""The run's peak memory so far, logged with every evaluation (`dllm-compare` reports it)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

MIB = 1024 * 1024
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device | None = None) -> bool:
    """Start counting this run's peak afresh: a process that runs several runs (a sweep
    launcher's reused workers, a notebook) would otherwise report its largest earlier run's peak
    for every later one. On Linux the kernel's high-water mark (VmHWM) is reset (writing 5 to
    /proc/self/clear_refs); elsewhere getrusage's lifetime peak cannot be reset: False. The GPU
    counter (`torch.cuda.max_memory_allocated`) is reset on a CUDA device."""
    if device is not None and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_kib() -> int:
    """The kernel's high-water mark of this process's resident set since it started or since the
    last `reset_peak_memory` (VmHWM), in KiB; where /proc has none, getrusage's lifetime max."""
    try:
        line = next(line for line in STATUS.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1])
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss // 1024 if sys.platform == "darwin" else rss  # macOS: bytes; Linux: KiB


def peak_memory(device: torch.device) -> dict[str, float]:
    """`peak_rss_mb`: this run's largest resident set (`peak_rss_kib`, in MiB); on a CUDA device
    also `peak_gpu_memory_mb`, the most tensor memory it held there (`torch.cuda.max_memory_allocated`,
    without the allocator's cached blocks)."""
    peak = {"peak_rss_mb": peak_rss_kib() / 1024}
    if device.type == "cuda":
        peak["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / MIB
    return peak
