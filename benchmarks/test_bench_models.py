"""Training forward+backward of each family's small preset at sequence lengths 512 and 2048
(SDAR's training input is `[x_t ; x_0]`, twice as long), and mask construction time next to it."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dllm.models.masks import block_diffusion_mask, combine

PROBE = Path(__file__).with_name("training_step_probe.py")
BACKENDS = ["sdpa"] + (["flex"] if torch.cuda.is_available() else [])  # flex has no CPU backward


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("length", [512, 2048])
@pytest.mark.parametrize("preset", ["llada_small", "dream_small", "sdar_small"])
def test_training_step(benchmark, preset, length, backend):
    def probe():
        result = subprocess.run(
            [sys.executable, str(PROBE), preset, str(length), backend], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    runs = [probe() for _ in range(2)]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    best = min(runs, key=lambda r: r["seconds"])
    mask_seconds = float("nan")
    if preset.startswith("sdar"):
        began = time.perf_counter()
        for _ in range(5):
            combine(block_diffusion_mask(length, 4), torch.ones(1, 2 * length, dtype=torch.long))
        mask_seconds = (time.perf_counter() - began) / 5
    benchmark.extra_info.update(
        group="models", preset=preset, length=length, backend=backend, step_seconds=best["seconds"],
        peak_mb=max(r["peak_mb"] for r in runs), device=best["device"], mask_seconds=mask_seconds,
    )  # fmt: skip
