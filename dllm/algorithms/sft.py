"""`sft`: supervised fine-tuning with the masked diffusion loss on response tokens.

Each sequence masks some of its n response tokens (the EOS padding included, as in LLaDA):
`masking="count"` exactly l ~ U{1..n} of them, p = l/n; `masking="rate"` each with
probability p = (1 - eps) t + eps, t ~ U(0, 1). The loss is the cross-entropy of the masked
tokens weighted 1/p, summed per sequence, divided by n, and averaged over the batch — with
count masking, the mean cross-entropy of the masked tokens, an unbiased estimate of the same
bound whose weight never exceeds n (rate's reaches 1/eps). Prompt tokens are never masked
and never scored.

Block SFT (block diffusion models such as SDAR): one forward over `[x_t ; x_0]` under the
block-diffusion mask, both halves at each row's own positions, scoring the noisy half; blocks
count from each row's first real token, as the sampler decodes them, so a prompt's tail shares
its block with the first response tokens.

`pack`: several examples per row (dllm/algorithms/packing.py), each attending only to itself at
its own positions, with the noise and weight it has unpacked: the same loss, less padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext
from dllm.algorithms.denoise import denoising_log_probs, token_log_probs
from dllm.algorithms.packing import Packing, pack_examples
from dllm.data.base import Example, Task
from dllm.errors import ConfigError, DllmError


@dataclass
class SFTBatch:
    """`input_ids` [B, L] = left-padded prompt + response + EOS fill; `attention_mask` [B, L]
    (0 on padding); `response_mask` [B, L] (1 on the response and its EOS fill); `share`, the
    fraction of the optimizer step this micro-batch carries. On several processes the batch is
    rows `offset:offset + B` of a micro-batch of `global_rows` that every process drew alike
    (noise is drawn for all of them, so it does not depend on the number of processes).
    `packing`: packed rows (`pack_examples`; `prompt_length` 0), None for one example per row."""

    input_ids: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    share: float = 1.0
    global_rows: int = 0  # 0: this batch is the whole micro-batch
    offset: int = 0
    prompt_length: int = -1  # the columns before every row's response; -1: counted from response_mask
    packing: Packing | None = None

    def __post_init__(self) -> None:
        if self.prompt_length < 0:  # counted where the batch is built (on the host), not per loss on the device
            self.prompt_length = self.input_ids.shape[1] - int(self.response_mask[0].sum())

    def to(self, device: torch.device) -> SFTBatch:
        tensors = (t.to(device) for t in (self.input_ids, self.attention_mask, self.response_mask))
        packing = None if self.packing is None else self.packing.to(device)
        return SFTBatch(*tensors, self.share, self.global_rows, self.offset, self.prompt_length, packing)

    @property
    def document_ids(self) -> Tensor | None:
        """[B, L] the example at each position of packed rows; None for one example per row."""
        return None if self.packing is None else self.packing.document_ids

    def rows(self, start: int, stop: int) -> SFTBatch:
        """Rows `start:stop` of this batch (their noise still drawn for the whole of it)."""
        if self.packing is not None:
            raise DllmError("packed rows are split by example before packing (pack_sft), not by row")
        tensors = (t[start:stop] for t in (self.input_ids, self.attention_mask, self.response_mask))
        return SFTBatch(*tensors, self.share, self.input_ids.shape[0], start, self.prompt_length)


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


def pack_sft(batch: SFTBatch, keep: range, pack_length: int | None = None) -> SFTBatch:
    """The examples `keep` of an unpacked `collate_sft` batch, packed (`pack_examples`); their noise
    is drawn over the whole batch, as unpacked."""
    *tensors, packing = pack_examples(batch.input_ids, batch.attention_mask, batch.response_mask, keep, pack_length)
    return SFTBatch(*tensors, batch.share, prompt_length=0, packing=packing)


def masked_diffusion_loss(
    logits: Tensor, targets: Tensor, masked: Tensor, p_mask: Tensor, response_mask: Tensor
) -> Tensor:
    """LLaDA's SFT loss: sum over masked tokens of CE / p_mask / response length, mean over batch.

    logits [B, L, V]; targets, masked, response_mask [B, L]; p_mask [B].
    """
    return weighted_nll(token_log_probs(logits, targets), masked, p_mask, response_mask)


def weighted_nll(log_probs: Tensor, masked: Tensor, p_mask: Tensor, response_mask: Tensor) -> Tensor:
    """`masked_diffusion_loss` from the targets' log-probs [B, L]."""
    weights = masked.float() / p_mask[:, None] / response_mask.sum(1, keepdim=True).clamp(min=1)
    return -(log_probs * weights).sum() / log_probs.shape[0]


@ALGORITHMS.register("sft")
class SFT(Algorithm):
    """`block_diffusion`: None = when the model has blocks; `block_size`: None = the model's;
    `pack`: several examples per row, of `pack_length` columns (None: the longest example's)."""

    uniform_forwards = True  # one forward per micro-batch on every process

    def __init__(
        self,
        eps: float = 1e-3,
        block_diffusion: bool | None = None,
        block_size: int | None = None,
        masking: str = "count",
        pack: bool = False,
        pack_length: int | None = None,
    ) -> None:
        if not 0 <= eps < 1:
            raise ConfigError(f"sft.eps must be in [0, 1), got {eps}")
        if masking not in ("rate", "count"):
            raise ConfigError(f"sft.masking must be rate or count, got {masking!r}")
        if block_size is not None and block_size < 1:
            raise ConfigError(f"sft.block_size must be positive, got {block_size}")
        if pack_length is not None and (not pack or pack_length < 1):
            raise ConfigError(f"sft.pack_length={pack_length} needs sft.pack=true and a positive length")
        self.eps = eps
        self.block_diffusion = block_diffusion
        self.block_size = block_size
        self.masking = masking
        self.pack = pack
        self.pack_length = pack_length

    def check_run(self, task: Task, sampler: Any, model_block_size: int | None) -> None:
        if self.pack_length is not None and self.pack_length <= task.gen_length:
            raise ConfigError(
                f"sft.pack_length ({self.pack_length}) must exceed task.gen_length ({task.gen_length}), the "
                "response part of every example; raise it or leave it null (the longest example's length)"
            )

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
        self.training_block_size(ctx.model)  # refuse block SFT of a model without blocks before drawing
        world = ctx.world_size
        for _ in range(num_micro_batches):
            # Every process draws and collates the global micro-batch (same padding, same
            # positions) and keeps its rows; packing, it packs its own examples.
            examples = ctx.task.sample(ctx.rng, ctx.micro_batch_size * world)
            batch = collate_sft(ctx.tokenizer, examples, ctx.task.gen_length)
            mine = range(ctx.rank * ctx.micro_batch_size, (ctx.rank + 1) * ctx.micro_batch_size)
            if self.pack:
                batch = pack_sft(batch, mine, self.pack_length)
            batch = batch.to(ctx.device)
            if world > 1 and not self.pack:
                batch = batch.rows(mine.start, mine.stop)
            batch.share = 1 / (num_micro_batches * world)
            yield batch

    def noise(self, batch: SFTBatch, mask_token_id: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(noisy input_ids, masked [B, L] bool, p_mask [B]) for one forward process draw. Packed
        rows: drawn for the unpacked batch and gathered, p_mask [N] per example of it."""
        size, device = batch.input_ids.shape, batch.input_ids.device
        if batch.packing is not None:
            response = batch.packing.source_response.bool()
            t = torch.rand(response.shape[0], generator=generator, device=device)
            masked, p_mask = self._mask(t, torch.rand(response.shape, generator=generator, device=device), response)
            masked = batch.packing.gather(masked) & batch.response_mask.bool()
            return batch.input_ids.masked_fill(masked, mask_token_id), masked, p_mask
        rows = batch.global_rows or size[0]
        mine = slice(batch.offset, batch.offset + size[0])
        t = torch.rand(rows, generator=generator, device=device)[mine]
        draws = torch.rand((rows, *size[1:]), generator=generator, device=device)[mine]
        masked, p_mask = self._mask(t, draws, batch.response_mask.bool())
        return batch.input_ids.masked_fill(masked, mask_token_id), masked, p_mask

    def _mask(self, t: Tensor, draws: Tensor, response: Tensor) -> tuple[Tensor, Tensor]:
        """(masked [B, L], p_mask [B]) from per-row t [B] and per-token draws [B, L]."""
        if self.masking == "count":  # exactly l ~ U{1..n} of the n response tokens: the l lowest draws
            n = response.sum(1)
            count = (t * n).long() + 1
            ranks = draws.masked_fill(~response, 2.0).argsort(1).argsort(1)
            masked = (ranks < count[:, None]) & response
            p_mask = count / n.clamp(min=1)
        else:
            p_mask = (1 - self.eps) * t + self.eps
            masked = (draws < p_mask[:, None]) & response
        return masked, p_mask

    def loss(self, model: torch.nn.Module, batch: SFTBatch, generator: torch.Generator) -> LossOutput:
        noisy, masked, p_mask = self.noise(batch, model.mask_token_id, generator)
        prompt_length = batch.prompt_length  # never noised
        response = slice(prompt_length, None)
        # the head runs only at the masked response positions, the only ones the loss weighs
        log_probs = denoising_log_probs(
            model, noisy, batch.input_ids, batch.attention_mask, self.training_block_size(model), prompt_length,
            masked[:, response], batch.document_ids,
        )  # fmt: skip
        if batch.packing is not None:
            loss = batch.packing.weighted_nll(log_probs, masked, p_mask)
        else:
            loss = weighted_nll(log_probs, masked[:, response], p_mask, batch.response_mask[:, response])
        return LossOutput(loss, {"masked_fraction": (masked.sum() / batch.response_mask.sum()).detach()})
