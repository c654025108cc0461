"""Log-probs of chosen tokens from hidden states, in chunks over positions, so that the float32
logits [K, V] over a large vocabulary, their log-softmax and their gradient never exist whole: each
chunk's logits are computed, reduced to one number per position and dropped; the backward
recomputes them one chunk at a time (activation checkpointing), so it holds one chunk's too.
Exact to float32 rounding against the whole computation (the same head, the same reduction).

On a GPU with `liger-kernel` installed (`pip install dllm[fused]`), a head given as tensors
(`LinearHead`) runs through Liger's fused linear cross-entropy instead: the same numbers, computed
by a Triton kernel that never holds a chunk's float32 logits either. `DLLM_FUSED_HEAD=0` forces the
pure-torch path everywhere."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import torch
from packaging.version import InvalidVersion, Version
from torch import Tensor
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)


def _chunk_bytes(default: int = 2**26) -> int:
    value = os.environ.get("DLLM_CHUNK_BYTES", str(default))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"DLLM_CHUNK_BYTES must be a positive number of bytes, got {value!r}; unset it for {default}")
    return int(value)


# Vocabulary-wide work per chunk, here and in sampling: float32 logits of 132 positions at 126k
# vocabulary (a few times this live at once). DLLM_CHUNK_BYTES trades memory for fewer, larger kernels.
CHUNK_BYTES = _chunk_bytes()
# earlier releases scale every reduction="none" weight gradient by the first token's upstream
# gradient (Liger-Kernel #1298): right for a plain mean, wrong for advantages and masks
LIGER_MIN_VERSION = "0.8.2"


@dataclass(frozen=True)
class LinearHead:
    """A head that is `scale * (hidden @ weight.T + bias)`, given as its tensors so that a fused
    kernel can compute it; `weight` [V, H], `bias` [V] or None."""

    weight: Tensor
    bias: Tensor | None = None
    scale: float = 1.0

    @classmethod
    def of(cls, module: torch.nn.Module, scale: float = 1.0) -> LinearHead | None:
        """`module`'s tensors when calling it is exactly `F.linear` on them: a plain `nn.Linear`
        (not a subclass: LoRA, quantised or sharded layers compute something else) with no hooks
        (DeepSpeed ZeRO-3 gathers weights in one); else None, and the head runs as a module."""
        if type(module) is not torch.nn.Linear or hooked(module):
            return None
        return cls(module.weight, module.bias, scale)


def hooked(module: torch.nn.Module) -> bool:
    """Whether calling `module` runs hooks (ZeRO-3 gathers its partitioned weight in one), so that
    reading its tensors directly would miss what they do."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _chunk_log_probs(head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor) -> Tensor:
    logits = head(hidden).float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def chosen_log_probs(
    head: Callable[[Tensor], Tensor],
    hidden: Tensor,
    targets: Tensor,
    vocab_size: int,
    chunk: int | None = None,
    linear: LinearHead | None = None,
    collective_head: bool = False,
) -> Tensor:
    """[...] float32 log softmax(head(hidden))[target] for hidden [..., H] and targets [...],
    `chunk` positions at a time (default: `CHUNK_BYTES` of float32 logits over `vocab_size`).
    `linear`: the same head as tensors, when it is one: used by the fused kernel when it can run
    (`fused_kernel`), which then ignores `chunk`. `collective_head`: calling the head runs a
    collective (ZeRO-3 gathers its partitioned weight), so every process must call it as often as
    the others whatever its own count of positions: one chunk, run even when empty."""
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    if flat_targets.shape[0] == 0 and not collective_head:
        return torch.zeros(targets.shape, device=hidden.device)
    kernel = fused_kernel(hidden) if linear is not None else None
    if kernel is not None:
        return _fused_log_probs(kernel, linear, flat_hidden, flat_targets).view(targets.shape)
    chunk = max(1, flat_targets.shape[0]) if collective_head else chunk or max(1, CHUNK_BYTES // (4 * vocab_size))
    recompute = torch.is_grad_enabled() and flat_hidden.requires_grad
    parts = []
    for start in range(0, max(1, flat_targets.shape[0]), chunk):
        args = (head, flat_hidden[start : start + chunk], flat_targets[start : start + chunk])
        parts.append(checkpoint(_chunk_log_probs, *args, use_reentrant=False) if recompute else _chunk_log_probs(*args))
    return torch.cat(parts).view(targets.shape)


def _fused_log_probs(kernel: Callable[..., tuple], linear: LinearHead, hidden: Tensor, targets: Tensor) -> Tensor:
    # the scale folds into the kernel's inputs: scale * (h W^T + b) = (scale h) W^T + scale b
    bias = linear.bias
    if linear.scale != 1.0:
        hidden = hidden * linear.scale
        bias = bias * linear.scale if bias is not None else None
    # positional, as autograd functions take them: input, weight, target, bias, class weights,
    # ignore_index (token ids are never negative), z-loss scale, label smoothing, reduction
    loss = kernel(hidden, linear.weight, targets.contiguous(), bias, None, -100, 0.0, 0.0, "none")[0]
    return -loss


def on_gpu(tensor: Tensor) -> bool:
    """Whether `tensor` lives where Liger's Triton kernels run (its own function: tests fake it)."""
    return tensor.is_cuda


def fused_kernel(hidden: Tensor) -> Callable[..., tuple] | None:
    """Liger's fused linear cross-entropy (`apply` of its autograd function) when it can score
    `hidden`: on a GPU, installed at `LIGER_MIN_VERSION` or later, and `DLLM_FUSED_HEAD` is not 0."""
    if os.environ.get("DLLM_FUSED_HEAD", "1") == "0" or not on_gpu(hidden):
        return None
    return _liger_kernel()


@functools.cache
def _liger_kernel() -> Callable[..., tuple] | None:
    try:
        from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction
    except ImportError:
        return None
    installed = liger_version()
    if installed < Version(LIGER_MIN_VERSION):
        logger.warning(
            "liger-kernel %s (0: unknown) may compute wrong per-token gradients: scoring with the "
            "pure-torch head (pip install 'liger-kernel>=%s' for the fused one)",
            installed,
            LIGER_MIN_VERSION,
        )
        return None
    return LigerFusedLinearCrossEntropyFunction.apply


def liger_version() -> Version:
    """The installed liger-kernel's version (0 when its metadata cannot be read)."""
    try:
        return Version(metadata.version("liger-kernel"))
    except (metadata.PackageNotFoundError, InvalidVersion):
        return Version("0")
