"""The fused head's dispatch (`dllm.models.chosen`): Liger's kernel when it can run, the pure-torch
path otherwise. On the CPU a fake `liger_kernel` stands in; the real one is compared on a GPU."""

import importlib.util
import logging
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from packaging.version import Version

from dllm.models import chosen
from dllm.models.base import MODELS
from dllm.models.chosen import LinearHead, chosen_log_probs

LIGER_MODULE = "liger_kernel.ops.fused_linear_cross_entropy"


class FakeKernel:
    """Liger's `LigerFusedLinearCrossEntropyFunction.apply` in plain torch, recording its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, hidden, weight, targets, bias, *options):
        self.calls.append((hidden, weight, targets, bias, options))
        loss = F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction="none")
        return loss, None, None, None


@pytest.fixture
def fake_liger(monkeypatch):
    """A fake liger-kernel 0.8.5 on a fake GPU; the test may undo either part."""
    kernel = FakeKernel()
    module = types.ModuleType(LIGER_MODULE)
    module.LigerFusedLinearCrossEntropyFunction = types.SimpleNamespace(apply=kernel)
    for name in ("liger_kernel", "liger_kernel.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, LIGER_MODULE, module)
    monkeypatch.setattr(chosen, "on_gpu", lambda tensor: True)
    monkeypatch.setattr(chosen, "liger_version", lambda: Version("0.8.5"))
    monkeypatch.delenv("DLLM_FUSED_HEAD", raising=False)
    chosen._liger_kernel.cache_clear()
    yield kernel
    chosen._liger_kernel.cache_clear()


def head_and_inputs(bias: bool = True):
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=bias)
    hidden = torch.randn(3, 7, 8, requires_grad=True)
    return head, hidden, torch.randint(0, 50, (3, 7))


def test_a_linear_head_on_a_gpu_goes_to_the_fused_kernel_with_its_tensors(fake_liger):
    head, hidden, targets = head_and_inputs()
    read = chosen_log_probs(head, hidden, targets, 50, linear=LinearHead.of(head))
    ((h, weight, t, bias, options),) = fake_liger.calls
    assert weight is head.weight and bias is head.bias
    torch.testing.assert_close(h, hidden.reshape(-1, 8), rtol=0, atol=0)
    assert t.tolist() == targets.reshape(-1).tolist()
    assert options[-1] == "none"  # per-token losses, never a mean
    whole = head(hidden).log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    assert read.shape == targets.shape and read.dtype == torch.float32
    torch.testing.assert_close(read, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("why", ["no linear head", "cpu", "switched off", "too old", "not installed"])
def test_the_pure_path_runs_otherwise(fake_liger, monkeypatch, caplog, why):
    head, hidden, targets = head_and_inputs()
    linear = None if why == "no linear head" else LinearHead.of(head)
    if why == "cpu":
        monkeypatch.setattr(chosen, "on_gpu", lambda tensor: tensor.is_cuda)
    if why == "switched off":
        monkeypatch.setenv("DLLM_FUSED_HEAD", "0")
    if why == "too old":
        monkeypatch.setattr(chosen, "liger_version", lambda: Version("0.8.1"))
    if why == "not installed":
        monkeypatch.setitem(sys.modules, LIGER_MODULE, None)  # import raises ImportError
    with caplog.at_level(logging.WARNING, logger=chosen.__name__):
        read = chosen_log_probs(head, hidden, targets, 50, chunk=4, linear=linear)
    assert fake_liger.calls == []
    assert ("wrong per-token gradients" in caplog.text) == (why == "too old")
    torch.testing.assert_close(read, chosen_log_probs(head, hidden, targets, 50), rtol=0, atol=0)


def test_the_installed_version_is_read_from_the_distribution(monkeypatch):
    monkeypatch.setattr(chosen.metadata, "version", lambda name: {"liger-kernel": "0.8.5"}[name])
    assert chosen.liger_version() == Version("0.8.5")
    monkeypatch.setattr(chosen.metadata, "version", lambda name: "not a version")
    assert chosen.liger_version() == Version("0")


def test_a_scaled_head_folds_its_scale_into_the_kernel_inputs(fake_liger):
    head, hidden, targets = head_and_inputs()
    scale = 0.25

    def scaled(h):
        return head(h) * scale

    fused = chosen_log_probs(scaled, hidden, targets, 50, linear=LinearHead.of(head, scale))
    pure = chosen_log_probs(scaled, hidden, targets, 50)
    assert len(fake_liger.calls) == 1
    torch.testing.assert_close(fused, pure, atol=1e-6, rtol=0)
    upstream = torch.randn(targets.shape)  # per-token weights, as advantages are
    grads = torch.autograd.grad((fused * upstream).sum(), (hidden, head.weight, head.bias))
    expected = torch.autograd.grad((pure * upstream).sum(), (hidden, head.weight, head.bias))
    for grad, want in zip(grads, expected):
        torch.testing.assert_close(grad, want, atol=1e-6, rtol=1e-5)


def test_no_targets_read_no_kernel(fake_liger):
    head, hidden, _ = head_and_inputs()
    read = chosen_log_probs(head, hidden[:, :0], torch.zeros(3, 0, dtype=torch.long), 50, linear=LinearHead.of(head))
    assert read.shape == (3, 0) and fake_liger.calls == []


def test_only_a_plain_linear_module_is_read_as_tensors():
    head = torch.nn.Linear(8, 50)
    assert LinearHead.of(head) == LinearHead(head.weight, head.bias, 1.0)

    class Quantised(torch.nn.Linear):  # computes something else from the same parameters
        pass

    assert LinearHead.of(Quantised(8, 50)) is None
    hooked = torch.nn.Linear(8, 50)
    hooked.register_forward_pre_hook(lambda module, args: None)  # as DeepSpeed ZeRO-3 gathers weights
    assert LinearHead.of(hooked) is None


HEADS = {
    "llada_tiny": {},
    "llada_tiny tied, scaled": {"weight_tying": True, "scale_logits": True},
    "dream_tiny": {},
    "sdar_tiny": {},
    "sdar_tiny tied": {"tie_word_embeddings": True},
}


@pytest.mark.parametrize("case", HEADS)
def test_each_family_linear_head_is_its_output_logits(case):
    torch.manual_seed(0)
    model = MODELS.build(case.split()[0], **HEADS[case])
    linear = model.linear_head()
    hidden = torch.randn(2, 5, linear.weight.shape[1])
    expected = model.output_logits(hidden)
    torch.testing.assert_close(linear.scale * F.linear(hidden, linear.weight, linear.bias), expected)


def test_a_hooked_tied_embedding_runs_as_a_module():
    model = MODELS.build("llada_tiny", weight_tying=True)
    model.model.transformer.wte.register_forward_pre_hook(lambda module, args: None)  # ZeRO-3's gather
    assert model.linear_head() is None


def test_a_lora_head_runs_as_a_module():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(MODELS.build("sdar_tiny"), LoraConfig(r=2, target_modules=["lm_head"]))
    assert model.base_model.model.linear_head() is None


def test_a_model_forward_with_targets_scores_through_the_kernel(fake_liger):
    torch.manual_seed(0)
    model = MODELS.build("llada_tiny")
    input_ids = torch.randint(3, 40, (2, 6))
    positions, targets = torch.tensor([[1, 4], [0, 5]]), torch.randint(3, 40, (2, 2))
    read = model(input_ids, logits_slice=positions, targets=targets).log_probs
    ((_, weight, _, bias, _),) = fake_liger.calls
    assert weight is model.model.transformer.ff_out.weight and bias is None
    logits = model(input_ids).logits.gather(1, positions[..., None].expand(-1, -1, model.config.embedding_size))
    whole = logits.float().log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(read, whole, atol=1e-5, rtol=0)


@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("liger_kernel") is None,
    reason="the fused kernel needs a CUDA GPU and liger-kernel (pip install -e '.[fused]')",
)
def test_the_fused_kernel_equals_the_pure_path_on_a_gpu(monkeypatch):
    monkeypatch.delenv("DLLM_FUSED_HEAD", raising=False)
    chosen._liger_kernel.cache_clear()
    assert chosen.fused_kernel(torch.zeros(1, device="cuda")) is not None, "liger-kernel too old: see the warning"
    torch.manual_seed(0)
    head = torch.nn.Linear(256, 32_000, device="cuda")
    hidden = torch.randn(4, 300, 256, device="cuda", requires_grad=True)
    targets = torch.randint(0, 32_000, (4, 300), device="cuda")
    upstream = torch.randn(targets.shape, device="cuda")  # non-uniform per-token gradients (Liger #1298)
    results = []
    for linear in (LinearHead.of(head), None):
        read = chosen_log_probs(head, hidden, targets, 32_000, linear=linear)
        results.append((read, *torch.autograd.grad((read * upstream).sum(), (hidden, head.weight, head.bias))))
    for fused, pure in zip(*results):
        torch.testing.assert_close(fused, pure, rtol=1e-5, atol=1e-5)


def test_a_collective_head_runs_once_per_forward_whatever_the_positions(monkeypatch):
    """Under ZeRO-3 every call of the head gathers its weight with the other processes: a process
    must call it as often as they do, so one chunk whatever the budget, and a call with no target."""
    monkeypatch.setattr(chosen, "CHUNK_BYTES", 1)
    torch.manual_seed(0)
    model = MODELS.build("llada_tiny")
    head, rows = model.output_logits, []
    model.output_logits = lambda hidden: rows.append(hidden.shape[0]) or head(hidden)
    ids = torch.randint(3, 40, (2, 6))
    model.register_forward_pre_hook(lambda module, args: None)  # as ZeRO-3 hooks every module
    read = model(ids, logits_slice=torch.tensor([[1, 4], [0, 5]]), targets=torch.randint(3, 40, (2, 2))).log_probs
    empty = model(ids, logits_slice=torch.zeros(2, 0, dtype=torch.long), targets=torch.zeros(2, 0, dtype=torch.long))
    assert rows == [4, 0] and read.shape == (2, 2) and empty.log_probs.shape == (2, 0)
