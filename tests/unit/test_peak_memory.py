from pathlib import Path

import pytest
import torch

from dllm.peak_memory import peak_memory


def high_water_mark_kib() -> int:
    """The kernel's own peak resident set of this process (VmHWM, in KiB)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_peak_rss_is_the_kernels_high_water_mark_in_mib():
    block = torch.ones(16 * 1024 * 1024)  # 64 MiB, touched
    peak = peak_memory(torch.device("cpu"))
    assert float(block[-1]) == 1.0
    assert peak["peak_rss_mb"] == pytest.approx(high_water_mark_kib() / 1024, rel=0.02)
    assert peak["peak_rss_mb"] >= 64
    assert "peak_gpu_memory_mb" not in peak  # the CPU has none


def test_on_a_cuda_device_the_peak_of_allocated_tensor_memory_is_added_in_mib(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: asked.append(device) or 3 * 1024 * 1024)
    peak = peak_memory(torch.device("cuda", 1))  # no GPU needed: the allocator's counter is stubbed
    assert peak["peak_gpu_memory_mb"] == 3.0 and asked == [torch.device("cuda", 1)]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resets Linux's high-water mark")
def test_a_reset_forgets_an_earlier_peak_of_the_same_process():
    """A sweep launcher's worker runs run after run: each must report its own peak."""
    from dllm.peak_memory import reset_peak_memory

    block = torch.ones(64 * 1024 * 1024)  # 256 MiB, touched
    before = peak_memory(torch.device("cpu"))["peak_rss_mb"]
    del block
    assert reset_peak_memory(torch.device("cpu"))
    after = peak_memory(torch.device("cpu"))["peak_rss_mb"]
    assert before - after > 200  # the freed block no longer counts
    assert after == pytest.approx(high_water_mark_kib() / 1024, rel=0.02)


def test_on_a_cuda_device_a_reset_resets_the_allocators_peak(monkeypatch):
    from dllm.peak_memory import reset_peak_memory

    reset = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: reset.append(device))
    reset_peak_memory(torch.device("cuda", 0))
    assert reset == [torch.device("cuda", 0)]
