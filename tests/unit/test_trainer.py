import contextlib
import json
import math

import pytest

from dllm.errors import ConfigError
from dllm.trainer import TrainerConfig, lr_factor


def test_lr_schedule_by_hand():
    assert lr_factor(0, warmup_steps=4, max_steps=14, min_lr_ratio=0.1) == pytest.approx(0.25)
    assert lr_factor(3, 4, 14, 0.1) == pytest.approx(1.0)
    assert lr_factor(4, 4, 14, 0.1) == pytest.approx(1.0)  # cosine starts at its peak
    assert lr_factor(9, 4, 14, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(14, 4, 14, 0.1) == pytest.approx(0.1)
    assert lr_factor(20, 4, 14, 0.1) == pytest.approx(0.1)


def test_precision_resolution():
    import torch

    assert TrainerConfig().autocast_dtype(torch.device("cpu")) is None
    assert TrainerConfig(precision="bf16").autocast_dtype(torch.device("cpu")) == torch.bfloat16
    assert TrainerConfig(device="cpu").resolve_device() == torch.device("cpu")


def test_bad_trainer_values_are_refused():
    with pytest.raises(ConfigError, match="multiple of trainer.grad_accum"):
        TrainerConfig(batch_size=10, grad_accum=4)
    with pytest.raises(ConfigError, match="must be positive"):
        TrainerConfig(max_steps=0)
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        TrainerConfig(min_lr_ratio=2.0)


class Killed(Exception):
    pass


def run(tmp_path, overrides, kill_after=None):
    """A tiny SFT run in `tmp_path`, killed right after the checkpoint of step `kill_after`;
    its metrics lines."""
    from dllm.cli.train import seed_everything
    from dllm.config import build_components, build_node, compose
    from dllm.trainer import Stage, Trainer

    tmp_path.mkdir(exist_ok=True)
    cfg = compose(["experiment=addition_tiny", "trainer.log_every=1", "trainer.save_every=1", *overrides])
    seed_everything(cfg.seed)
    components = build_components(cfg)
    trainer_config = build_node(cfg.trainer)
    trainer = Trainer(components, [Stage("main", trainer_config, components.algorithm)], tmp_path, seed=cfg.seed)
    trainer.resume_if_possible()
    save = trainer.save

    def save_then_maybe_die():
        save()
        if trainer.step == kill_after:
            raise Killed

    trainer.save = save_then_maybe_die
    with contextlib.suppress(Killed):
        trainer.train()
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_a_resumed_run_continues_the_same_loss_curve(tmp_path):
    overrides = ["trainer.max_steps=6", "task.num_eval=4"]
    straight = run(tmp_path / "straight", overrides)
    run(tmp_path / "resumed", overrides, kill_after=3)
    resumed = run(tmp_path / "resumed", overrides)
    losses = [(r["step"], r["loss"]) for r in straight if "loss" in r]
    assert [(r["step"], r["loss"]) for r in resumed if "loss" in r] == losses  # bitwise, on the CPU
    assert straight[-1]["eval/accuracy"] == resumed[-1]["eval/accuracy"]


def test_resume_refuses_another_tokenizer_strategy_or_partitioning(tmp_path):
    from dllm.config import build_components, build_node, compose
    from dllm.errors import DllmError
    from dllm.trainer import Stage, Trainer, tokenizer_fingerprint

    cfg = compose(["experiment=addition_tiny"])
    components = build_components(cfg)
    trainer = Trainer(components, [Stage("main", build_node(cfg.trainer), components.algorithm)], tmp_path, seed=0)
    same = tokenizer_fingerprint(components.tokenizer)
    trainer.check_resumable({"tokenizer": same, "strategy": "none", "world_size": 1})
    with pytest.raises(DllmError, match="another tokenizer .* trainer.resume=false"):
        trainer.check_resumable({"tokenizer": "0" * 16})
    with pytest.raises(DllmError, match=r"trainer.strategy=deepspeed \(ZeRO-2\) and this run uses none"):
        trainer.check_resumable({"tokenizer": same, "strategy": "deepspeed", "zero_stage": 2})
    trainer.check_resumable({"tokenizer": same, "strategy": "ddp", "world_size": 2})  # a warning: streams restart


def test_resume_config_check_names_weight_changes_and_allows_numerics(tmp_path):
    from omegaconf import OmegaConf

    from dllm.cli.train import check_resumable_config
    from dllm.config import compose
    from dllm.errors import DllmError

    (tmp_path / "checkpoint").mkdir()
    saved = compose(["experiment=addition_tiny"])
    (tmp_path / "checkpoint" / "run_config.yaml").write_text(OmegaConf.to_yaml(saved, resolve=True))
    check_resumable_config(compose(["experiment=addition_tiny", "trainer.max_steps=99"]), tmp_path)
    check_resumable_config(compose(["experiment=addition_tiny", "+model.dtype=bfloat16"]), tmp_path)
    check_resumable_config(compose(["experiment=addition_tiny", "tokenizer=char"]), tmp_path)  # the same vocabulary
    with pytest.raises(DllmError, match="model._target_ is 'dllm.models.llada.llada_tiny' in the checkpoint"):
        check_resumable_config(compose(["experiment=addition_tiny", "model=dream_tiny"]), tmp_path)
    check_resumable_config(compose(["experiment=addition_tiny", "model=dream_tiny", "trainer.resume=false"]), tmp_path)


def test_elapsed_time_accumulates_and_carries_over_a_resume(tmp_path):
    overrides = ["trainer.max_steps=6", "task.num_eval=4"]
    run(tmp_path, overrides, kill_after=3)  # checkpoint at step 3 (save_every=1), then killed
    first = [r["elapsed"] for r in run(tmp_path / "probe", overrides) if "elapsed" in r]
    assert len(first) == 7 and first == sorted(first) and first[0] > 0  # 6 steps and the evaluation
    resumed = [r for r in run(tmp_path, overrides) if "elapsed" in r]
    before_kill = [r for r in resumed if r["step"] <= 3 and "loss" in r]
    after = [r for r in resumed if r["step"] > 3]
    assert after[0]["elapsed"] > before_kill[-1]["elapsed"]  # counted on from the checkpoint, not from 0
