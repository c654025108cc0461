"""Throughput of data-parallel training on this machine: the same run (same global batch) with 1
process and with 2 (`trainer=ddp`, gloo on the CPU), each a fresh `dllm-train`. Sequences per
second come from the logged `step_time` of the optimizer steps after the first two (process
start-up, compilation and evaluation excluded).

1 process runs with the machine's threads (all cores in one process) and with 1 thread; 2
processes run 1 thread each, so "2 x 1" against "1 x all" is the speed-up on the same cores.
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
THREADS = os.cpu_count() or 1
SFT = ["model=llada_small", "trainer.batch_size=64", "trainer.max_steps=12"]
RL = [
    "model=llada_small", "algorithm=tracerl", "algorithm.group_size=4", "algorithm.prompts_per_rollout=8",
    "algorithm.filters.accuracy_band=null", "sampler.steps=8", "trainer.batch_size=32", "trainer.max_steps=8",
]  # fmt: skip
COMMON = ["trainer.log_every=1", "trainer.save_every=0", "task.num_eval=2", "trainer.warmup_steps=1"]
CASES = [
    ("sft", 1, THREADS), ("sft", 1, 1), ("sft", 2, 1),
    ("rl", 1, THREADS), ("rl", 1, 1), ("rl", 2, 1),
]  # fmt: skip


def run(kind: str, processes: int, threads: int, run_dir: Path) -> dict[str, float]:
    args = [*(SFT if kind == "sft" else RL), *COMMON, f"hydra.run.dir={run_dir}"]
    if processes > 1:
        args += ["trainer=ddp", f"trainer.num_processes={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    result = subprocess.run([str(BIN / "dllm-train"), *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_time"] for r in records if "step_time" in r][2:]
    batch = 64 if kind == "sft" else 32
    return {"step_seconds": statistics.median(times), "sequences_per_s": batch / statistics.median(times)}


@pytest.mark.parametrize("kind, processes, threads", CASES, ids=[f"{k}-{p}x{t}" for k, p, t in CASES])
def test_data_parallel_throughput(benchmark, tmp_path, kind, processes, threads):
    measured = run(kind, processes, threads, tmp_path)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(group="distributed", kind=kind, processes=processes, threads=threads, **measured)
