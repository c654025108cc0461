"""dllm's metrics as `evaluate` modules, loaded from their local directories (never the hub)."""

import pytest

import dllm.metrics
from dllm.errors import UnknownNameError

evaluate = pytest.importorskip("evaluate")  # the optional extra dllm[metrics]


def test_pass_at_k_loads_locally_and_equals_the_closed_form():
    metric = evaluate.load(dllm.metrics.path("pass_at_k"))
    assert metric.compute(predictions=[[1, 0, 1, 0, 0]], k=[1, 2]) == pytest.approx({"pass@1": 0.4, "pass@2": 0.7})
    # prompts with different n; rewards below the threshold count as wrong
    result = metric.compute(predictions=[[1.0, 0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], k=[1, 3])
    assert result == pytest.approx({"pass@1": (0.4 + 0.0) / 2, "pass@3": (0.9 + 0.0) / 2})
    assert metric.compute(predictions=[[0.5, 0.2]], k=[1], threshold=0.5) == pytest.approx({"pass@1": 0.5})


def test_reward_accuracy_loads_locally():
    metric = evaluate.load(dllm.metrics.path("reward_accuracy"))
    assert metric.compute(predictions=[1.0, 0.1, 0.0, 1.0]) == pytest.approx({"accuracy": 0.5, "mean_reward": 0.525})
    metric.add_batch(predictions=[1.0, 0.0])
    metric.add_batch(predictions=[0.0, 0.0])
    assert metric.compute() == pytest.approx({"accuracy": 0.25, "mean_reward": 0.25})


def test_an_unknown_metric_names_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"unknown metric 'pass@k'.* known: pass_at_k, reward_accuracy"):
        dllm.metrics.path("pass@k")


def test_metrics_are_reachable_after_import_dllm_alone():
    """In a fresh interpreter, as a user's script: `import dllm` then `dllm.metrics.path(...)`."""
    import ast
    import subprocess
    import sys

    script = (
        "import dllm, evaluate; "
        "print(evaluate.load(dllm.metrics.path('pass_at_k')).compute(predictions=[[1, 0, 1, 0, 0]], k=[1, 2]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ast.literal_eval(result.stdout.strip().splitlines()[-1]) == pytest.approx({"pass@1": 0.4, "pass@2": 0.7})
