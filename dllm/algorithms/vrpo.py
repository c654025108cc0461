"""`vrpo`: Variance-Reduced Preference Optimization (LLaDA 1.5, Zhu et al., arXiv 2505.19223),
offline preference optimisation of a masked diffusion model on (prompt, chosen, rejected) pairs.

DPO's loss with each log-likelihood replaced by an estimate of its ELBO B:
    loss = -log sigmoid(beta * ((B_theta(y_w) - B_ref(y_w)) - (B_theta(y_l) - B_ref(y_l)))),
averaged over pairs; `ref` is the policy frozen at the start of the stage. Each B is the masked
diffusion bound SFT trains (`SFT.noise`: a timestep, a masked copy of the response, the masked
tokens' log-probs weighted by the inverse mask rate, summed over the response and its EOS fill),
through the model's own training layout (`denoising_log_probs`: full attention, or the block
diffusion forward over [x_t ; x_0] for block models). VRPO reduces the variance of the score
inside the sigmoid, which bounds the bias and variance of the loss and its gradient:
- budget: each B averages `budget` one-sample estimates;
- optimal allocation: those are `budget` timesteps with one mask each (n_t = budget, n_yt = 1);
- antithetic sampling: B_theta(y) and B_ref(y) read the very same timesteps and masks, so their
  difference carries no noise of its own; with policy == reference the score is exactly 0.
The `dpo` preset is the estimator VRPO improves on: budget 1 and independent draws for the policy
and the reference (four independent one-sample ELBOs per pair); budget 1 with antithetic sampling
costs the same and is VRPO's free variant.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext
from dllm.algorithms.denoise import denoising_log_probs
from dllm.algorithms.sft import SFT, SFTBatch, collate_sft
from dllm.checkpoint import load_model_weights
from dllm.data.base import Example
from dllm.data.preference import PreferencePair, PreferenceTask
from dllm.errors import ConfigError
from dllm.run_files import REFERENCE_DIR

Noise = tuple[Tensor, Tensor, Tensor]  # (noisy input_ids, masked, p_mask), as `SFT.noise` draws them


@dataclass
class PairBatch:
    """`rows`: each pair's chosen response `budget` times, then its rejected one `budget` times
    (2 x budget rows per pair, in pair order); `share` of the optimizer step."""

    rows: SFTBatch
    share: float = 1.0


def collate_pairs(tokenizer: Any, pairs: list[PreferencePair], budget: int, gen_length: int) -> SFTBatch:
    """The rows of `PairBatch`: each pair's chosen response `budget` times, then its rejected one."""
    examples = [
        Example(pair.prompt, response)
        for pair in pairs
        for response in [pair.chosen] * budget + [pair.rejected] * budget
    ]
    return collate_sft(tokenizer, examples, gen_length)


def preference_loss(policy: Tensor, reference: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """(mean DPO loss, scores [P]) from the ELBO estimates [P, 2] (chosen, rejected) of the policy
    and the reference; score = beta * ((policy - reference)[chosen] - (policy - reference)[rejected])."""
    rewards = beta * (policy - reference)
    scores = rewards[:, 0] - rewards[:, 1]
    return -F.logsigmoid(scores).mean(), scores


@ALGORITHMS.register("vrpo")
class VRPO(Algorithm):
    """`beta`: DPO's inverse temperature; `budget`: one-sample ELBO estimates per response (each its
    own timestep); `antithetic`: the reference reads the policy's timesteps and masks. `masking`,
    `eps`, `block_diffusion`, `block_size`: the ELBO's masking and layout, as in `sft`. A micro-batch
    of `trainer` size k holds k pairs, 2 x budget rows in one forward of the policy and one of the
    reference."""

    def __init__(
        self,
        beta: float = 0.2,
        budget: int = 8,
        antithetic: bool = True,
        masking: str = "count",
        eps: float = 1e-3,
        block_diffusion: bool | None = None,
        block_size: int | None = None,
    ) -> None:
        if beta <= 0:
            raise ConfigError(f"algorithm.beta must be positive, got {beta}")
        if budget < 1:
            raise ConfigError(f"algorithm.budget (one-sample ELBO estimates per response) must be >= 1, got {budget}")
        self.beta, self.budget, self.antithetic = beta, budget, antithetic
        self.elbo = SFT(eps=eps, block_diffusion=block_diffusion, block_size=block_size, masking=masking)
        self.reference: torch.nn.Module | None = None

    def check_run(self, task: Any, sampler: Any, model_block_size: int | None) -> None:
        if not isinstance(task, PreferenceTask):
            raise ConfigError(
                f"algorithm vrpo trains on preference pairs, which task {type(task).__name__} has none of: use "
                "task=preference (JSON Lines of prompt, chosen, rejected; see docs/preference.md)"
            )

    def start(self, ctx: TrainContext) -> None:
        self.check_run(ctx.task, ctx.sampler, ctx.model.block_size)
        self.elbo.training_block_size(ctx.model)  # refuse block ELBOs of a model without blocks now
        self.reference = copy.deepcopy(ctx.model).eval().requires_grad_(False)

    def save_models(self, directory: Path) -> None:
        if self.reference is not None:
            self.reference.save_pretrained(directory / REFERENCE_DIR)

    def load_models(self, directory: Path) -> None:
        if self.reference is not None:
            load_model_weights(self.reference, directory / REFERENCE_DIR)

    def parts(self) -> str:
        allocation = f"{self.budget} timesteps x 1 mask"
        return f"budget {self.budget} ({allocation}), antithetic {'on' if self.antithetic else 'off'}, beta {self.beta}"

    def micro_batches(self, ctx: TrainContext, num_micro_batches: int) -> Iterator[PairBatch]:
        world, per_pair = ctx.world_size, 2 * self.budget
        for _ in range(num_micro_batches):
            # Every process draws and collates the global micro-batch and keeps its pairs' rows.
            pairs = ctx.task.sample_pairs(ctx.rng, ctx.micro_batch_size * world)
            rows = collate_pairs(ctx.tokenizer, pairs, self.budget, ctx.task.gen_length).to(ctx.device)
            if world > 1:
                mine = ctx.micro_batch_size * per_pair
                rows = rows.rows(ctx.rank * mine, (ctx.rank + 1) * mine)
            yield PairBatch(rows, 1 / (num_micro_batches * world))

    def loss(self, model: torch.nn.Module, batch: PairBatch, generator: torch.Generator) -> LossOutput:
        noise = self.elbo.noise(batch.rows, model.mask_token_id, generator)
        ref_noise = noise if self.antithetic else self.elbo.noise(batch.rows, model.mask_token_id, generator)
        return self.loss_of(model, batch.rows, noise, ref_noise)

    def loss_of(self, model: torch.nn.Module, rows: SFTBatch, noise: Noise, ref_noise: Noise) -> LossOutput:
        """The loss of given masked states: `noise` for the policy's ELBOs, `ref_noise` for the reference's."""
        assert self.reference is not None, "start() freezes the reference"
        policy = self.elbo_estimates(model, rows, noise)
        with torch.no_grad():
            reference = self.elbo_estimates(self.reference, rows, ref_noise)
        loss, scores = preference_loss(policy, reference, self.beta)
        rewards = (self.beta * (policy - reference)).detach()
        return LossOutput(
            loss,
            {
                "preference_accuracy": (scores > 0).float().mean().detach(),  # ties (score 0) count as wrong
                "reward_margin": scores.mean().detach(),
                "chosen_reward": rewards[:, 0].mean(),
                "rejected_reward": rewards[:, 1].mean(),
            },
        )

    def elbo_estimates(self, model: torch.nn.Module, rows: SFTBatch, noise: Noise) -> Tensor:
        """[P, 2] each pair's (chosen, rejected) ELBO estimate: the mean of its `budget` rows'
        one-sample estimates, sum over masked response tokens of log p / p_mask."""
        noisy, masked, p_mask = noise
        start = rows.prompt_length
        block_size = self.elbo.training_block_size(model)
        log_probs = denoising_log_probs(
            model, noisy, rows.input_ids, rows.attention_mask, block_size, start, masked[:, start:]
        )
        per_row = (log_probs * masked[:, start:] / p_mask[:, None]).sum(1)
        return per_row.view(-1, 2, self.budget).mean(2)
