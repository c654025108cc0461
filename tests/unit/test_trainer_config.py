import math

import pytest

from dllm.errors import ConfigError
from dllm.trainer_config import TrainerConfig, lr_factor


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
    for value in (math.inf, math.nan):
        with pytest.raises(ConfigError, match=f"trainer.lr={value} is not a finite number"):
            TrainerConfig(lr=value)
    with pytest.raises(ConfigError, match="trainer.on_nonfinite must be stop or skip"):
        TrainerConfig(on_nonfinite="ignore")


def test_a_cuda_device_without_a_gpu_is_refused_at_validation(monkeypatch):
    import torch

    from dllm.config import compose
    from dllm.run import plan

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="trainer.device=cuda but this machine has no CUDA GPU") as caught:
        plan(compose(["experiment=addition_tiny", "trainer.device=cuda"]))
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="trainer.device='gpu' is not a device"):
        TrainerConfig(device="gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    TrainerConfig(device="cuda:1")
    with pytest.raises(ConfigError, match=r"has 2 CUDA GPU\(s\): cuda:0..1"):
        TrainerConfig(device="cuda:2")


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_a_non_finite_lr_is_refused_at_validation(value):
    from dllm.config import compose
    from dllm.run import plan

    with pytest.raises(ConfigError, match="trainer.lr=.* is not a finite number") as caught:
        plan(compose(["experiment=addition_tiny", f"trainer.lr={value}"]))
    assert "\n" not in str(caught.value)


def test_warmup_is_a_fraction_of_the_run_unless_given_in_steps():
    assert TrainerConfig(max_steps=2000, device="cpu").warmup == 50  # the default job's schedule
    assert TrainerConfig(max_steps=50, device="cpu").warmup == 1  # a short run reaches its lr
    assert TrainerConfig(max_steps=50, warmup_steps=0, device="cpu").warmup == 0
    assert TrainerConfig(max_steps=50, warmup_ratio=0.2, device="cpu").warmup == 10
    for bad in ({"warmup_ratio": 1.0}, {"warmup_steps": -1}):
        with pytest.raises(ConfigError, match="warmup"):
            TrainerConfig(device="cpu", **bad)
