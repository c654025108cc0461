"""`sft`: supervised fine-tuning with the masked diffusion loss on response tokens.

For each sequence t ~ U(0, 1) and p = (1 - eps) t + eps; each response token (the EOS
padding included, as in LLaDA) is masked with probability p; the loss is the cross-entropy
of the masked tokens weighted 1/p, summed per sequence, divided by its response length,
and averaged over the batch. Prompt tokens are never masked and never scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext
from dllm.data.base import Example
from dllm.errors import ConfigError
from dllm.models.base import denoiser_logits


@dataclass
class SFTBatch:
    """`input_ids` [B, L] = left-padded prompt + response + EOS fill; `attention_mask` [B, L]
    (0 on padding); `response_mask` [B, L] (1 on the response and its EOS fill)."""

    input_ids: Tensor
    attention_mask: Tensor
    response_mask: Tensor

    def to(self, device: torch.device) -> SFTBatch:
        return SFTBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.response_mask)))


def collate_sft(tokenizer, examples: list[Example], gen_length: int) -> SFTBatch:
    """Tokenise examples into an `SFTBatch` whose responses span exactly `gen_length` tokens."""
    prompts = tokenizer([e.prompt for e in examples], padding=True, return_tensors="pt")
    responses = []
    for example in examples:
        ids = tokenizer(example.response, add_special_tokens=False)["input_ids"]
        if len(ids) >= gen_length:
            raise ConfigError(
                f"response {example.response!r} has {len(ids)} tokens; gen_length ({gen_length}) "
                f"must exceed the longest response so that it ends with EOS — raise task.gen_length"
            )
        responses.append(ids + [tokenizer.eos_token_id] * (gen_length - len(ids)))
    response_ids = torch.tensor(responses, dtype=torch.long)
    batch = len(examples)
    return SFTBatch(
        input_ids=torch.cat([prompts["input_ids"], response_ids], dim=1),
        attention_mask=torch.cat([prompts["attention_mask"], torch.ones(batch, gen_length, dtype=torch.long)], 1),
        response_mask=torch.cat(
            [torch.zeros_like(prompts["input_ids"]), torch.ones(batch, gen_length, dtype=torch.long)], 1
        ),
    )


def masked_diffusion_loss(
    logits: Tensor, targets: Tensor, masked: Tensor, p_mask: Tensor, response_mask: Tensor
) -> Tensor:
    """LLaDA's SFT loss: sum over masked tokens of CE / p_mask / response length, mean over batch.

    logits [B, L, V]; targets, masked, response_mask [B, L]; p_mask [B].
    """
    token_ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    weights = masked.float() / p_mask[:, None] / response_mask.sum(1, keepdim=True).clamp(min=1)
    return (token_ce * weights).sum() / targets.shape[0]


@ALGORITHMS.register("sft")
class SFT(Algorithm):
    def __init__(self, eps: float = 1e-3) -> None:
        if not 0 <= eps < 1:
            raise ConfigError(f"sft.eps must be in [0, 1), got {eps}")
        self.eps = eps

    def micro_batches(self, ctx: TrainContext, num_micro_batches: int) -> Iterator[SFTBatch]:
        for _ in range(num_micro_batches):
            examples = ctx.task.sample(ctx.rng, ctx.micro_batch_size)
            yield collate_sft(ctx.tokenizer, examples, ctx.task.gen_length).to(ctx.device)

    def noise(self, batch: SFTBatch, mask_token_id: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(noisy input_ids, masked [B, L] bool, p_mask [B]) for one forward process draw."""
        size, device = batch.input_ids.shape, batch.input_ids.device
        t = torch.rand(size[0], generator=generator, device=device)
        p_mask = (1 - self.eps) * t + self.eps
        draws = torch.rand(size, generator=generator, device=device)
        masked = (draws < p_mask[:, None]) & batch.response_mask.bool()
        return batch.input_ids.masked_fill(masked, mask_token_id), masked, p_mask

    def loss(self, model: torch.nn.Module, batch: SFTBatch, generator: torch.Generator) -> LossOutput:
        noisy, masked, p_mask = self.noise(batch, model.mask_token_id, generator)
        logits = denoiser_logits(model, noisy, batch.attention_mask)
        loss = masked_diffusion_loss(logits, batch.input_ids, masked, p_mask, batch.response_mask)
        return LossOutput(loss, {"masked_fraction": float(masked.sum() / batch.response_mask.sum())})
