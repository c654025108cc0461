"""Token sampling every decoder shares: which token a masked position would take.

Two families, as the references draw them (the draw order matters for seeded equality):
- `gumbel_max_sample` (LLaDA, Fast-dLLM): argmax of exp(logits) / (-log u)^T in float64;
- `categorical_sample` (SDAR, the generic engine): softmax(logits / T) after top-k / top-p
  filtering, then one multinomial draw per position.
Both are greedy at temperature 0 and never choose the mask token: a decoder that "reveals" a
mask would leave the position masked. Trained models never predict it, so this changes
nothing there. Callers sample a few rows at a time (`row_chunks`) at large vocabularies.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.models.chosen import CHUNK_BYTES


def row_chunks(rows: int, row_elements: int, itemsize: int, one_draw: bool = False) -> list[slice]:
    """Consecutive slices of `rows` rows, each holding at most `CHUNK_BYTES` of a row-wise
    vocabulary-wide tensor (`row_elements` of `itemsize` bytes a row; at least one row), so
    that sampling holds one chunk's softmax, noise and scores at a time. Every sampling step is
    row-wise and the CPU draws each row in turn, so chunked and whole results are equal.
    Callers budget by the float32 logits: a chunk's temporaries then stay above glibc's largest
    mmap threshold (32 MiB), so each goes back to the system when freed instead of growing the
    heap (measured: 32 MiB chunks held 765 MB resident where 64 MiB ones held 518 MB).
    `one_draw`: the rows share one random draw off the CPU (a CUDA generator's multinomial over
    all of them), which pieces would not reproduce: one chunk then."""
    if one_draw:
        return [slice(0, rows)]
    per_chunk = max(1, CHUNK_BYTES // max(1, row_elements * itemsize))
    return [slice(start, min(start + per_chunk, rows)) for start in range(0, rows, per_chunk)]


def gumbel_max_sample(
    logits: Tensor,
    temperature: float,
    generator: torch.Generator | None,
    forbidden_token: int | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """[...] argmax of exp(logits) / (-log u)^temperature in float64; greedy at temperature 0.

    `noise`: the uniform draws u (float64, `logits`' shape), when the caller cuts them from a
    draw over a larger tensor as a reference does; else they are drawn here.
    """
    if temperature == 0:
        scores = logits
    else:
        if noise is None:
            noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
        scores = logits.to(torch.float64).exp() / (-torch.log(noise)) ** temperature
    if forbidden_token is not None:
        scores = scores.clone()
        scores[..., forbidden_token] = -torch.inf
    return scores.argmax(-1)


def filter_top_k_top_p(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """Logits with everything outside the `top_k` best (0 = no limit) and outside the smallest
    set of mass >= `top_p` (the token crossing `top_p` kept) set to -inf."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs > top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), -torch.inf)
    return logits


def categorical_sample(
    logits: Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | list[torch.Generator | None] | None,
    mask_id: int,
) -> tuple[Tensor, Tensor]:
    """(tokens [...], probabilities [..., V] they were drawn from) for [..., V] logits: greedy
    at temperature 0, else softmax(logits / T) after top-k / top-p, one multinomial draw each. With
    `generator` a list, row b of [B, ...] logits draws from `generator[b]`: one uniform per
    position, inverted through the cumulative probabilities (one small draw per row, then one
    batched search; a multinomial call per row cost a quarter of a rollout's decoding)."""
    logits = logits.float().clone()
    logits[..., mask_id] = -torch.inf
    if temperature > 0:
        logits = logits / temperature
    probs = filter_top_k_top_p(logits, top_k, top_p).softmax(-1)
    if temperature > 0 and isinstance(generator, list):
        shape = probs.shape[1:-1]
        uniform = torch.stack([torch.rand(shape, generator=g, device=probs.device) for g in generator])
        cumulative = probs.cumsum(-1)
        # scaled by the total mass, so that rounding never runs past the last token with probability
        target = uniform[..., None] * cumulative[..., -1:]
        tokens = (cumulative <= target).sum(-1).clamp(max=probs.shape[-1] - 1)
    elif temperature > 0:
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        tokens = flat.view(probs.shape[:-1])
    else:
        tokens = probs.argmax(-1)
    return tokens, probs
