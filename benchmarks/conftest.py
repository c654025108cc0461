"""Benchmarks (pytest-benchmark): run with `python -m pytest benchmarks --benchmark-json=...`,
then `python benchmarks/report.py` writes BENCHMARKS.md as side-by-side ratios."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def deterministic_threads():
    torch.manual_seed(0)
