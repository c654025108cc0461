"""Attention masks for every family, built vectorised (no Python loops over positions).

A mask is boolean, `True` where a query may attend a key. Shapes: [Lq, Lk] for the
structural masks below; `combine` broadcasts them with a [B, Lk] padding mask into the
[B, 1, Lq, Lk] (or None) that attention backends take.

- full: every query sees every key (LLaDA, Dream).
- block-causal: a token sees every token of its own block and of earlier blocks (SDAR at
  inference).
- block-diffusion (training over `[x_t ; x_0]`, length 2L, or `[x_t[P:] ; x_0]` when only the
  completion after P is noisy): noisy block i sees noisy block i and clean blocks < i; clean
  block i sees clean blocks <= i. With `document_ids` (packed samples) blocks restart at each
  document and nothing crosses documents.

Blocks count from each row's own position 0, as SDAR's decoder counts them: a left-padded row
takes its positions from its real tokens (`row_positions`), so a prompt that ends inside a
block shares that block with the first generated tokens, whatever the padding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.errors import ConfigError


def check_block_size(length: int, block_size: int, what: str = "sequence length") -> None:
    if block_size < 1 or length % block_size:
        raise ConfigError(
            f"block_size ({block_size}) must divide the {what} ({length}); pad the sequence to a "
            f"multiple of {block_size} or choose a block size that divides {length}"
        )


def block_causal_mask(q_positions: Tensor, k_positions: Tensor, block_size: int) -> Tensor:
    """[Lq, Lk] (or [B, Lq, Lk] for per-row [B, L] positions): key block <= query block, for
    absolute positions (queries may sit after a cache)."""
    return (k_positions[..., None, :] // block_size) <= (q_positions[..., :, None] // block_size)


def row_positions(attention_mask: Tensor) -> Tensor:
    """[B, L] position of each column counted from the row's first real token (0 on the left
    padding before it): the positions a left-padded row has as if it were alone."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def document_positions(document_ids: Tensor) -> Tensor:
    """[..., L] each position counted from the start of its document (a run of equal ids): the
    positions packed documents have as if each were alone."""
    positions = torch.arange(document_ids.shape[-1], device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[..., 1:] = document_ids[..., 1:] != document_ids[..., :-1]
    return positions - torch.cummax(torch.where(starts, positions, 0), dim=-1).values


def same_document(document_ids: Tensor) -> Tensor:
    """[..., L, L] full attention within each document of packed rows `document_ids` [..., L]."""
    return document_ids[..., :, None] == document_ids[..., None, :]


def _document_blocks(length: int, block_size: int, document_ids: Tensor | None, device) -> tuple[Tensor, Tensor]:
    """Per position: its block index (restarting at each document) and its document id."""
    if document_ids is None:
        return torch.arange(length, device=device) // block_size, torch.zeros(length, dtype=torch.long, device=device)
    document_ids = document_ids.to(device)
    return document_positions(document_ids) // block_size, document_ids


def block_diffusion_mask(
    length: int,
    block_size: int,
    document_ids: Tensor | None = None,
    device: torch.device | str = "cpu",
    noisy_from: int = 0,
    positions: Tensor | None = None,
) -> Tensor:
    """[N + L, N + L] training mask over `[x_t[noisy_from:] ; x_0]`: the noisy copy of positions
    `noisy_from..L-1` first (N = L - noisy_from; a clean prompt need not be copied), then the
    clean sequence. Block i of the noisy copy sees itself and clean blocks < i. With per-row
    `positions` [B, L] (`row_positions`, or `document_positions` with per-row `document_ids`
    [B, L] of packed rows) the blocks are each row's own: [B, N + L, N + L]."""
    if positions is not None:
        blocks = positions.to(device) // block_size
        documents = torch.zeros_like(blocks) if document_ids is None else document_ids.to(device)
    else:
        blocks, documents = _document_blocks(length, block_size, document_ids, device)
    block = torch.cat([blocks[..., noisy_from:], blocks], dim=-1)
    document = torch.cat([documents[..., noisy_from:], documents], dim=-1)
    noisy = torch.cat(
        [
            torch.ones(length - noisy_from, dtype=torch.bool, device=device),
            torch.zeros(length, dtype=torch.bool, device=device),
        ]
    )
    q_block, k_block = block[..., :, None], block[..., None, :]
    q_noisy, k_noisy = noisy[:, None], noisy[None, :]
    same_document = document[..., :, None] == document[..., None, :]
    noisy_sees_own_block = q_noisy & k_noisy & (k_block == q_block)
    noisy_sees_earlier_clean = q_noisy & ~k_noisy & (k_block < q_block)
    clean_sees_clean = ~q_noisy & ~k_noisy & (k_block <= q_block)
    return same_document & (noisy_sees_own_block | noisy_sees_earlier_clean | clean_sees_clean)


def combine(structure: Tensor | None, attention_mask: Tensor | None) -> Tensor | None:
    """[B, 1, Lq, Lk] from a structural [Lq, Lk] (or per-row [B, Lq, Lk]) mask and a [B, Lk] 0/1
    padding mask (keys only); None when neither restricts anything."""
    padded = attention_mask is not None and not bool(attention_mask.all())
    if structure is None and not padded:
        return None
    if structure is not None:
        structure = structure[:, None] if structure.dim() == 3 else structure[None, None]
    if not padded:
        return structure
    keys = attention_mask.bool()[:, None, None, :]
    return keys if structure is None else keys & structure


def forward_mask(
    attention_mask: Tensor | None,
    query_start: int,
    query_length: int,
    key_length: int,
    block_size: int | None,
    device: torch.device,
) -> Tensor | None:
    """The mask of an inference forward over queries at absolute positions `query_start` on: a
    caller's [B|1, 1, Lq, Lk] mask as given, else the model's structure (full, or block-causal over
    absolute positions) with key padding. Block-causal structure that every query's block
    satisfies for every key (one block attending to its cache) restricts nothing: no mask then."""
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask.bool()
    structure = None
    if block_size is not None and (key_length - 1) // block_size > query_start // block_size:
        queries = torch.arange(query_start, query_start + query_length, device=device)
        structure = block_causal_mask(queries, torch.arange(key_length, device=device), block_size)
    return combine(structure, attention_mask)
