import json
import re

import pytest

from tests.integration.conftest import QUICK, run_cli

pytestmark = pytest.mark.slow


def test_two_step_training_run_writes_everything(trained_run):
    assert (trained_run / "config.yaml").is_file()
    assert (trained_run / "checkpoint" / "model.safetensors").is_file()
    assert (trained_run / "checkpoint" / "trainer_state.pt").is_file()
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert all(r["loss"] > 0 for r in records if "loss" in r)
    final = records[-1]
    assert final["step"] == 2 and final["eval/num_samples"] == 10
    assert 0.0 <= final["eval/accuracy"] <= 1.0


def test_eval_reproduces_the_training_runs_accuracy(trained_run):
    accuracy = json.loads((trained_run / "eval.json").read_text())["accuracy"]
    result = run_cli("dllm-eval", trained_run, "--output", trained_run / "again.json")
    assert f"accuracy {accuracy:.4f} over 10 prompts" in result.stdout
    assert (
        json.loads((trained_run / "again.json").read_text())["samples"]
        == json.loads((trained_run / "eval.json").read_text())["samples"]
    )


def test_eval_with_config_edits(trained_run):
    result = run_cli("dllm-eval", trained_run, "sampler.steps=4", "task.num_eval=5")
    assert "over 5 prompts" in result.stdout and "0.500 NFE/token" in result.stdout


def test_generate_from_a_run_and_from_a_file(trained_run, tmp_path):
    result = run_cli("dllm-generate", trained_run, "--prompt", "12+34=", "--prompt", "7+5=")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("12+34=") and lines[1].startswith("7+5=")
    assert "tokens/s" in result.stderr and "1.000 NFE/token" in result.stderr
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("1+2=\n\n3+4=\n")
    result = run_cli("dllm-generate", "llada_tiny", "--prompt-file", prompt_file, "--gen-length", "4")
    # one completion per non-blank prompt; an untrained model's 4 tokens may hold newlines themselves
    completions = re.split(r"^(?=1\+2=|3\+4=)", result.stdout, flags=re.M)
    assert [c[:4] for c in completions if c] == ["1+2=", "3+4="]


def test_training_resumes_from_its_checkpoint(trained_run, tmp_path):
    import shutil

    run_dir = tmp_path / "resumed"
    shutil.copytree(trained_run, run_dir)
    run_cli("dllm-train", *QUICK, "trainer.max_steps=4", f"hydra.run.dir={run_dir}")
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2, 3, 4, 4]  # steps 1-2 and their eval, then 3-4 and the final eval


def test_multirun_sweep_makes_one_directory_per_run(tmp_path):
    run_cli("dllm-train", "-m", *QUICK, "sampler.steps=4,8", "tokenizer=char", f"hydra.sweep.dir={tmp_path}")
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and (p / "eval.json").is_file())
    assert len(runs) == 2
    assert ["sampler.steps=4" in runs[0].name, "sampler.steps=8" in runs[1].name] == [True, True]
    assert not any("tokenizer=" in r.name for r in runs)  # path-valued keys would nest directories
    assert {json.loads((r / "eval.json").read_text())["nfe_per_token"] for r in runs} == {0.5, 1.0}


def test_dllm_list():
    listing = run_cli("dllm", "list").stdout
    assert "sampler: " in listing and "experiment: " in listing and "trainer: " in listing
    assert "llada" in run_cli("dllm", "list", "sampler").stdout.split()


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("dllm-train", ["sampler=lada"], "error: unknown sampler 'lada' — did you mean 'llada'? known: "),
        (
            "dllm-train",
            ["trainer.max_stepz=5"],
            "error: trainer.max_stepz: no such key — did you mean 'trainer.max_steps'?",
        ),
        ("dllm-eval", ["llada_tiny", "sampler=lada"], "error: unknown sampler 'lada' — did you mean 'llada'? known: "),
        ("dllm-generate", ["llada_tiny", "--prompt", "1+2=", "--bogus"], "error: '--bogus' is neither an option"),
        ("dllm-train", ["sampler.block_length=3"], "error: gen_length (8) must be a multiple of block_length (3)"),
        ("dllm-train", ["sampler.steps=3", "sampler.block_length=4"], "error: steps (3) must be a multiple"),
        ("dllm-eval", ["/no/such/run"], "error: checkpoint directory '/no/such/run' is not a model checkpoint"),
        ("dllm-eval", ["lada_tiny"], "error: unknown model 'lada_tiny' — did you mean 'llada_tiny'"),
        (
            "dllm-eval",
            ["llada_tiny", "task=file", "task.train_file=/no/such.jsonl"],
            "error: task.train_file='/no/such.jsonl': no such file",
        ),
        ("dllm-eval", ["llada_tiny", "--num-samples", "2", "--pass-at", "3"], "error: pass@3 needs at least 3 samples"),
        ("dllm-generate", ["llada_tiny"], "error: no prompts"),
        ("dllm-generate", ["llada_tiny", "--prompt", "1" * 4090], "error: prompt (4090 tokens) + gen_length (8)"),
        ("dllm", ["list", "rewards"], "error: unknown component kind 'rewards' — did you mean 'reward'"),
    ],
)
def test_bad_input_gets_one_clear_error(command, args, message):
    result = run_cli(command, *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        next(line for line in result.stderr.splitlines() if message in line)
    ]  # one error line, the one expected


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for a machine without a GPU")
@pytest.mark.parametrize(
    "command, args",
    [
        ("dllm-train", [*QUICK, "trainer.device=cuda"]),
        ("dllm-eval", ["llada_tiny", "trainer.device=cuda"]),
        ("dllm-generate", ["llada_tiny", "--prompt", "1+2=", "trainer.device=cuda"]),
    ],
)
def test_cuda_without_a_gpu_is_one_line_naming_the_fix(command, args, tmp_path):
    run_dir = [f"hydra.run.dir={tmp_path}"] if command == "dllm-train" else []
    result = run_cli(command, *args, *run_dir, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: trainer.device=cuda but this machine has no CUDA GPU (or torch was built without CUDA); use "
        "trainer.device=auto or trainer.device=cpu"
    ]


def test_overrides_after_options_and_a_group_swap_of_a_run(trained_run):
    result = run_cli("dllm-generate", trained_run, "--prompt", "12+34=", "sampler.steps=2")
    assert "0.250 NFE/token" in result.stderr  # 2 steps over 8 tokens
    result = run_cli("dllm-eval", trained_run, "--num-samples", "2", "sampler.steps=4", "task.num_eval=4")
    assert "over 4 prompts x 2 samples" in result.stdout and "0.500 NFE/token" in result.stdout
    result = run_cli("dllm-eval", trained_run, "sampler=lada", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: unknown sampler 'lada' — did you mean 'llada'? known: " in result.stderr


def test_empty_prompt_file_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = run_cli("dllm-generate", "llada_tiny", "--prompt-file", empty, check=False)
    assert result.returncode == 2 and "holds no prompts" in result.stderr


def test_unwritable_output_directory_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("dllm-train", *QUICK, f"hydra.run.dir={blocker}/run", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("model", ["dream_tiny", "sdar_tiny"])
def test_every_family_trains_and_evaluates_from_the_command_line(model, tmp_path):
    run_cli("dllm-train", *QUICK, f"model={model}", f"hydra.run.dir={tmp_path}")
    saved = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert saved["model_type"] == {"dream_tiny": "Dream", "sdar_tiny": "sdar"}[model]
    accuracy = json.loads((tmp_path / "eval.json").read_text())["accuracy"]
    assert f"accuracy {accuracy:.4f}" in run_cli("dllm-eval", tmp_path).stdout


def test_eval_swaps_a_component_of_a_run(tmp_path):
    run_cli("dllm-train", *QUICK, "model=sdar_tiny", f"hydra.run.dir={tmp_path}")
    result = run_cli(
        "dllm-eval", tmp_path, "sampler=sdar", "sampler.remasking_strategy=sequential", "sampler.stop_at_eos=false"
    )
    assert "over 10 prompts" in result.stdout and "1.375 NFE/token" in result.stdout  # prefill, 8 steps, 2 commits


def test_eval_of_a_sample_file_task_writes_its_tables_and_resumes_after_a_kill(tmp_path):
    out = tmp_path / "eval"
    args = ["llada_tiny", "task=file", "sampler.steps=4", "--num-samples", "2", "--batch-size", "2"]
    args += ["--output-dir", out]
    first = run_cli("dllm-eval", *args)
    assert "accuracy 0.0000 over 2 prompts x 2 samples" in first.stdout and "0.500 NFE/token" in first.stdout
    result = json.loads((out / "eval.json").read_text())
    assert result["num_samples"] == 4 and list(result["pass_at_k"]) == ["pass@1", "pass@2"]
    assert result["setup"]["model"] == "llada_tiny" and result["samples"][0]["prompt"] == "602+637="
    table = (out / "eval.md").read_text()
    assert "| samples per prompt | 2 |" in table and "| pass@2 | 0.0000 |" in table
    progress = (out / "progress.jsonl").read_text().splitlines(keepends=True)
    assert len(progress) == 1 + 2  # the header, then one line per batch of 2 completions

    (out / "progress.jsonl").write_text("".join(progress[:2]))  # killed after the first batch
    second = run_cli("dllm-eval", *args)
    assert "resuming the evaluation" in second.stderr and "1 of 2 batches done" in second.stderr
    again = json.loads((out / "eval.json").read_text())
    assert {**again, "tokens_per_s": 0} == {**result, "tokens_per_s": 0}
    assert (out / "progress.jsonl").read_text().splitlines()[1] == progress[1].rstrip("\n")
