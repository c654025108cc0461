"""`sft`: supervised fine-tuning with the masked diffusion loss on response tokens.

For each sequence t ~ U(0, 1) and p = (1 - eps) t + eps; each response token (the EOS
padding included, as in LLaDA) is masked with probability p; the loss is the cross-entropy
of the masked tokens weighted 1/p, summed per sequence, divided by its response length,
and averaged over the batch. Prompt tokens are never masked and never scored.

Block SFT (block diffusion models such as SDAR): one forward over `[x_t ; x_0]` under the
block-diffusion mask, both halves at positions 0..L-1, scoring the noisy half; prompts are
left-padded to whole blocks so that training blocks are the blocks the model decodes.
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
from dllm.models.masks import block_diffusion_mask, check_block_size, combine, left_pad_to_blocks


@dataclass
class SFTBatch:
    """`input_ids` [B, L] = left-padded prompt + response + EOS fill; `attention_mask` [B, L]
    (0 on padding); `response_mask` [B, L] (1 on the response and its EOS fill)."""

    input_ids: Tensor
    attention_mask: Tensor
    response_mask: Tensor

    def to(self, device: torch.device) -> SFTBatch:
        return SFTBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.response_mask)))


def collate_sft(tokenizer, examples: list[Example], gen_length: int, block_size: int | None = None) -> SFTBatch:
    """Tokenise examples into an `SFTBatch` whose responses span exactly `gen_length` tokens
    (and whose prompts span whole blocks of `block_size`, when given)."""
    prompts = tokenizer([e.prompt for e in examples], padding=True, return_tensors="pt")
    prompt_ids, prompt_mask, _ = left_pad_to_blocks(
        prompts["input_ids"], prompts["attention_mask"], block_size, tokenizer.pad_token_id
    )
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


def block_diffusion_logits(
    model: torch.nn.Module, noisy: Tensor, clean: Tensor, attention_mask: Tensor, block_size: int
) -> Tensor:
    """Logits of the noisy half of one `[x_t ; x_0]` forward under the block-diffusion mask."""
    length = noisy.shape[1]
    check_block_size(length, block_size, "training length (prompt padded to whole blocks + gen_length)")
    mask = combine(block_diffusion_mask(length, block_size, device=noisy.device), attention_mask.repeat(1, 2))
    positions = torch.arange(length, device=noisy.device).repeat(2)
    return denoiser_logits(model, torch.cat([noisy, clean], dim=1), mask, positions)[:, :length]


@ALGORITHMS.register("sft")
class SFT(Algorithm):
    """`block_diffusion`: None = when the model has blocks; `block_size`: None = the model's."""

    def __init__(self, eps: float = 1e-3, block_diffusion: bool | None = None, block_size: int | None = None) -> None:
        if not 0 <= eps < 1:
            raise ConfigError(f"sft.eps must be in [0, 1), got {eps}")
        if block_size is not None and block_size < 1:
            raise ConfigError(f"sft.block_size must be positive, got {block_size}")
        self.eps = eps
        self.block_diffusion = block_diffusion
        self.block_size = block_size

    def training_block_size(self, model: torch.nn.Module) -> int | None:
        """The block size of block SFT for `model`, or None for plain masked diffusion SFT."""
        block_size = self.block_size or model.block_size
        use_blocks = self.block_diffusion if self.block_diffusion is not None else model.block_size is not None
        if use_blocks and block_size is None:
            raise ConfigError(
                "sft.block_diffusion=true needs blocks: the model has none; set sft.block_size or use a "
                "block diffusion model (e.g. model=sdar_small)"
            )
        return block_size if use_blocks else None

    def micro_batches(self, ctx: TrainContext, num_micro_batches: int) -> Iterator[SFTBatch]:
        block_size = self.training_block_size(ctx.model)
        for _ in range(num_micro_batches):
            examples = ctx.task.sample(ctx.rng, ctx.micro_batch_size)
            yield collate_sft(ctx.tokenizer, examples, ctx.task.gen_length, block_size).to(ctx.device)

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
        block_size = self.training_block_size(model)
        if block_size is None:
            logits = denoiser_logits(model, noisy, batch.attention_mask)
        else:
            logits = block_diffusion_logits(model, noisy, batch.input_ids, batch.attention_mask, block_size)
        loss = masked_diffusion_loss(logits, batch.input_ids, masked, p_mask, batch.response_mask)
        return LossOutput(loss, {"masked_fraction": float(masked.sum() / batch.response_mask.sum())})
