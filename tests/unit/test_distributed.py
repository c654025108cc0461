"""Distribution pieces that need no second process: sharding, shares, refusals, loggers."""

import random
import sys

import pytest
import torch

from dllm.algorithms.base import TrainContext
from dllm.algorithms.sft import SFT
from dllm.distributed import Collective, require_deepspeed
from dllm.errors import ConfigError, DllmError
from dllm.trainer import TrainerConfig


class FakeCollective(Collective):
    """Process `rank` of `world_size`, without a process group (sums and shards only)."""

    def sum(self, value):
        return value


def sft_context(model, tokenizer, micro, rank, world):
    from dllm.data.addition import AdditionTask

    return TrainContext(
        model, tokenizer, AdditionTask(), None, None, micro, random.Random(0), torch.Generator().manual_seed(0),
        torch.device("cpu"), 8, rank=rank, world_size=world, collective=FakeCollective(rank, world),
    )  # fmt: skip


def test_sft_processes_share_the_global_batch_and_its_noise(tiny_model, tokenizer):
    """Two processes' rows and masks, put together, are the one-process micro-batch's."""
    sft = SFT()
    whole_ctx = sft_context(tiny_model, tokenizer, 4, 0, 1)
    whole = next(sft.micro_batches(whole_ctx, 2))
    noisy, masked, p_mask = sft.noise(whole, tiny_model.mask_token_id, whole_ctx.generator)
    parts = []
    for rank in range(2):
        ctx = sft_context(tiny_model, tokenizer, 2, rank, 2)
        batch = next(sft.micro_batches(ctx, 2))
        assert batch.share == 1 / 4  # of the global step: 2 micro-batches x 2 processes
        parts.append((batch, *sft.noise(batch, tiny_model.mask_token_id, ctx.generator)))
    assert torch.equal(torch.cat([p[0].input_ids for p in parts]), whole.input_ids)
    assert torch.equal(torch.cat([p[1] for p in parts]), noisy)
    assert torch.equal(torch.cat([p[2] for p in parts]), masked)
    assert torch.equal(torch.cat([p[3] for p in parts]), p_mask)


def test_one_process_collective_is_the_identity():
    one = Collective()
    assert one.shard([1, 2, 3]) == [1, 2, 3] and one.sum(2.5) == 2.5 and one.any(False) is False
    assert one.sum_metrics({"loss": 1.0}) == {"loss": 1.0}
    assert FakeCollective(1, 2).shard([1, 2, 3, 4]) == [3, 4]
    with pytest.raises(ConfigError, match="cannot be shared evenly by 2 processes"):
        FakeCollective(0, 2).shard([1, 2, 3])


def test_distributed_trainer_values_are_checked():
    with pytest.raises(ConfigError, match="needs a distributed strategy: use trainer=ddp"):
        TrainerConfig(num_processes=2)
    with pytest.raises(ConfigError, match=r"multiple of trainer.grad_accum \(2\) x the number of processes \(3\)"):
        TrainerConfig(strategy="ddp", num_processes=3, batch_size=8, grad_accum=2)
    with pytest.raises(ConfigError, match="unknown logger 'tensorbord' in trainer.loggers — did you mean"):
        TrainerConfig(loggers=["jsonl", "tensorbord"])


def test_missing_deepspeed_names_the_install_command(monkeypatch):
    from dllm.config import compose
    from dllm.run import plan

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # `import deepspeed` now fails
    with pytest.raises(DllmError, match=r"needs DeepSpeed, which is not installed .*pip install \"deepspeed>=0.19\""):
        require_deepspeed()
    with pytest.raises(DllmError, match="pip install"):
        plan(compose(["trainer=zero2"]))


def test_zero3_refuses_rl_and_accepts_sft():
    pytest.importorskip("deepspeed")
    from dllm.config import compose
    from dllm.run import plan

    plan(compose(["trainer=zero3"]))
    with pytest.raises(ConfigError, match="trainer=zero3 cannot train the main stage's algorithm: .* trainer=zero2"):
        plan(compose(["trainer=zero3", "algorithm=tracerl"]))


def test_distributed_configs_compose_and_validate():
    from dllm.config import build_node, compose
    from dllm.run import plan

    for name, strategy in (("ddp", "ddp"), ("zero2", "deepspeed"), ("zero3", "deepspeed")):
        cfg = compose([f"trainer={name}", "trainer.batch_size=8"])
        plan(cfg)
        built = build_node(cfg.trainer)
        assert built.strategy == strategy and built.num_processes == 2
        assert isinstance(built.loggers, list)
        assert built.deepspeed is None or isinstance(built.deepspeed, dict)


def test_a_missing_logger_package_names_its_install_command(tmp_path, monkeypatch):
    from dllm.loggers import Loggers

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(DllmError, match="pip install tensorboard"):
        Loggers(tmp_path, ["jsonl", "tensorboard"])
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(DllmError, match="pip install wandb"):
        Loggers(tmp_path, ["wandb"])


def test_loggers_write_metrics_tensorboard_and_samples(tmp_path):
    pytest.importorskip("tensorboard")
    import json

    from dllm.loggers import Loggers

    loggers = Loggers(tmp_path, ["jsonl", "tensorboard"])
    loggers.write({"step": 1, "loss": 0.5})
    loggers.samples("rollout", {"step": 1}, [{"prompt": "1+1=", "completion": "2", "reward": 1.0}])
    loggers.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 0.5}
    assert json.loads((tmp_path / "samples.jsonl").read_text())["completion"] == "2"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    silent = Loggers(tmp_path / "other", ["jsonl"], enabled=False)  # a process other than 0
    silent.write({"step": 1})
    assert not (tmp_path / "other").exists()


def test_the_forward_progress_bar_leaves_outputs_alone(tiny_model, monkeypatch):
    from dllm.progress import forward_progress

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    ids = torch.zeros(1, 4, dtype=torch.long)
    expected = tiny_model(ids).logits
    with forward_progress(tiny_model, 3, "rollout") as bar:
        for _ in range(3):
            assert torch.equal(tiny_model(ids).logits, expected)
        assert bar.n == 3
    assert not tiny_model._forward_hooks
