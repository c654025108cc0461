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

`denoising_outputs` with `scored` (the positions a loss reads) computes the head only there: the
model gathers those positions' hidden states (padded per row to the longest row's count) and
returns their targets' log-probs in chunks over positions (`dllm.models.chosen`), so no [L, V]
logits exist; `scored=None` is the plain computation (whole logits, whole log-softmax), the
reference it equals to float32 rounding.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.models.base import align_shifted, run_model
from dllm.models.masks import block_diffusion_mask, combine, document_positions, row_positions, same_document

Field = Literal["logits", "values"]


def token_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """[...] log softmax(logits)[target], in float32 (logits [..., V], targets [...])."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _layout(
    model: torch.nn.Module,
    noisy: Tensor,
    clean: Tensor,
    attention_mask: Tensor,
    block_size: int | None,
    noisy_from: int,
    shift: bool,
    document_ids: Tensor | None = None,
) -> tuple[Tensor, dict, int]:
    """(input_ids, forward keyword arguments, offset): the training forward's inputs, and where
    output position `offset + j` says what predicts (or values) noisy position `noisy_from + j`
    (for a shifted model, full attention only, the position before it). `document_ids` [B, L]:
    packed rows, each run of equal ids a document (its own padding included, so no key is masked
    for padding and no query is left without keys)."""
    length = clean.shape[1]
    packed = document_ids is not None
    if block_size is None:
        if packed:
            mask = combine(same_document(document_ids), None)
            return noisy, {"attention_mask": mask, "position_ids": document_positions(document_ids)}, noisy_from - shift
        return noisy, {"attention_mask": attention_mask}, noisy_from - shift
    if shift:
        raise NotImplementedError("block diffusion training of a shifted-logits model is not implemented")
    positions = document_positions(document_ids) if packed else row_positions(attention_mask)
    # The noisy copy starts where the earliest row's block holding `noisy_from` does.
    start = noisy_from - int((positions[:, noisy_from] % block_size).max()) if noisy_from < length else noisy_from
    structure = block_diffusion_mask(length, block_size, document_ids, clean.device, start, positions)
    keys = None if packed else torch.cat([attention_mask[:, start:], attention_mask], dim=1)
    inputs = torch.cat([noisy[:, start:], clean], dim=1)
    both_positions = torch.cat([positions[:, start:], positions], dim=1)
    return inputs, {"attention_mask": combine(structure, keys), "position_ids": both_positions}, noisy_from - start


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
    `attention_mask` are [B, L]; `noisy` equals `clean` before `noisy_from`; `document_ids`:
    packed rows (see `_layout`)."""
    shift = field == "logits" and bool(getattr(model, "shift_logits", False))
    inputs, kwargs, offset = _layout(model, noisy, clean, attention_mask, block_size, noisy_from, shift, document_ids)
    if field == "logits" and offset >= 0:  # the head at the positions returned only
        return run_model(model, slice(offset, offset + clean.shape[1] - noisy_from), inputs, **kwargs)
    output = getattr(model(inputs, **kwargs), field)
    if shift:
        return align_shifted(output, noisy_from)
    return output[:, offset : offset + clean.shape[1] - noisy_from]


def denoising_outputs(
    model: torch.nn.Module,
    noisy: Tensor,
    clean: Tensor,
    attention_mask: Tensor,
    block_size: int | None,
    noisy_from: int = 0,
    field: Field = "logits",
    scored: Tensor | None = None,
    document_ids: Tensor | None = None,
) -> Tensor:
    """[B, L - noisy_from] at positions `noisy_from..L-1`: log p(clean token | noisy sequence)
    (`field="logits"`) or the value model's value, computed only where `scored` [B, L - noisy_from]
    (bool) is set — 0 elsewhere; `scored=None`: everywhere, the plain computation."""
    if scored is None or scored.shape[1] == 0 or not getattr(model, "reads_targets", False):
        # the plain computation; also for modules outside dllm's model contract (wrappers that
        # edit the logits, stand-ins), read where scored
        output = noisy_outputs(model, noisy, clean, attention_mask, block_size, noisy_from, field, document_ids)
        output = token_log_probs(output, clean[:, noisy_from:]) if field == "logits" else output
        return output if scored is None else torch.where(scored, output, 0.0)
    shift = field == "logits" and bool(getattr(model, "shift_logits", False))
    inputs, kwargs, offset = _layout(model, noisy, clean, attention_mask, block_size, noisy_from, shift, document_ids)
    rows, width = scored.shape
    counts = scored.sum(1)
    read = max(int(counts.max()), 1) if rows else 0  # at least one: the loss stays connected to the model
    # each row's scored positions first, in order; the rest pad (read, then dropped)
    order = torch.sort((~scored).to(torch.int8), dim=1, stable=True).indices[:, :read]
    valid = torch.arange(read, device=scored.device) < counts[:, None]
    model_positions = (order + offset).clamp(min=0)  # a shifted model's token 0 reads position 0 (as Dream)
    if field == "logits":
        targets = clean[:, noisy_from:].gather(1, order)
        chosen = model(inputs, logits_slice=model_positions, targets=targets, **kwargs).log_probs
    else:
        chosen = model(inputs, logits_slice=model_positions, **kwargs).values
    # scattered into a spare last column where padded (never a scored position), which is dropped
    index = torch.where(valid, order, width)
    output = torch.zeros(rows, width + 1, device=chosen.device, dtype=chosen.dtype)
    return output.scatter(1, index, chosen)[:, :width]


def denoising_log_probs(
    model: torch.nn.Module,
    noisy: Tensor,
    clean: Tensor,
    attention_mask: Tensor,
    block_size: int | None,
    noisy_from: int = 0,
    scored: Tensor | None = None,
    document_ids: Tensor | None = None,
) -> Tensor:
    """[B, L - noisy_from] log p(clean token | noisy sequence) at positions `noisy_from..L-1`:
    one forward of the full-attention layout (`block_size` None) or the block-diffusion one;
    with `scored`, only there (see `denoising_outputs`); `document_ids`: packed rows."""
    return denoising_outputs(
        model, noisy, clean, attention_mask, block_size, noisy_from, "logits", scored, document_ids
    )
