"""The code reward's sandbox: what one program costs (a trivial one, run alone), against a
fresh `python -I -c` per program (a subprocess sandbox without isolation), and how many
programs per second a pool of one worker per CPU runs side by side."""

import os
import subprocess
import sys

import pytest

import dllm
from dllm.sandbox import Job, Sandbox

BATCH = 32  # programs per timed round, so that per-program costs are above timer noise
CPUS = len(os.sched_getaffinity(0))
ADD = "def add(a, b):\n    return a + b"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 5) == 5"]


@pytest.fixture(scope="module")
def single():
    with Sandbox(workers=1) as sandbox:
        sandbox.run([Job("pass")])  # start the worker outside the timing
        yield sandbox


@pytest.fixture(scope="module")
def pool():
    with Sandbox(workers=CPUS) as sandbox:
        sandbox.run([Job("pass")] * CPUS)
        yield sandbox


def test_fresh_interpreter(benchmark):
    def run():
        for _ in range(BATCH):
            subprocess.run([sys.executable, "-I", "-c", "pass"], check=True, env={})

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(group="sandbox", label="fresh python -I per program", programs=BATCH, workers=1)


@pytest.mark.parametrize("kind", ["script", "assert"])
def test_sandbox_overhead(benchmark, single, kind):
    job = Job("pass") if kind == "script" else Job(ADD, test=ADD_TESTS[0])
    results = benchmark.pedantic(single.run, args=([job] * BATCH,), rounds=3, iterations=1, warmup_rounds=1)
    assert all(r.passed for r in results)
    label = f"sandbox, one worker, {'trivial program' if kind == 'script' else 'function + one assert'}"
    benchmark.extra_info.update(group="sandbox", label=label, programs=BATCH, workers=1)


@pytest.mark.parametrize("n", [64, 256])
def test_sandbox_throughput(benchmark, pool, n):
    job = Job("print(sum(i * i for i in range(20000)))")  # a few milliseconds of work each
    results = benchmark.pedantic(pool.run, args=([job] * n,), rounds=3, iterations=1, warmup_rounds=1)
    assert all(r.passed for r in results)
    benchmark.extra_info.update(group="sandbox", label="sandbox, pool, a few ms of work each", programs=n, workers=CPUS)


HUMANEVAL = "def check(candidate):\n    for a, b in [(1, 2), (2, 2), (0, 5)]:\n"
HUMANEVAL += "        assert candidate(a, b) == a + b\ncheck(add)"
FORMS = {
    "3 asserts": ADD_TESTS,
    "3 asserts, judged inside": [f"try:\n    {t}\nexcept ZeroDivisionError:\n    raise" for t in ADD_TESTS],
    "1 check(candidate) of 3 calls": [HUMANEVAL],
}


@pytest.mark.parametrize("form", list(FORMS))
def test_code_reward_batch(benchmark, form):
    """A GRPO-sized batch: 64 distinct completions, each against the same tests; "judged
    inside": a test that cannot be split (a try) runs the hardened way, in the sandbox."""
    reward = dllm.build("reward", "code")
    completions = [f"```python\n{ADD}\n# variant {i}\n```" for i in range(64)]
    tests = FORMS[form]
    try:
        reward(["p"], completions[:1], tests=[tests])  # start the workers outside the timing
        scores = benchmark.pedantic(
            reward, args=(["p"] * 64, completions), kwargs={"tests": [tests] * 64}, rounds=3, iterations=1
        )
    finally:
        reward.close()
    assert scores == [1.0] * 64
    label = f"code reward, 64 completions x {form}"
    benchmark.extra_info.update(group="sandbox", label=label, programs=64 * len(tests), workers=CPUS)
