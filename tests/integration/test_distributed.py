"""Two CPU processes (gloo) against one, through `dllm-train`: DDP and DeepSpeed ZeRO-2 train the
same SFT warmup and RL steps on the same global batch and end with the same weights.

Tolerance: losses, gradient norms and learning rates within 1e-5 relative, final weights within
1e-5 absolute. They are not bitwise: two processes sum each gradient in another order (a
partial sum per process, then the all-reduce), so float32 rounding differs (measured: ~1e-7
relative on the losses, 7e-7 on the weights).
"""

import json
import math
import os
from pathlib import Path

import pytest

import dllm
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HELPERS = "tests.integration.distributed_helpers"
# A warmup stage of SFT (2 steps, 2 micro-batches per process), then tracerl's RL (4 prompts x 2
# completions per rollout, 2 optimizer steps per rollout, several backward calls per micro-batch)
# on rollouts made independent of the process split (see distributed_helpers).
RUN = [
    "experiment=addition_tiny", "task.num_eval=4", "trainer.log_every=1", "trainer.warmup_steps=1",
    "trainer.max_steps=3", "trainer.batch_size=4",
    "warmup={algorithm: {_target_: dllm.algorithms.sft.SFT}, trainer: {_target_: dllm.trainer.StageSettings, "
    "max_steps: 2, batch_size: 8, grad_accum: 2, warmup_steps: 1, log_every: 1}}",
    "algorithm=tracerl", "algorithm.group_size=2", "algorithm.prompts_per_rollout=4",
    "algorithm.filters.accuracy_band=null",
    "sampler.steps=8", "sampler.stop_at_eos=false", f"sampler._target_={HELPERS}.RowSeededSampler",
    "reward=boxed_format", f"reward._target_={HELPERS}.DigitShare",
]  # fmt: skip


def env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def records(run_dir: Path) -> dict[tuple[str, int], dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {(r.get("stage", ""), r["step"]): r for r in lines if "loss" in r}


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "checkpoint" / "model.safetensors")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one")
    run_cli("dllm-train", *RUN, f"hydra.run.dir={run_dir}", env=env())
    return run_dir


@pytest.mark.parametrize("trainer", ["ddp", "zero2"])
def test_two_processes_match_one_on_the_same_global_batch(one_process, tmp_path, trainer):
    if trainer == "zero2":
        pytest.importorskip("deepspeed")
    run_cli("dllm-train", *RUN, f"trainer={trainer}", "trainer.num_processes=2", f"hydra.run.dir={tmp_path}", env=env())
    expected, got = records(one_process), records(tmp_path)
    assert sorted(got) == sorted(expected) == [("main", 1), ("main", 2), ("main", 3), ("warmup", 1), ("warmup", 2)]
    for key, record in expected.items():
        for metric in ("loss", "grad_norm", "lr"):
            assert math.isclose(got[key][metric], record[metric], rel_tol=1e-5, abs_tol=1e-7), (key, metric)
    assert any(record["grad_norm"] > 0 for (stage, _), record in expected.items() if stage == "main")
    assert expected[("main", 1)]["reward"] == got[("main", 1)]["reward"]  # rollout metrics gathered
    reference, trained = weights(one_process), weights(tmp_path)
    assert max(float((reference[k] - trained[k]).abs().max()) for k in reference) < 1e-5
    accuracy = [json.loads((d / "eval.json").read_text())["accuracy"] for d in (one_process, tmp_path)]
    assert accuracy[0] == accuracy[1]
    if trainer == "zero2":
        assert (tmp_path / "checkpoint" / "deepspeed").is_dir()
    assert sorted(p.name for p in (tmp_path / "checkpoint" / "rank_states").iterdir()) == ["rank0.pt", "rank1.pt"]


def test_accelerate_launch_runs_the_same_code_path(tmp_path):
    """`accelerate launch -m dllm.cli.train` (no self-relaunch): the launcher's processes train."""
    import subprocess
    import sys

    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "-m", "dllm.cli.train",
        "experiment=addition_tiny", "trainer=ddp", "trainer.max_steps=2", "trainer.batch_size=4", "task.num_eval=2",
        "trainer.log_every=1", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, **env(), "TQDM_DISABLE": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["step"] for r in records(tmp_path).values()] == [1, 2]
    assert (tmp_path / "checkpoint" / "rank_states" / "rank1.pt").is_file()


def test_a_launcher_run_without_a_run_directory_is_refused():
    result = run_cli("dllm-train", "trainer=ddp", check=False, env={"WORLD_SIZE": "2"})
    assert result.returncode == 2
    assert "every process must write to the same run directory; add hydra.run.dir=" in result.stderr


def test_zero3_trains_sft_like_one_process(one_process, tmp_path):
    """ZeRO-3 with every weight sharded (no small parameter kept whole) repeats the SFT warmup
    stage of the one-process run as a run of its own. Its chunk budget is 3 positions: per-process
    chunk counts would differ, and each call of the head gathers its weight with the other process
    (a collective mismatch crashed the run), so under ZeRO-3 the head runs once per forward."""
    pytest.importorskip("deepspeed")
    vocabulary = dllm.load_model("llada_tiny").config.vocab_size
    run_cli(
        "dllm-train", "experiment=addition_tiny", "task.num_eval=4", "trainer.log_every=1", "trainer=zero3",
        "trainer.max_steps=2", "trainer.batch_size=8", "trainer.grad_accum=2", "trainer.warmup_steps=1",
        "+trainer.deepspeed.zero_optimization.stage3_param_persistence_threshold=0", f"hydra.run.dir={tmp_path}",
        env={**env(), "DLLM_CHUNK_BYTES": str(3 * 4 * vocabulary)},
    )  # fmt: skip
    expected, got = records(one_process), records(tmp_path)
    for step in (1, 2):
        for metric in ("loss", "grad_norm", "lr"):
            assert math.isclose(got[("", step)][metric], expected[("warmup", step)][metric], rel_tol=1e-5)
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file()  # whole weights, gathered to save


def test_two_processes_match_one_with_dynamic_sampling(tmp_path):
    """DAPO's dynamic sampling draws again until enough groups pass the filters and trims the
    surplus: two processes train on the groups (and steps) one process does. Step 7 draws twice
    and keeps 5 groups of which the first 4 are trained on (measured)."""
    dapo = [
        "+algorithm/filter@algorithm.filters.drop_equal_groups=drop_equal_groups", "algorithm.dynamic_sampling=true",
        "algorithm.overlong_buffer=0.25", "algorithm.objective.clip_high=0.28", "trainer.max_steps=8",
    ]  # fmt: skip
    run_cli("dllm-train", *RUN, *dapo, f"hydra.run.dir={tmp_path / 'one'}", env=env())
    run_cli("dllm-train", *RUN, *dapo, "trainer=ddp", "trainer.num_processes=2", f"hydra.run.dir={tmp_path / 'two'}",
            env=env())  # fmt: skip
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(one) == 10  # 2 warmup steps, 8 RL steps
    main = {key: record for key, record in one.items() if key[0] == "main"}
    for key, record in main.items():
        for metric in ("loss", "grad_norm", "reward", "rollout_tries", "dropped_groups", "overlong_penalty"):
            assert math.isclose(two[key][metric], record[metric], rel_tol=1e-5, abs_tol=1e-7), (key, metric)
    # 4 groups drawn per draw: some step kept more than the 4 it trains on
    assert any(4 * r["rollout_tries"] - r["dropped_groups"] > 4 for r in main.values())
