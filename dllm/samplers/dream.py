"""`dream`: Dream's `diffusion_generate` (`_sample` in Dream's generation_utils), batched, with
its argument names, for full-attention models (shifted logits handled by the model contract).

The completion starts fully masked; timesteps t = linspace(1, eps, steps + 1). At step i
(t -> s):
- `origin`: each masked token is revealed with probability 1 - s/t (all at the last step),
  its token sampled from the model;
- `maskgit_plus` / `topk_margin` / `entropy`: int(masked * (1 - s/t)) tokens are revealed (all
  at the last step), those with the highest confidence: the sampled token's probability, the
  top-2 margin, or the negative entropy; with `alg_temp` the positions are sampled from
  softmax(confidence / alg_temp) instead.
Left-padded batches get position ids counting real tokens only and a mask in which padding
neither sees nor is seen, as in the reference.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.models.base import logit_shift, run_model
from dllm.samplers.base import SAMPLERS, Decoding, Sampler
from dllm.samplers.tokens import row_chunks

Algorithm = Literal["origin", "maskgit_plus", "topk_margin", "entropy"]


def filter_logits(logits: Tensor, top_p: float | None, top_k: int | None) -> Tensor:
    """Dream's nucleus (the top token always kept) and top-k filtering, to the dtype's minimum."""
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        remove = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1) > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(-1, order, remove), torch.finfo(logits.dtype).min)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]))[0][..., -1, None]
        logits = logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)
    return logits


def sample_with_confidence(
    logits: Tensor, temperature: float, top_p: float | None, top_k: int | None, kind: str, generator
) -> tuple[Tensor, Tensor]:
    """(confidence, token) per row of [N, V] logits, as Dream's `sample_tokens`, a few rows at a
    time (`row_chunks`: the rows draw in order, so the tokens are those of one batched draw)."""
    parts = [
        _sample_rows(logits[rows], temperature, top_p, top_k, kind, generator)
        for rows in row_chunks(
            logits.shape[0], logits.shape[-1], logits.element_size(), temperature > 0 and logits.device.type != "cpu"
        )
    ]
    if not parts:
        return logits.new_zeros(0), torch.zeros(0, dtype=torch.long, device=logits.device)
    return torch.cat([confidence for confidence, _ in parts]), torch.cat([tokens for _, tokens in parts])


def _sample_rows(
    logits: Tensor, temperature: float, top_p: float | None, top_k: int | None, kind: str, generator
) -> tuple[Tensor, Tensor]:
    if temperature > 0:
        logits = logits / temperature
    probs = torch.softmax(filter_logits(logits, top_p, top_k), dim=-1)
    if temperature > 0:
        normalised = probs / probs.sum(-1, keepdim=True)  # as torch.distributions.Categorical
        tokens = torch.multinomial(normalised, 1, replacement=True, generator=generator).squeeze(-1)
        confidence = probs.gather(-1, tokens[:, None]).squeeze(-1)
    else:
        confidence, tokens = probs.max(dim=-1)
    if kind == "topk_margin":
        top2 = probs.topk(2, dim=-1).values  # the values a full sort puts first, without sorting the vocabulary
        confidence = top2[:, 0] - top2[:, 1]
    elif kind == "entropy":
        confidence = (probs * torch.log(probs + 1e-10)).sum(-1)
    return confidence, tokens


def dream_attention(prompt_mask: Tensor, gen_length: int) -> tuple[Tensor | None, Tensor | None]:
    """(4-D mask, position ids) for a left-padded batch, or (None, None) when nothing is padded."""
    if bool(prompt_mask.all()):
        return None, None
    mask = torch.cat([prompt_mask, prompt_mask.new_ones(prompt_mask.shape[0], gen_length)], dim=1).bool()
    positions = mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(~mask, 1)
    return mask[:, None, None, :] & mask[:, None, :, None], positions


@SAMPLERS.register("dream")
class DreamSampler(Sampler):
    def __init__(
        self,
        steps: int | None = None,
        alg: Algorithm = "entropy",
        alg_temp: float | None = None,
        temperature: float = 0.0,
        top_p: float | None = None,
        top_k: int | None = None,
        eps: float = 1e-3,
        stop_at_eos: bool = True,
    ) -> None:
        """As in Dream's generation config: `top_p` / `top_k` / `alg_temp` None (or 0): off."""
        if alg not in ("origin", "maskgit_plus", "topk_margin", "entropy"):
            raise ConfigError(f"dream: alg must be origin, maskgit_plus, topk_margin or entropy, got {alg!r}")
        if temperature is None or eps is None:
            raise ConfigError(f"dream: temperature ({temperature}) and eps ({eps}) must be numbers (0 is greedy)")
        if not 0 < eps < 1 or temperature < 0 or (steps is not None and steps < 1):
            raise ConfigError(
                f"dream: need 0 < eps < 1 ({eps}), temperature >= 0 ({temperature}), steps >= 1 ({steps})"
            )
        if top_p is not None and not 0 < top_p <= 1:
            raise ConfigError(f"dream: top_p must be in (0, 1], got {top_p}")
        if (top_k is not None and top_k < 0) or (alg_temp is not None and alg_temp < 0):
            raise ConfigError(f"dream: top_k ({top_k}) and alg_temp ({alg_temp}) must be >= 0 (or null: off)")
        self.steps = steps
        self.alg = alg
        self.alg_temp = alg_temp
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k or None  # 0: no limit (the reference's top-k of 0 would fail mid-decode)
        self.eps = eps
        self.stop_at_eos = stop_at_eos

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        super().check_gen_length(gen_length)
        if model_block_size is not None:
            raise ConfigError("the dream decoder is for full-attention models; use sampler=sdar for block models")

    def decode(
        self, model: torch.nn.Module, state: Decoding, gen_length: int, generator: torch.Generator | None
    ) -> None:
        x, mask_id, prompt_length = state.x, state.mask_id, state.prompt_length
        steps = self.steps or gen_length
        attention, positions = dream_attention(state.key_mask[:, :prompt_length], gen_length)
        timesteps = torch.linspace(1, self.eps, steps + 1, device=x.device)
        # The LM head runs on the completion's positions only (position i - 1 predicts token i for
        # a shifted model): over a real vocabulary the prompt's logits would be most of the work.
        shift = logit_shift(model)
        read = slice(prompt_length - shift, x.shape[1] - shift)
        for i in range(steps):
            masked = x == mask_id
            masked[:, :prompt_length] = False  # a prompt's own mask tokens are context, never revealed
            logits = run_model(model, read, x, attention_mask=attention, position_ids=positions)
            logits[..., mask_id] = torch.finfo(logits.dtype).min  # never "reveal" a mask
            state.count_forward()
            ratio = timesteps[i + 1] / timesteps[i]
            proposal = x.clone()
            mask_logits = logits[masked[:, prompt_length:]]  # row-major, as over the whole sequence
            if self.alg == "origin":
                self._origin_step(proposal, masked, mask_logits, ratio, i == steps - 1, generator)
            else:
                self._confidence_step(proposal, masked, mask_logits, ratio, i == steps - 1, generator)
            revealed = masked & (proposal != mask_id)
            state.reveal(prompt_length, x.shape[1], proposal[:, prompt_length:], revealed[:, prompt_length:])
            if state.all_stopped():
                break

    def _origin_step(
        self, x: Tensor, masked: Tensor, mask_logits: Tensor, ratio: Tensor, last: bool, generator
    ) -> None:
        current = x[masked]
        p_transfer = 1.0 if last else 1 - ratio
        transfer = torch.rand(current.shape, device=x.device, generator=generator) < p_transfer
        _, tokens = sample_with_confidence(
            mask_logits[transfer], self.temperature, self.top_p, self.top_k, "origin", generator
        )
        current[transfer] = tokens
        x[masked] = current

    def _confidence_step(
        self, x: Tensor, masked: Tensor, mask_logits: Tensor, ratio: Tensor, last: bool, generator
    ) -> None:
        confidence, tokens = sample_with_confidence(
            mask_logits, self.temperature, self.top_p, self.top_k, self.alg, generator
        )
        per_row = masked.sum() / masked.shape[0]
        count = int(per_row) if last else int(per_row * (1 - ratio))
        if count <= 0:
            return
        full_confidence = torch.full(x.shape, -torch.inf, dtype=mask_logits.dtype, device=x.device)
        full_confidence[masked] = confidence
        if not self.alg_temp:
            chosen = torch.topk(full_confidence, count).indices
        else:
            weights = torch.softmax(full_confidence / self.alg_temp, dim=-1)
            chosen = torch.multinomial(weights, num_samples=count, generator=generator)
        proposal = torch.full_like(x, -1)
        proposal[masked] = tokens
        picked = proposal.gather(1, chosen)
        x.scatter_(1, chosen, torch.where(picked >= 0, picked, x.gather(1, chosen)))
