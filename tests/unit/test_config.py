import json

import pytest

from dllm.config import compose
from dllm.errors import ConfigError, DllmError


def test_a_prompt_longer_than_the_context_is_refused_before_training_naming_it(tmp_path):
    from dllm.config import compose
    from dllm.errors import ConfigError
    from dllm.run import plan

    path = tmp_path / "d.jsonl"
    rows = [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(30)]
    rows += [{"prompt": "9" * 90, "answer": "9"}, {"prompt": "2+2=", "answer": "4"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    overrides = ["experiment=addition_tiny", "task=file", f"task.train_file={path}", "task.gen_length=16",
                 "tokenizer=char", "task.chat_template=false", "+model.max_sequence_length=100"]  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        plan(compose(overrides)).components()
    message = str(caught.value)
    assert f"the prompt of {path}:31 has 90 tokens: with task.gen_length=16 it needs 106 positions" in message
    assert "more than the model's context of 100 (1 of 32 prompts do not fit)" in message
    plan(compose([*overrides[:-1], "+model.max_sequence_length=106"])).components()  # exactly fits


def test_a_synthetic_task_prompt_is_checked_against_the_context():
    from dllm.config import compose
    from dllm.errors import ConfigError
    from dllm.run import plan

    with pytest.raises(ConfigError, match=r"the prompt of held-out example 1 has \d+ tokens: with task.gen_length"):
        plan(compose(["experiment=addition_tiny", "+model.max_sequence_length=8"])).components()


def test_pretrained_presets_train_in_float32_on_a_cpu_unless_bf16_is_named():
    import torch

    from dllm.config import compose, model_node
    from dllm.models.base import resolve_dtype

    fixture = "tests/fixtures/llada_reference"
    assert compose(["model=llada", f"model.pretrained={fixture}"]).model.dtype == "auto"  # the shipped preset
    cpu = model_node(compose(["model=llada", f"model.pretrained={fixture}", "trainer.device=cpu"]))
    assert cpu.dtype == "float32"
    named = model_node(compose(["model=llada", f"model.pretrained={fixture}", "model.dtype=bfloat16"]))
    assert named.dtype == "bfloat16"  # asked by name: an opt-in
    assert resolve_dtype("auto", "cpu") is torch.float32
    if not torch.cuda.is_available():
        assert resolve_dtype("auto", "auto") is torch.float32
    with pytest.raises(ConfigError, match=r"unknown dtype 'bf16'.*known: float32, bfloat16, float16, auto"):
        resolve_dtype("bf16")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.max_stepz=5"], "trainer.max_stepz: no such key — did you mean 'trainer.max_steps'?"),
        (["sampler=llada", "sampler.stepz=4"], "sampler.stepz: no such key — did you mean 'sampler.steps'?"),
        (["sampler=lada"], "unknown sampler 'lada' — did you mean 'llada'? known: "),
        (["experiment=addition_tny"], "unknown experiment 'addition_tny' — did you mean 'addition_tiny'"),
        (["model.pretraind=x"], "model.pretraind: no such key (known: none); +model.pretraind=VALUE adds a key"),
    ],
)
def test_composition_errors_are_one_line_naming_the_known_names(overrides, message):
    with pytest.raises(DllmError) as error:
        compose(overrides)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    if message.endswith("known: "):  # every option of the group is named
        assert {"llada", "fast_dllm", "sdar"} <= set(str(error.value).split("known: ")[1].split(", "))


def test_a_launcher_not_installed_names_the_extra_that_brings_it():
    from hydra.errors import MissingConfigException

    from dllm.config import composition_error

    missing = MissingConfigException("Could not find 'hydra/launcher/joblib'", "hydra/launcher/joblib", ["basic"])
    assert str(composition_error(missing)) == (
        "unknown hydra/launcher 'joblib' known: basic; the joblib and submitit launchers come with the sweeps "
        "extra: pip install -e '.[sweeps]'"
    )


def test_a_sweep_run_directory_name_is_cut_with_a_hash_when_its_overrides_are_long():
    from importlib import resources

    from omegaconf import OmegaConf

    from dllm.config import RUN_NAME_LIMIT, run_dirname

    short = "algorithm=spg,seed=1"
    assert run_dirname(short) == short  # readable names kept as Hydra writes them
    # The CPU ablation's overrides of one run: 226 characters, which with a sweep index and a long
    # preset name passed the 255-byte file name limit and stopped the sweep (OSError 36).
    long = (
        "algorithm.num_iterations=1,algorithm.prompts_per_rollout=4,algorithm=tracerl_value,"
        "experiment=ablation_sudoku_sdar,model=sdar,seed=0,trainer.batch_size=32,"
        r"trainer.eval_every=$\{dllm.rollout_steps\:5\},trainer.max_steps=$\{dllm.rollout_steps\:20\},warmup=null"
    )
    name = run_dirname(long)
    assert len(long) > 200 and len(name) == RUN_NAME_LIMIT + 11 and name.startswith(long[:RUN_NAME_LIMIT])
    assert run_dirname(long.replace("seed=0", "seed=1")) != name  # runs cut to the same prefix stay apart
    accented = "task.train_file_label=" + "é" * 100  # 222 bytes in 122 characters: cut by bytes
    assert len(run_dirname(accented).encode()) <= RUN_NAME_LIMIT + 11
    # train.yaml's sweep subdir goes through it
    train = OmegaConf.load(resources.files("dllm.conf") / "train.yaml")
    subdir = OmegaConf.to_container(train.hydra.sweep)["subdir"]  # unresolved: hydra.job exists at run time only
    node = OmegaConf.create({"hydra": {"job": {"num": 3, "override_dirname": long}, "sweep": {"subdir": subdir}}})
    assert node.hydra.sweep.subdir == f"3_{name}"
