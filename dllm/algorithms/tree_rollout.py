"""d-TreeRPO's tree rollout (arXiv 2512.09675; THU-BPM/d-TreeRPO): completions that branch from
shared partial trajectories.

The reference splits the `N` decoding steps at N/s, 2N/s, ... and its shipped configuration
(s = 2, 4 trees per prompt, branch factor 4) is a two-level tree: each prompt's root has
`group_size / branches` first-level nodes, each decoding the first half of the steps once, and
each node `branches` leaves that decode the second half from the node's canvas. Under a semi-
autoregressive schedule with the same steps in every block, half the steps is half the blocks:
here a node decodes the first G/2 tokens (whole sampler blocks) and its leaves continue from its
canvas, each with its own noise. A leaf row holds its node's tokens and `step_map` exactly; its
own steps count on from the node's last step, and `branch_step` [N] marks where they start.

Full-attention models only: a block model's decoding would have to resume inside its block
layout (prompt tails, overhang), which the samplers cannot yet do, so the pairing is refused.
A node that already stopped (EOS with nothing masked before it) is not continued: its leaves are
its trajectory, the rest never revealed, as a sampler leaves a stopped row.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.generation import DecodedBatch, decode_batch
from dllm.samplers.base import GenerationOutput, Sampler, fill_after_eos
from dllm.samplers.lanes import row_generators
from dllm.text import decode_completions, truncated


def check_tree(sampler: Sampler, model_block_size: int | None, gen_length: int, branches: int, group_size: int) -> None:
    """Refuse, at start-up, a tree this run cannot decode (one line each: what and the fix)."""
    if branches < 2 or group_size % branches:
        raise ConfigError(
            f"algorithm.tree_branches ({branches}) must be >= 2 and divide algorithm.group_size ({group_size}): "
            "each prompt's group is its first-level nodes x their branches"
        )
    if model_block_size is not None:
        raise ConfigError(
            "algorithm.tree_branches: tree rollouts resume a partial canvas, which block diffusion models "
            "(sdar) cannot yet do inside their block layout: use a full-attention model (llada, dream) or "
            "algorithm.tree_branches=null"
        )
    shared = gen_length // 2
    block_length = sampler.settings().get("block_length")
    if gen_length % 2 or (block_length and shared % block_length):
        raise ConfigError(
            f"algorithm.tree_branches: the tree branches after half the completion ({gen_length} / 2 tokens), "
            f"which must be whole sampler blocks (block_length {block_length}): set an even gen_length whose half "
            "is a multiple of the sampler's block_length"
        )
    share_steps(sampler, shared, gen_length)


def share_steps(sampler: Sampler, tokens: int, gen_length: int) -> Sampler:
    """The sampler decoding `tokens` of `gen_length` with their share of its `steps` (each block
    keeps the steps it has in a whole decoding); a sampler without a step count as it is."""
    steps = sampler.settings().get("steps")
    if steps is None:
        return sampler
    if (steps * tokens) % gen_length:
        raise ConfigError(
            f"algorithm.tree_branches: the sampler's steps ({steps}) do not split evenly over the tree's halves of "
            f"{gen_length} tokens: set the sampler's steps to a multiple of 2 x its blocks"
        )
    return sampler.replace(steps=steps * tokens // gen_length)


@torch.no_grad()
def decode_tree(
    model: torch.nn.Module,
    tokenizer,
    sampler: Sampler,
    prompts: list[str],
    gen_length: int,
    generator: torch.Generator,
    branches: int,
    device: torch.device,
    max_batch_rows: int | None = None,
) -> tuple[DecodedBatch, Tensor]:
    """Decode one first-level node per entry of `prompts` (the first G/2 tokens), then `branches`
    leaves from each (rows node-major: node 0's leaves first). Returns the leaves as one decoded
    batch and `branch_step` [N]: each leaf's first own decoding step."""
    began = time.perf_counter()
    shared = gen_length // 2
    node = decode_batch(model, tokenizer, share_steps(sampler, shared, gen_length), prompts, shared, generator,
                        device=device, max_batch_rows=max_batch_rows)  # fmt: skip

    def leaves(tensor: Tensor) -> Tensor:
        return tensor.repeat_interleave(branches, 0)

    prompt_ids, prompt_mask = leaves(node.prompt_ids), leaves(node.prompt_mask)
    prefix, prefix_steps = leaves(node.output.raw_completions), leaves(node.output.step_map)
    branch_step = prefix_steps.max(1).values + 1
    rows = prefix.shape[0]
    rest = prefix.new_full((rows, gen_length - shared), model.mask_token_id)
    rest_steps = branch_step[:, None].expand(-1, gen_length - shared).clone()  # never revealed: after the last step
    row_nfe = leaves(node.output.row_nfe.to(device))
    stopped = ~truncated(prefix, tokenizer.eos_token_id) if sampler.stop_at_eos else torch.zeros_like(branch_step)
    going = (~stopped.bool()).nonzero().squeeze(1)
    nfe = node.output.nfe
    if len(going):
        rows_generator = row_generators(generator, len(going)) if sampler.per_row_progress else generator
        was_training = model.training
        model.eval()
        try:
            # the node's canvas is the leaf's prompt: a full-attention decoding sees [prompt | completion]
            # whole at every step, so the continuation sees each state the unbranched decoding would
            canvas = torch.cat([prompt_ids, prefix], 1)[going]
            canvas_mask = torch.cat([prompt_mask, torch.ones_like(prefix)], 1)[going]
            leaf = share_steps(sampler, gen_length - shared, gen_length).generate(
                model, canvas, canvas_mask, gen_length - shared, rows_generator, max_batch_rows=max_batch_rows
            )
        finally:
            model.train(was_training)
        rest[going] = leaf.raw_completions
        rest_steps[going] = leaf.step_map + branch_step[going, None]
        row_nfe[going] += leaf.row_nfe.to(device)
        nfe += leaf.nfe
    raw = torch.cat([prefix, rest], 1)
    eos_id = tokenizer.eos_token_id if sampler.stop_at_eos else None
    output = GenerationOutput(
        torch.cat([prompt_ids, fill_after_eos(raw, eos_id, model.mask_token_id)], 1),
        torch.cat([prefix_steps, rest_steps], 1), nfe, raw_completions=raw, row_nfe=row_nfe,
    )  # fmt: skip
    completions = output.completions(prompt_ids.shape[1])
    texts, lengths = decode_completions(tokenizer, completions)
    decoded = DecodedBatch(prompt_ids, prompt_mask, output, texts, lengths,
                           truncated(completions, tokenizer.eos_token_id), time.perf_counter() - began)  # fmt: skip
    return decoded, branch_step
