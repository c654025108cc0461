import json

import pytest
import torch

from dllm.config import compose
from dllm.errors import ConfigError
from dllm.run import plan
from dllm.trainer_config import RUN_KEYS, StageSettings

TINY = ["experiment=addition_tiny", "trainer.max_steps=2", "trainer.log_every=1", "task.num_eval=4"]


@pytest.mark.parametrize(
    "key, value", [("device", "cpu"), ("resume", "false"), ("precision", "fp32"), ("loggers", "[]")]
)
def test_a_stage_refuses_a_whole_run_key_naming_where_it_belongs(key, value):
    with pytest.raises(ConfigError) as caught:
        plan(compose(["experiment=sudoku_rl", f"+warmup.trainer.{key}={value}"]))
    assert str(caught.value).startswith(f"warmup.trainer.{key} is a whole-run setting")
    assert f"set trainer.{key}" in str(caught.value) and "\n" not in str(caught.value)


def test_run_and_stage_settings_split_the_trainer_keys():
    assert set(RUN_KEYS) == {
        "precision", "device", "resume", "on_nonfinite", "max_nonfinite_in_a_row", "strategy", "num_processes",
        "zero_stage", "deepspeed", "keep_checkpoints", "loggers", "wandb_project", "wandb_mode", "sample_every",
        "progress",
    }  # fmt: skip
    main = compose(["experiment=sudoku_rl"]).trainer
    stage_keys = {k for k in main if not k.startswith("_")} - set(RUN_KEYS)
    StageSettings(**{k: main[k] for k in stage_keys})  # the main stage's own keys are exactly a stage's


def test_the_plan_orders_the_stages_and_keeps_the_whole_run_settings_once():
    run = plan(compose(["experiment=sudoku_rl", "trainer.device=cpu", "trainer.keep_checkpoints=2"]))
    assert [stage.name for stage in run.stages] == ["warmup", "main"]
    warmup, main = (stage.config for stage in run.stages)
    assert type(warmup) is StageSettings and (warmup.max_steps, main.max_steps) == (400, 100)
    assert run.settings is main and (run.settings.device, run.settings.keep_checkpoints) == ("cpu", 2)
    assert run.algorithm is run.stages[-1].algorithm


def test_train_builds_each_component_once_and_writes_the_run_directory(tmp_path, monkeypatch):
    import dllm.config
    import dllm.run

    built: dict[str, int] = {}
    build = dllm.config.build_node

    def counting(node):
        built[node._target_] = built.get(node._target_, 0) + 1
        return build(node)

    monkeypatch.setattr(dllm.config, "build_node", counting)
    monkeypatch.setattr(dllm.run, "build_node", counting)
    metrics = dllm.train(compose(TINY), tmp_path)
    assert sorted(built.values()) == [1] * 6 and len(built) == 6  # model, tokenizer-free: 6 nodes, once each
    assert {"eval/accuracy", "eval/num_samples"} <= set(metrics)
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == metrics["eval/accuracy"]
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2]
    assert (tmp_path / "config.yaml").read_text() == (tmp_path / "checkpoint" / "run_config.yaml").read_text()


def trainer_for(overrides: list[str], run_dir):
    from dllm.run import seed_everything
    from dllm.trainer import Trainer

    run = plan(compose([*TINY, *overrides]))
    seed_everything(0)
    return Trainer(run.components(), run.stages, run_dir, seed=0)


def host_reads_of_a_step(trainer, monkeypatch) -> tuple[dict[str, int], dict]:
    """(the `.item()`, `float()` and `tolist()` calls on tensors up to the update of one optimizer
    step, that step's record)."""
    calls = {"item": 0, "__float__": 0, "tolist": 0}
    for name in calls:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original):
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    before_update = {}
    finish = trainer.sync.finish
    monkeypatch.setattr(trainer.sync, "finish", lambda norm: before_update.update(calls) or finish(norm))
    record = trainer._optimizer_step()
    monkeypatch.undo()
    return before_update, record


def test_an_optimizer_step_brings_its_metrics_to_the_host_once(tmp_path, monkeypatch):
    """Four micro-batches, no `.item()` or `float()` of a tensor per micro-batch: up to the
    update, the step's losses and metrics come to the host in one `tolist()`."""
    trainer = trainer_for(["trainer.grad_accum=4", "trainer.batch_size=8"], tmp_path)
    reads, record = host_reads_of_a_step(trainer, monkeypatch)
    assert reads == {"item": 0, "__float__": 0, "tolist": 1}
    assert isinstance(record["loss"], float) and isinstance(record["masked_fraction"], float)
    assert 0 < record["masked_fraction"] <= 1


def test_an_rl_step_between_rollouts_waits_for_no_device_value(tmp_path, monkeypatch):
    """The second optimizer step of a rollout (no decoding in it): no `.item()` or `float()` of a
    tensor per micro-batch or loss part; the losses and metrics come to the host in one `tolist()`.
    (The trace estimator still reads its loop bounds, `int`/`bool` of device values, per micro-batch.)"""
    overrides = ["algorithm=tracerl_value", "algorithm.group_size=2", "algorithm.prompts_per_rollout=4",
                 "algorithm.filters.accuracy_band=null", "trainer.batch_size=4", "trainer.grad_accum=2"]  # fmt: skip
    trainer = trainer_for(overrides, tmp_path)
    trainer._optimizer_step()  # draws the rollout: 8 rows, two optimizer steps of 4
    reads, record = host_reads_of_a_step(trainer, monkeypatch)
    assert reads == {"item": 0, "__float__": 0, "tolist": 1}
    assert isinstance(record["value_loss"], float) and isinstance(record["policy_loss"], float)


def test_evaluating_a_run_reads_no_training_key(tmp_path):
    """A run saved under algorithm keys this version no longer has (the RL loop's options before
    they moved to its parts), and a warmup stage of the time, still plans for evaluation; the
    device is still checked."""
    from omegaconf import OmegaConf

    from dllm.run import plan_evaluation

    cfg = compose([*TINY, "algorithm=rl"])
    OmegaConf.set_struct(cfg, False)
    cfg.algorithm = {"_target_": "dllm.algorithms.rl.RL", "advantage": "group", "beta": 0.04, "clip_low": 0.2}
    cfg.warmup = {"algorithm": {"_target_": "dllm.algorithms.sft.SFT"}, "trainer": {"device": "cpu"}}
    task, sampler, reward = plan_evaluation(cfg)
    assert (task.gen_length, type(sampler).__name__) == (cfg.task.gen_length, "LLaDASampler")
    with pytest.raises(ConfigError, match="algorithm.advantage='group'"):
        plan(cfg)
    cfg.trainer.device = "cuda:7"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="trainer.device=cuda:7 but this machine has no CUDA GPU"):
            plan_evaluation(cfg)
