"""One policy update per estimator on the same rollout batch (8 completions of 64 tokens from
a ~20M-parameter model), each in a fresh process: time and peak memory; and the trace
estimator's packed replay against the naive one (one forward per step of each block)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("rl_update_probe.py")
CASES = [
    ("sdar_small", "trace"), ("sdar_small", "trace_naive"), ("sdar_small", "one_step"), ("sdar_small", "coupled"),
    ("sdar_small", "random_mask"), ("llada_small", "trace"), ("llada_small", "one_step"), ("llada_small", "coupled"),
    ("llada_small", "random_mask"),
]  # fmt: skip


@pytest.mark.parametrize("preset, estimator", CASES, ids=[f"{p}-{e}" for p, e in CASES])
def test_policy_update(benchmark, preset, estimator):
    result = subprocess.run(
        [sys.executable, str(PROBE), preset, estimator], capture_output=True, text=True, cwd=PROBE.parent
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(group="rl_update", preset=preset, estimator=estimator, **measured)
