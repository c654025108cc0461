"""`dllm-lm-eval` (lm-eval's command line with `--model dllm`) and `dllm-eval --tasks`, as a
user runs them: the shipped tasks found with no path given, results written with the setup,
an unknown task refused in one line (dllm-eval's own refusal is checked in-process)."""

import json
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow

SFT = Path(__file__).parents[1] / "fixtures" / "addition_sft_tiny"


def test_dllm_lm_eval_runs_a_shipped_task_and_records_the_sampler(tmp_path):
    model_args = f"pretrained={SFT},sampler=fast_dllm,threshold=0.9,block_length=4"
    run_cli(
        "dllm-lm-eval", "--model", "dllm", "--model_args", model_args, "--tasks", "dllm_addition",
        "--limit", "4", "--batch_size", "4", "--output_path", tmp_path, cwd=tmp_path,
    )  # fmt: skip
    (path,) = tmp_path.rglob("results_*.json")
    results = json.loads(path.read_text())
    assert 0 <= results["results"]["dllm_addition"]["exact_match,none"] <= 1
    setup = results["config"]["dllm"]
    assert setup["sampler_settings"]["block_length"] == 4 and setup["generate_until"]["completions"] == 4
    assert setup["versions"]["lm_eval"] and setup["versions"]["dllm"]


def test_dllm_lm_eval_refuses_an_unknown_task_in_one_line(tmp_path):
    result = run_cli(
        "dllm-lm-eval", "--model", "dllm", "--model_args", f"pretrained={SFT}", "--tasks", "dllm_additon",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: Tasks not found: dllm_additon")


def test_dllm_eval_tasks_on_a_run_directory(trained_run):
    result = run_cli("dllm-eval", trained_run, "--tasks", "dllm_addition,dllm_addition_mc", "--limit", "2")
    (path,) = (trained_run / "eval").glob("lm_eval-dllm_addition+dllm_addition_mc-*/results.json")
    results = json.loads(path.read_text())
    assert set(results["results"]) == {"dllm_addition", "dllm_addition_mc"}
    assert results["config"]["dllm"]["run_dir"] == str(trained_run)
    assert "dllm_addition_mc" in result.stdout  # the table (an unknown task: tests/unit/harness/test_tasks.py)


def test_two_processes_give_the_numbers_of_one(tmp_path):
    """`torchrun --nproc_per_node 2` on the CPU (gloo): lm-eval shards the requests and
    gathers them; greedy generation and the per-request likelihood seeds make every number
    the single process's."""
    import subprocess
    import sys

    args = ["--model", "dllm", "--model_args", f"pretrained={SFT},mc_num=8,mc_batch_size=8,check_greedy=false",
            "--tasks", "dllm_addition,dllm_addition_mc", "--limit", "6", "--batch_size", "2"]  # fmt: skip
    run_cli("dllm-lm-eval", *args, "--output_path", tmp_path / "one", cwd=tmp_path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "dllm.cli.lm_eval",
              *args, "--device", "cpu", "--output_path", str(tmp_path / "two")]  # fmt: skip
    subprocess.run(launch, check=True, capture_output=True, cwd=tmp_path, timeout=300)
    one, two = (json.loads(next((tmp_path / n).rglob("results_*.json")).read_text()) for n in ("one", "two"))
    assert two["config"]["dllm"]["processes"] == 2 and one["config"]["dllm"]["processes"] == 1
    for task in ("dllm_addition", "dllm_addition_mc"):
        assert two["results"][task] == one["results"][task]
