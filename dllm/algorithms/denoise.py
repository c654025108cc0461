"""The training forwards every algorithm shares: log-probabilities of clean tokens under the
model's own training layout. One place computes log-probs from logits.

- full attention (LLaDA, Dream): one forward over the noisy sequence; shifted (Dream-style)
  logits are realigned so position i predicts token i;
- block diffusion (SDAR): one forward over `[x_t[noisy_from:] ; x_0]` under the block-diffusion
  mask (noisy block i sees itself and the clean blocks before it), both copies at their own
  positions; only the noisy copy is scored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.models.base import denoiser_logits
from dllm.models.masks import block_diffusion_mask, check_block_size, combine


def token_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """[...] log softmax(logits)[target], in float32 (logits [..., V], targets [...])."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def block_diffusion_logits(
    model: torch.nn.Module,
    noisy: Tensor,
    clean: Tensor,
    attention_mask: Tensor,
    block_size: int,
    noisy_from: int = 0,
) -> Tensor:
    """[B, L - noisy_from, V] logits of the noisy copy in one `[x_t[noisy_from:] ; x_0]` forward.
    `noisy`, `clean`, `attention_mask` are [B, L]; `noisy` equals `clean` before `noisy_from`."""
    length = clean.shape[1]
    check_block_size(length, block_size, "training length (prompt padded to whole blocks + gen_length)")
    structure = block_diffusion_mask(length, block_size, device=clean.device, noisy_from=noisy_from)
    keys = torch.cat([attention_mask[:, noisy_from:], attention_mask], dim=1)
    positions = torch.cat([torch.arange(noisy_from, length), torch.arange(length)]).to(clean.device)
    inputs = torch.cat([noisy[:, noisy_from:], clean], dim=1)
    return denoiser_logits(model, inputs, combine(structure, keys), positions)[:, : length - noisy_from]


def denoising_log_probs(
    model: torch.nn.Module,
    noisy: Tensor,
    clean: Tensor,
    attention_mask: Tensor,
    block_size: int | None,
    noisy_from: int = 0,
) -> Tensor:
    """[B, L - noisy_from] log p(clean token | noisy sequence) at positions `noisy_from..L-1`:
    one forward of the full-attention layout (`block_size` None) or the block-diffusion one."""
    if block_size is None:
        logits = denoiser_logits(model, noisy, attention_mask)[:, noisy_from:]
    else:
        logits = block_diffusion_logits(model, noisy, clean, attention_mask, block_size, noisy_from)
    return token_log_probs(logits, clean[:, noisy_from:])
