"""Log-likelihoods of a continuation given a prefix, as lm-eval's `loglikelihood` asks for them.

A masked diffusion model has no exact likelihood; what it gives is the evidence lower bound.
`log_likelihoods` returns LLaDA's Monte Carlo estimate of it (ML-GSAI/LLaDA `eval_llada.py`,
`get_loglikelihood`): for seq = prefix + continuation (L tokens), each row masks a uniformly
random subset of l of the L continuation tokens and scores (L / l) * sum over the masked tokens
of log p(token | noisy seq); the estimate is the mean over `mc_num` rows, drawn in groups of
`mc_batch_size` (one forward each). Within a group the counts are stratified: k ~ U{1..L}, row i
masks l_i = (k - 1 + r_i) % L + 1 with r_i = i * L / b rounded.

One difference from LLaDA: LLaDA rounds k + i * L / b with `torch.round` (half to even), so when
i * L / b has a fraction of .5 the result depends on k's parity and l_i is not uniform on 1..L
(L = 3, b = 2: l_1 is 1 twice as often as 2, never 3; at LLaDA's b = 32 and L = 16 the odd rows
mask even counts only), which biases the estimate. Here r_i rounds half up, independently of k:
a uniform k shifted by a fixed r_i mod L is uniform, so every row is an exactly unbiased
estimate of the bound. Where no i * L / b is a half (at b = 32: L a multiple of 32), the counts
are LLaDA's for the same k.

Block diffusion models (SDAR) get the block-wise estimate: blocks are aligned to absolute
positions from the sequence's first token (as dllm's block decoder and training forward), so
the prefix's tail may share a block with the first continuation tokens. Each block holding
n > 0 continuation tokens is estimated as above over its own n tokens (its own stratified
count), given the clean earlier blocks; a row scores the sum over blocks of (n / l) * its
masked log-probs. One forward of the `[x_t ; x_0]` training layout serves every block.

`greedy_matches` is LLaDA's `suffix_greedy_prediction`: whether greedy decoding of the masked
continuation, one most confident token per step, reproduces it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from dllm.algorithms.denoise import denoising_log_probs, token_log_probs
from dllm.errors import ConfigError, DllmError
from dllm.models.base import logits_from

Request = tuple[Sequence[int], Sequence[int]]


def check_likelihood_support(model: torch.nn.Module, cfg: float = 0.0) -> None:
    """Raise `DllmError` when no estimator here reads `model`: it has no mask token, it is a
    value model (no logits), or it is a block diffusion model with shifted logits; or when
    guidance (`cfg` > 0, LLaDA's) is asked of a block diffusion model, or `cfg` is negative."""
    name = type(model).__name__
    if cfg < 0:
        raise ConfigError(f"cfg {cfg}: the guidance scale is 0 (none) or positive (LLaDA uses 0.5 to 2)")
    if cfg and getattr(model, "block_size", None) is not None:
        raise DllmError(
            f"cfg {cfg} on {name}, a block diffusion model: guided log-likelihoods are LLaDA's, for "
            "full-attention models; drop cfg"
        )
    if getattr(model, "mask_token_id", None) is None:
        raise DllmError(
            f"{name} has no mask_token_id: log-likelihoods are estimated by masking the continuation; "
            "load a masked diffusion model (llada, dream, sdar)"
        )
    if getattr(model, "is_value_model", False):
        raise DllmError(f"{name} is a value model (no logits): load the policy model to score log-likelihoods")
    if getattr(model, "block_size", None) is not None and getattr(model, "shift_logits", False):
        raise DllmError(
            f"{name} is a block diffusion model (block_size {model.block_size}) with shifted logits: no block-wise "
            "log-likelihood estimator reads it; evaluate it on generation tasks (generate_until) only"
        )


def stratified_counts(k: Tensor, length: int, rows: int) -> Tensor:
    """[rows] mask counts in 1..`length` from one draw `k` in 1..`length`: row i masks
    (k - 1 + r_i) % length + 1 tokens, r_i = i * length / rows rounded half up (in integers)."""
    i = torch.arange(rows, device=k.device)
    offsets = (2 * i * length + rows) // (2 * rows)
    return (k - 1 + offsets) % length + 1


def elbo_samples(
    model: torch.nn.Module,
    prefix: Sequence[int],
    continuation: Sequence[int],
    *,
    mc_num: int = 128,
    mc_batch_size: int = 32,
    seed: int = 1234,
    cfg: float = 0.0,
) -> Tensor:
    """[mc_num] float64 per-row estimates of the bound on log p(continuation | prefix), whose
    mean `log_likelihoods` returns; groups of `mc_batch_size` rows are independent draws."""
    check_likelihood_support(model, cfg)
    check_mc(mc_num, mc_batch_size)
    _require_continuation(continuation)
    prefix_ids, continuation_ids = _ids(prefix), _ids(continuation)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(request_seed(seed, prefix_ids, continuation_ids))
    clean = torch.cat([prefix_ids, continuation_ids]).to(device).expand(mc_batch_size, -1)
    attention_mask = torch.ones_like(clean)
    segments = _segments(len(prefix_ids), len(continuation_ids), model.block_size)
    rows = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(mc_num // mc_batch_size):
                masked, weights = _draw_masks(segments, mc_batch_size, generator)
                noisy = clean.clone()
                noisy[:, len(prefix_ids) :][masked] = model.mask_token_id
                if cfg:
                    logits = guided(model, noisy, len(prefix_ids), cfg)
                    log_probs = token_log_probs(logits, clean[:, len(prefix_ids) :])
                else:
                    log_probs = denoising_log_probs(
                        model, noisy, clean, attention_mask, model.block_size, len(prefix_ids), masked
                    )
                rows.append((weights * log_probs.double()).sum(1))
    finally:
        model.train(was_training)
    return torch.cat(rows).cpu()


def log_likelihoods(
    model: torch.nn.Module,
    requests: Sequence[Request],
    *,
    mc_num: int = 128,
    mc_batch_size: int = 32,
    seed: int = 1234,
    cfg: float = 0.0,
) -> list[float]:
    """The estimate of log p(continuation | prefix) per (prefix_ids, continuation_ids) request
    (see the module docstring): `mc_num // mc_batch_size` forwards of `mc_batch_size` rows each.
    A request's value depends only on its tokens and `seed`, not on the requests around it.
    `cfg` > 0: LLaDA's classifier-free guidance (full-attention models; see `guided`)."""
    check_likelihood_support(model, cfg)
    check_mc(mc_num, mc_batch_size)
    _require_continuations(requests)
    return [
        float(elbo_samples(model, p, c, mc_num=mc_num, mc_batch_size=mc_batch_size, seed=seed, cfg=cfg).mean())
        for p, c in requests
    ]


def guided(model: torch.nn.Module, noisy: Tensor, prefix_length: int, cfg: float) -> Tensor:
    """[B, L - prefix_length, V] LLaDA's guided logits (`eval_llada.py`, `get_logits`) predicting
    the tokens after the prefix: the model on `noisy` and on `noisy` with its first `prefix_length`
    tokens masked (the unconditional pass), in one forward of both, the head at the continuation
    only, combined as uncond + (cfg + 1) * (cond - uncond); float32 (shifted logits realigned)."""
    unconditional = noisy.clone()
    unconditional[:, :prefix_length] = model.mask_token_id
    logits = logits_from(model, torch.cat([noisy, unconditional]), prefix_length).float()
    conditional, unconditional = logits.chunk(2)
    return unconditional + (cfg + 1) * (conditional - unconditional)


def greedy_matches(model: torch.nn.Module, requests: Sequence[Request], cfg: float = 0.0) -> list[bool]:
    """Per request, whether greedy decoding reproduces the continuation (LLaDA's
    `suffix_greedy_prediction`): from prefix + masks, each step reveals the one masked
    continuation position whose argmax has the highest probability, until all are revealed.
    A block diffusion model decodes its blocks in order (candidates: the earliest block with
    masks), called on the canvas up to that block's end under its own block-causal mask. The canvas
    ends with the continuation, as the likelihood's sequence does: where it ends inside a block,
    a block decoder (SDAR's) would also decode that block's later positions, masks the model sees,
    so the two can differ on that block. Up to len(continuation) forwards per request (it stops at
    the first wrong token, which would stay). `cfg` > 0 guides each step as the estimate does."""
    check_likelihood_support(model, cfg)
    _require_continuations(requests)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [_greedy_match(model, _ids(p).to(device), _ids(c).to(device), cfg) for p, c in requests]
    finally:
        model.train(was_training)


def _greedy_match(model: torch.nn.Module, prefix: Tensor, continuation: Tensor, cfg: float) -> bool:
    start, block_size = len(prefix), model.block_size
    canvas = torch.cat([prefix, torch.full_like(continuation, model.mask_token_id)])
    hidden = torch.ones(len(continuation), dtype=torch.bool, device=canvas.device)  # still masked
    for _ in range(len(continuation)):
        end = len(canvas)
        if block_size is not None:
            # The canvas up to the end of the earliest block with masks: later blocks are invisible to
            # it under block-causal attention, and earlier ones are complete, so its masks are the candidates.
            end = min(end, ((start + int(hidden.int().argmax())) // block_size + 1) * block_size)
        window = canvas[None, :end]
        logits = guided(model, window, start, cfg) if cfg else logits_from(model, window, start)
        confidence, tokens = logits[0].float().softmax(-1).max(-1)
        confidence = confidence.masked_fill(~hidden[: end - start], -1.0)
        j = int(confidence.argmax())
        if tokens[j] != continuation[j]:
            return False
        canvas[start + j] = tokens[j]
        hidden[j] = False
    return True


def check_mc(mc_num: int, mc_batch_size: int) -> None:
    """Refuse Monte Carlo settings that do not split into whole groups (LLaDA asserts the same)."""
    if mc_batch_size < 1 or mc_num < 1 or mc_num % mc_batch_size:
        raise ConfigError(
            f"mc_num {mc_num} with mc_batch_size {mc_batch_size}: mc_num must be a positive multiple of "
            "mc_batch_size (LLaDA's defaults: mc_num=128, mc_batch_size=32)"
        )


def request_seed(seed: int, prefix: Tensor, continuation: Tensor) -> int:
    """The generator seed of one request: a fixed function of `seed` and its token ids."""
    key = f"{seed}:{prefix.tolist()}:{continuation.tolist()}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") & (2**63 - 1)


def _require_continuation(continuation: Sequence[int], where: str = "") -> None:
    if len(continuation) == 0:
        raise DllmError(f"empty continuation{where}: a log-likelihood request needs at least one continuation token")


def _require_continuations(requests: Sequence[Request]) -> None:
    """Every request checked before the first forward, so a bad one costs no work."""
    for i, (_, continuation) in enumerate(requests):
        _require_continuation(continuation, f" in request {i}")


def _ids(tokens: Sequence[int]) -> Tensor:
    return torch.as_tensor(list(map(int, tokens)), dtype=torch.long)


def _segments(prefix_length: int, length: int, block_size: int | None) -> list[tuple[int, int]]:
    """Continuation index ranges estimated each on its own: the whole continuation, or each
    block's share of it (blocks of absolute positions from the sequence's first token)."""
    if block_size is None:
        return [(0, length)]
    first = (prefix_length // block_size + 1) * block_size
    cuts = [0, *(p - prefix_length for p in range(first, prefix_length + length, block_size)), length]
    return list(zip(cuts[:-1], cuts[1:]))


def _draw_masks(segments: list[tuple[int, int]], rows: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`masked` [rows, L] bool and `weights` [rows, L] float64 (n / l on a masked token of a segment
    of n tokens of which the row masks l, else 0): per segment, stratified counts and, per row,
    a uniformly random subset of that size."""
    device = generator.device
    masked, weights = [], []
    for begin, end in segments:
        n = end - begin
        k = torch.randint(1, n + 1, (), generator=generator, device=device)
        counts = stratified_counts(k, n, rows)
        ranks = torch.rand(rows, n, generator=generator, device=device).argsort(1).argsort(1)
        segment = ranks < counts[:, None]
        masked.append(segment)
        weights.append(segment * (n / counts[:, None].double()))
    return torch.cat(masked, 1), torch.cat(weights, 1)
