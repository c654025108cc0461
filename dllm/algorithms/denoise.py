"""The training forwards every algorithm shares: what a model says about clean tokens under
its own training layout. One place computes log-probs from logits.

- full attention (LLaDA, Dream): one forward over the noisy sequence; shifted (Dream-style)
  logits are realigned so position i predicts token i;
- block diffusion (SDAR): one forward over `[x_t[n:] ; x_0]` under the block-diffusion mask
  (noisy block i sees itself and the clean blocks before it), both copies at their own
  positions; only the noisy copy is read. Blocks and positions are each row's own, counted
  from its first real token (as the sampler decodes them), so the noisy copy starts at the
  earliest row's block holding `noisy_from`: a prompt's tail shares its block with the first
  completion tokens, in the state the caller gives it.
Packed rows (`document_ids`: several examples per row, SFT's `pack`) attend only within each
document, at positions restarting at each document, in either layout.
A value model (same backbone, scalar head) goes through the same forwards and is read the same
way: its value at each noisy position.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.models.base import align_shifted
from dllm.models.masks import block_diffusion_mask, combine, document_positions, row_positions, same_document

Field = Literal["logits", "values"]


def token_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """[...] log softmax(logits)[target], in float32 (logits [..., V], targets [...])."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def noisy_outputs(
    model: torch.nn.Module,
    noisy: Tensor,
    clean: Tensor,
    attention_mask: Tensor,
    block_size: int | None,
    noisy_from: int = 0,
    field: Field = "logits",
    document_ids: Tensor | None = None,
) -> Tensor:
    """[B, L - noisy_from, ...] the model's `field` at positions `noisy_from..L-1` of `noisy`
    (logits: position i predicting token i; values: one per position). `noisy`, `clean`,
    `attention_mask` are [B, L]; `noisy` equals `clean` before `noisy_from`. `document_ids` [B, L]:
    packed rows, each run of equal ids a document (its own padding included, so no key is masked
    for padding and no query is left without keys)."""
    length = clean.shape[1]
    shift = field == "logits" and bool(getattr(model, "shift_logits", False))
    packed = document_ids is not None
    if block_size is None:
        if packed:
            mask = combine(same_document(document_ids), None)
            output = getattr(model(noisy, attention_mask=mask, position_ids=document_positions(document_ids)), field)
        else:
            output = getattr(model(noisy, attention_mask=attention_mask), field)
        return align_shifted(output, noisy_from) if shift else output[:, noisy_from:]
    if shift:
        raise NotImplementedError("block diffusion training of a shifted-logits model is not implemented")
    positions = document_positions(document_ids) if packed else row_positions(attention_mask)
    # The noisy copy starts where the earliest row's block holding `noisy_from` does.
    start = noisy_from - int((positions[:, noisy_from] % block_size).max()) if noisy_from < length else noisy_from
    structure = block_diffusion_mask(length, block_size, document_ids, clean.device, start, positions)
    keys = None if packed else torch.cat([attention_mask[:, start:], attention_mask], dim=1)
    inputs = torch.cat([noisy[:, start:], clean], dim=1)
    both_positions = torch.cat([positions[:, start:], positions], dim=1)
    output = getattr(model(inputs, attention_mask=combine(structure, keys), position_ids=both_positions), field)
    return output[:, noisy_from - start : length - start]


def denoising_log_probs(
    model: torch.nn.Module,
    noisy: Tensor,
    clean: Tensor,
    attention_mask: Tensor,
    block_size: int | None,
    noisy_from: int = 0,
    document_ids: Tensor | None = None,
) -> Tensor:
    """[B, L - noisy_from] log p(clean token | noisy sequence) at positions `noisy_from..L-1`:
    one forward of the full-attention layout (`block_size` None) or the block-diffusion one
    (`document_ids`: packed rows, as in `noisy_outputs`)."""
    logits = noisy_outputs(model, noisy, clean, attention_mask, block_size, noisy_from, document_ids=document_ids)
    return token_log_probs(logits, clean[:, noisy_from:])
