"""`block_mask` (SPG, Wang et al. 2025, arXiv 2510.09541; facebookresearch/SPG `block_random`):
`num_masks` Monte Carlo views of each completion, each shaped like a state of semi-autoregressive
block decoding. A view picks one of the row's blocks (those holding a scored token; distinct blocks
while the row has enough), masks m ~ U{max(floor(n t_min), 1) .. min(floor(n t_max), n)} of that
block's n scored tokens at random, masks every later position (and every position after the first
EOS), and masks the real prompt tokens and the earlier blocks' tokens each with probability
`p_mask_prompt`. Each view is one forward.

Bounds of log pi(completion), per row, from the views' masked scored tokens (t_k: view k's share
of the row's scored tokens that it masks):
- lower (ELBO): the mean over views of the mean log-prob of the view's masked scored tokens;
- upper (EUBO, with `eubo_beta` b): the mean over the tokens some view masks of
  (1/b) log((1/K) sum_k [masked in k] p_k^b / t_k).
Both are returned as per-token values whose mean over the row's scored tokens is the bound, so a
token-normalised loss weighs each sequence's bound by its length, as SPG's loss does.

`upper_bound: true` gives both in one part (the EUBO needs every view at once);
`upper_bound: false` gives the ELBO one view per part, `extras["share"]` = 1/K, so each view's
forward is back-propagated on its own (BGPO's memory use).

Blocks: a block diffusion model's own blocks (the rollout's, counted as it decoded them), else
`block_length` tokens from the completion's start. On block models the training forward shows
each noisy block the clean blocks before it, so a token's estimate depends only on its own
block's state in the view (later blocks read as fully masked blocks, the earlier ones' masked
tokens as lightly masked blocks).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from dllm.algorithms.estimators.base import ESTIMATORS, Estimator, Plan, masked_completion_log_probs
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError


@ESTIMATORS.register("block_mask")
class BlockMaskEstimator(Estimator):
    def __init__(
        self,
        num_masks: int = 2,
        t_min: float = 0.0,
        t_max: float = 1.0,
        block_length: int = 32,
        p_mask_prompt: float = 0.15,
        eubo_beta: float = 1.5,
        upper_bound: bool = True,
    ) -> None:
        if num_masks < 1 or block_length < 1 or not 0 <= t_min <= t_max <= 1:
            raise ConfigError(
                f"block_mask: need num_masks >= 1 ({num_masks}), block_length >= 1 ({block_length}) and "
                f"0 <= t_min ({t_min}) <= t_max ({t_max}) <= 1"
            )
        if not 0 <= p_mask_prompt < 1 or eubo_beta <= 0:
            raise ConfigError(
                f"block_mask: need 0 <= p_mask_prompt ({p_mask_prompt}) < 1 and eubo_beta ({eubo_beta}) > 0"
            )
        self.num_masks, self.t_min, self.t_max = num_masks, t_min, t_max
        self.block_length, self.p_mask_prompt = block_length, p_mask_prompt
        self.eubo_beta, self.upper_bound = eubo_beta, upper_bound

    def blocks(self, rollout: Rollout) -> Tensor:
        """[N, G] block of each completion position."""
        if rollout.block_size is not None:
            return rollout.completion_blocks()
        positions = torch.arange(rollout.step_map.shape[1], device=rollout.sequences.device)
        return (positions // self.block_length).expand(rollout.step_map.shape[0], -1)

    def plan(self, rollout: Rollout, generator: torch.Generator) -> Plan:
        scored, blocks = rollout.scored, self.blocks(rollout)
        rows, length = scored.shape
        views, span = self.num_masks, int(blocks.max()) + 1 if length else 1

        def draw(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device=generator.device).to(scored.device)

        ids = torch.arange(span, device=scored.device)
        has_scored = (blocks[:, :, None] == ids) & scored[:, :, None]  # [N, G, span]
        count = has_scored.any(1).sum(1).clamp(min=1)  # blocks holding a scored token (they come first)
        order = (draw(rows, span) + (ids >= count[:, None])).argsort(1)  # a random order of those blocks
        chosen = order.gather(1, torch.arange(views, device=scored.device)[None] % count[:, None])  # [N, K]
        here = blocks[:, None, :] == chosen[:, :, None]  # [N, K, G]
        in_block = here & scored[:, None, :]
        size = in_block.sum(2).float()
        low = (size * self.t_min).floor().clamp(min=1)
        high = torch.minimum((size * self.t_max).floor(), size).clamp(min=low)
        masked_count = low + (draw(rows, views) * (high - low + 1)).floor().clamp(max=high - low)
        # the first `masked_count` of the block's scored tokens in a random order
        keys = torch.where(in_block, draw(rows, views, length), 2.0)
        rank = keys.argsort(2).argsort(2)
        later = blocks[:, None, :] > chosen[:, :, None]
        earlier = ~later & ~here
        light = earlier & (draw(rows, views, length) < self.p_mask_prompt)
        masked = (in_block & (rank < masked_count[:, :, None])) | later | light | ~scored[:, None, :]
        prompt = rollout.attention_mask[:, None, : rollout.prompt_length].bool().expand(-1, views, -1)
        prompt_masked = prompt & (draw(*prompt.shape) < self.p_mask_prompt)
        return {"masked": masked, "prompt_masked": prompt_masked}

    def views(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> Iterator[tuple[Tensor, Tensor]]:
        """Per view: (log-prob [N, G] of each completion token in the view's state, the view's masked scored tokens)."""
        prompt = rollout.sequences[:, : rollout.prompt_length]
        for view in range(self.num_masks):
            masked = plan["masked"][:, view]
            noisy = rollout.completions_as_read().masked_fill(masked, rollout.mask_id)
            noisy_prompt = prompt.masked_fill(plan["prompt_masked"][:, view], rollout.mask_id)
            scored = masked & rollout.scored
            yield masked_completion_log_probs(model, rollout, noisy, noisy_prompt, scored), scored

    def lower_term(self, log_probs: Tensor, masked: Tensor, scored: Tensor) -> Tensor:
        """[N, G] one view's share of the ELBO as per-token values: their mean over the scored
        tokens is (1/K) x the mean log-prob of the view's masked scored tokens."""
        length = scored.sum(1, keepdim=True)
        return torch.where(masked, log_probs, 0.0) * length / masked.sum(1, keepdim=True).clamp(min=1) / self.num_masks

    def bounds(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        """(lower, upper) [N, G] per-token values whose means over each row's scored tokens are its ELBO and EUBO."""
        scored, beta = rollout.scored, self.eubo_beta
        length = scored.sum(1, keepdim=True)
        lower = torch.zeros(scored.shape, device=rollout.sequences.device)
        terms = []  # per view: log(p^b / t), -inf where the view does not mask the token
        for log_probs, masked in self.views(model, rollout, plan):
            lower = lower + self.lower_term(log_probs, masked, scored)
            ratio = masked.sum(1, keepdim=True) / length.clamp(min=1)
            terms.append(torch.where(masked, beta * log_probs - ratio.clamp(min=1e-8).log(), -math.inf))
        stacked = torch.stack(terms)
        any_view = stacked.isfinite().any(0)
        per_token = (torch.logsumexp(stacked, 0) - math.log(self.num_masks)) / beta
        upper = torch.where(any_view, per_token, 0.0) * length / any_view.sum(1, keepdim=True).clamp(min=1)
        return lower, upper

    def log_probs(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> tuple[Tensor, Tensor]:
        lower = sum(self.lower_term(lp, masked, rollout.scored) for lp, masked in self.views(model, rollout, plan))
        return lower, rollout.scored

    def chunks(self, model: torch.nn.Module, rollout: Rollout, plan: Plan) -> Iterator[tuple[Tensor, ...]]:
        if self.upper_bound:
            lower, upper = self.bounds(model, rollout, plan)
            yield lower, rollout.scored, {"upper": upper}
            return
        share = torch.tensor(1.0 / self.num_masks, device=rollout.sequences.device)
        for log_probs, masked in self.views(model, rollout, plan):
            yield self.lower_term(log_probs, masked, rollout.scored), rollout.scored, {"share": share}
