"""Operating runs through the command line: a SIGKILLed run resumes exactly, an incompatible
resume is refused, loggers write their files, a sweep over algorithms x samplers runs in
parallel (joblib) and `dllm-compare` turns it into a table and plots."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import BIN, QUICK, run_cli

pytestmark = pytest.mark.slow

KILLED = ["experiment=addition_tiny", "trainer.max_steps=8", "trainer.save_every=1", "trainer.log_every=1"]
KILLED += ["task.num_eval=4", "trainer.batch_size=8", "trainer.warmup_steps=2"]


def lines(run_dir: Path) -> list[dict]:
    text = (run_dir / "metrics.jsonl").read_text() if (run_dir / "metrics.jsonl").exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def by_step(records: list[dict]) -> dict[int, dict]:
    """The training record of each step, without the measured times."""
    out = {}
    for record in records:
        if "loss" in record:
            out[record["step"]] = {k: v for k, v in record.items() if k not in ("step_time", "elapsed")}
    return out


@pytest.mark.parametrize("extra", [[], ["trainer=ddp"], ["trainer=zero2"]], ids=["one_process", "ddp", "zero2"])
def test_a_run_killed_with_sigkill_resumes_with_the_same_metrics(tmp_path, extra):
    if "trainer=zero2" in extra:
        pytest.importorskip("deepspeed")
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_cli("dllm-train", *KILLED, *extra, f"hydra.run.dir={straight}")
    process = subprocess.Popen(
        [str(BIN / "dllm-train"), *KILLED, *extra, f"hydra.run.dir={killed}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not any(r.get("step", 0) >= 4 for r in lines(killed)) and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and every training process, mid-run
    process.wait()
    assert not (killed / "eval.json").exists()
    run_cli("dllm-train", *KILLED, *extra, f"hydra.run.dir={killed}")
    expected, resumed = by_step(lines(straight)), by_step(lines(killed))
    assert [r["step"] for r in lines(killed) if "loss" in r] == list(range(1, 9))  # each step once
    assert resumed == expected  # bitwise: loss, grad_norm, lr, masked_fraction at every step
    final = [json.loads((d / "eval.json").read_text())["samples"] for d in (straight, killed)]
    assert final[0] == final[1]


def test_resuming_with_another_model_is_refused_naming_the_difference(trained_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    result = run_cli("dllm-train", *QUICK, "model=sdar_tiny", f"hydra.run.dir={run_dir}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot resume" in result.stderr
    difference = "model._target_ is 'dllm.models.llada.llada_tiny' in the checkpoint but 'dllm.models.sdar.sdar_tiny'"
    assert difference in result.stderr
    assert "trainer.resume=false" in result.stderr
    assert "llada_tiny" in (run_dir / "config.yaml").read_text()  # refused before anything was written


@pytest.mark.parametrize("damage", ["no_trainer_state", "truncated_trainer_state", "truncated_weights"])
def test_a_damaged_checkpoint_stops_the_run_with_one_line_naming_the_file(trained_run, tmp_path, damage):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    name = "model.safetensors" if damage == "truncated_weights" else "trainer_state.pt"
    path = run_dir / "checkpoint" / name
    kept = path.read_bytes()
    if damage == "no_trainer_state":
        path.unlink()
    else:
        path.write_bytes(kept[: len(kept) // 2])
    weights = (run_dir / "checkpoint" / "model.safetensors").read_bytes()
    result = run_cli("dllm-train", *QUICK, f"hydra.run.dir={run_dir}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(path) in errors[0], result.stderr
    assert (run_dir / "checkpoint" / "model.safetensors").read_bytes() == weights  # nothing overwritten


def test_loggers_tensorboard_wandb_offline_and_samples(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "offline", "WANDB_API_KEY": "", "HTTPS_PROXY": "http://127.0.0.1:9"}  # no network at all
    run_cli(
        "dllm-train", *QUICK, "algorithm=tracerl", "algorithm.group_size=2", "algorithm.prompts_per_rollout=2",
        "trainer.sample_every=1", "trainer.loggers=[jsonl,tensorboard,wandb]", f"hydra.run.dir={tmp_path}", env=env,
    )  # fmt: skip
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert {s["source"] for s in samples} == {"rollout", "eval"}
    assert {"prompt", "completion", "reward", "step", "stage"} <= set(samples[0])
    assert len([s for s in samples if s["source"] == "rollout" and s["step"] == 1]) == 4  # 2 prompts x 2


def test_a_parallel_sweep_over_algorithms_and_samplers_and_its_comparison(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    run_cli(
        "dllm-train", "-m", *QUICK, "algorithm=tracerl,diffu_grpo", "sampler=llada,fast_dllm",
        "++algorithm.group_size=2", "++algorithm.prompts_per_rollout=2", "++algorithm.num_iterations=1",
        "task.num_eval=4", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    runs = sorted(p for p in sweep.iterdir() if (p / "eval.json").is_file())
    assert len(runs) == 4
    result = run_cli("dllm-compare", sweep)
    table = (sweep / "comparison.md").read_text()
    for algorithm in ("tracerl", "diffu_grpo"):
        for sampler in ("llada", "fast_dllm"):
            assert f"| algorithm={algorithm} sampler={sampler} |" in table
    rows = json.loads((sweep / "comparison.json").read_text())
    assert len(rows) == 4 and all(row["steps"] == 2 for row in rows)
    assert all(row["reward final"] is not None and row["eval/accuracy final"] is not None for row in rows)
    assert {p.name for p in sweep.glob("*.png")} == {"eval_accuracy.png", "reward.png", "loss.png"}
    assert "comparison.md" in result.stdout


def test_ctrl_c_writes_a_checkpoint_of_the_step_and_prints_the_command_that_resumes(tmp_path):
    """SIGINT (a terminal's Ctrl-C) mid-run: exit status 130, no traceback, one line naming the
    checkpoint of the last step and the command that resumes; that command continues from there."""
    import shlex

    from dllm.checkpoint import load_trainer_state

    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    args = ["experiment=addition_tiny", "trainer.max_steps=100000", "trainer.log_every=1", "task.num_eval=4"]
    args += ["trainer.batch_size=8", "trainer.warmup_steps=2", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    with log.open("w") as stderr:
        process = subprocess.Popen([str(BIN / "dllm-train"), *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 240
        while not any(r.get("step", 0) >= 3 for r in lines(run_dir)) and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    err = log.read_text()
    assert "Traceback" not in err
    step = load_trainer_state(run_dir)["step"]
    assert step >= 3 and max(r["step"] for r in lines(run_dir)) == step  # nothing lost: the step under way finished
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted at step {step}: checkpoint written to {run_dir / 'checkpoint'}; resume with: ")
    command = shlex.split(last.split("resume with: ")[1])
    assert command == ["dllm-train", *args]
    resumed = run_cli(*command, f"trainer.max_steps={step + 2}")
    assert f"resumed from {run_dir / 'checkpoint'}: stage main, step {step}" in resumed.stdout + resumed.stderr
    assert [r["step"] for r in lines(run_dir) if "loss" in r] == list(range(1, step + 3))  # each step once
