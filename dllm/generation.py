"""Decoding a batch of text prompts: tokenise (left padding; the tokenizer's chat template when
asked) -> `sampler.generate` -> the EOS cut -> texts. One path, shared by rollouts
(`collect_rollout`), evaluation (`evaluate`) and `dllm-generate`, so the three read the same
completions from the same prompts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from dllm.samplers.base import GenerationOutput, Sampler
from dllm.samplers.lanes import row_generators
from dllm.text import chat_prompt, decode_completions, truncated


@dataclass
class DecodedBatch:
    """N prompts decoded: `prompt_ids` / `prompt_mask` [N, P] (left-padded, 0 on padding), the
    sampler's `output` (sequences, raw trajectory, `step_map`, `nfe`), the `texts` users read
    (cut at the first EOS) and their token `lengths`, `truncated` [N] (no EOS within
    `gen_length`), and `elapsed`: seconds spent in `sampler.generate`."""

    prompt_ids: Tensor
    prompt_mask: Tensor
    output: GenerationOutput
    texts: list[str]
    lengths: list[int]
    truncated: Tensor
    elapsed: float

    @property
    def completions(self) -> Tensor:
        """[N, G] the completions as users read them (EOS after a stopped row's EOS)."""
        return self.output.completions(self.prompt_ids.shape[1])


@torch.no_grad()
def decode_batch(
    model: torch.nn.Module,
    tokenizer,
    sampler: Sampler,
    prompts: list[str],
    gen_length: int,
    generator: torch.Generator | None = None,
    *,
    chat_template: bool = False,
    device: torch.device | None = None,
    max_batch_rows: int | None = None,
    canvas: Tensor | None = None,
) -> DecodedBatch:
    """Decode `gen_length` tokens after each of `prompts` with `sampler`, the model in eval mode
    (its mode restored after). `chat_template`: wrap each prompt as a user message in the
    tokenizer's chat template, when it has one. `device`: where the prompts go (default: the
    model's). `max_batch_rows`: at most that many rows decode at once (continuous batching: a
    finished row's place goes to the next prompt; None: all at once). A sampler whose rows
    progress on their own draws each row's noise from its own generator, seeded from
    `generator`: a completion does not depend on the rows decoded beside it. `canvas` [N, G]:
    completion tokens given before decoding (see `Sampler.generate`)."""
    if chat_template and getattr(tokenizer, "chat_template", None):
        prompts = [chat_prompt(tokenizer, prompt) for prompt in prompts]
    device = device if device is not None else next(model.parameters()).device
    batch = tokenizer(prompts, padding=True, return_tensors="pt").to(device)
    was_training = model.training
    model.eval()
    try:
        began = time.perf_counter()
        rows = batch["input_ids"].shape[0]
        if sampler.per_row_progress and generator is not None:
            generator = row_generators(generator, rows)
        limit = {"max_batch_rows": max_batch_rows} if max_batch_rows is not None and max_batch_rows < rows else {}
        if canvas is not None:
            limit["canvas"] = canvas.to(device)
        output = sampler.generate(
            model, batch["input_ids"], batch["attention_mask"], gen_length=gen_length, generator=generator, **limit
        )
        elapsed = time.perf_counter() - began
    finally:
        model.train(was_training)
    completions = output.completions(batch["input_ids"].shape[1])
    texts, lengths = decode_completions(tokenizer, completions)
    return DecodedBatch(
        prompt_ids=batch["input_ids"],
        prompt_mask=batch["attention_mask"],
        output=output,
        texts=texts,
        lengths=lengths,
        truncated=truncated(completions, tokenizer.eos_token_id),
        elapsed=elapsed,
    )
