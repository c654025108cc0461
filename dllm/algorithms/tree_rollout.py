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

A block model's node runs on to the end of the block holding its G/2-th token (its decoding
finishes whole blocks), so its leaves start at a block boundary: blocks count from each row's
position 0, so the node's canvas, re-padded as their prompt, keeps every block and position.
A node that already stopped (EOS with nothing masked before it) is not continued: its leaves are
its trajectory, the rest never revealed, as a sampler leaves a stopped row.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.generation import DecodedBatch, decode_batch
from dllm.models.base import pad_token_id
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
    shared = gen_length // 2
    block_length = sampler.settings().get("block_length")
    # A sampler with blocks decodes the node's half in whole blocks; a block model's node also runs
    # on to the end of its block, which must leave its leaves something to decode.
    if gen_length % 2 or (block_length and shared % block_length) or (model_block_size or 0) > shared:
        raise ConfigError(
            f"algorithm.tree_branches: the tree branches after half the completion ({gen_length} / 2 tokens), "
            f"which must be whole sampler blocks (block_length {block_length}, the model's blocks "
            f"{model_block_size}): set an even gen_length whose half is a multiple of the sampler's block_length "
            "and at least the model's block size"
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
    """Decode one first-level node per entry of `prompts` (the first G/2 tokens; a block model
    to the end of the block holding them), then `branches` leaves from each (rows node-major: node
    0's leaves first). Returns the leaves as one decoded batch and `branch_step` [N]: each leaf's
    first own decoding step."""
    began = time.perf_counter()
    shared = gen_length // 2
    node = decode_batch(model, tokenizer, share_steps(sampler, shared, gen_length), prompts, shared, generator,
                        device=device, max_batch_rows=max_batch_rows)  # fmt: skip

    def leaves(tensor: Tensor) -> Tensor:
        return tensor.repeat_interleave(branches, 0)

    out, block = node.output, node.output.block_size
    prompt_ids, prompt_mask = leaves(node.prompt_ids), leaves(node.prompt_mask)
    lengths = prompt_mask.sum(1)
    # a node ends where its decoding did: after G/2 tokens, or at the end of a block model's block
    extra = (-(lengths + shared)) % block if block else torch.zeros_like(lengths)
    tokens, steps = out.raw_completions, out.step_map
    if out.overhang is not None:
        tokens, steps = torch.cat([tokens, out.overhang], 1), torch.cat([steps, out.overhang_steps], 1)
    tokens, steps = leaves(tokens), leaves(steps)
    branch_step = steps.max(1).values + 1
    rows = tokens.shape[0]
    ends = shared + extra  # [N] each node's own tokens
    stopped = torch.zeros(rows, dtype=torch.bool, device=tokens.device)
    if sampler.stop_at_eos and tokenizer.eos_token_id is not None:
        inside = torch.arange(tokens.shape[1], device=tokens.device) < ends[:, None]
        stopped = ((tokens == tokenizer.eos_token_id) & inside).any(1)  # the completion ends in the node
    going = (~stopped).nonzero().squeeze(1).tolist()
    # each leaf's whole trajectory from its first completion token: the node's, then its own
    width = gen_length + (block or 1)
    trail = tokens.new_full((rows, width), model.mask_token_id)
    trail_steps = branch_step[:, None].expand(-1, width).clone()  # never revealed: after the last step
    for row in range(rows):
        trail[row, : ends[row]], trail_steps[row, : ends[row]] = tokens[row, : ends[row]], steps[row, : ends[row]]
    row_nfe = leaves(out.row_nfe.to(device))
    nfe = out.nfe
    if going:
        # the node's canvas is the leaf's prompt, left-padded anew: the leaf's decoding sees every
        # state the unbranched one would (full attention: the whole canvas; a block model: the
        # clean blocks before, the node ending at a block boundary, positions counted from 0)
        canvases = [torch.cat([prompt_ids[row, -int(lengths[row]) :], tokens[row, : ends[row]]]) for row in going]
        longest = max(len(c) for c in canvases)
        canvas = prompt_ids.new_full((len(going), longest), pad_token_id(model))
        canvas_mask = torch.zeros_like(canvas)
        for i, c in enumerate(canvases):
            canvas[i, longest - len(c) :], canvas_mask[i, longest - len(c) :] = c, 1
        # a row needing fewer decodes blocks it drops; a sampler's own blocks must tile what it decodes
        rest = int((gen_length - ends[going]).max().clamp_min(1))
        unit = sampler.settings().get("block_length") or block or 1
        rest = -(-rest // unit) * unit
        rows_generator = row_generators(generator, len(going)) if sampler.per_row_progress else generator
        was_training = model.training
        model.eval()
        try:
            leaf = share_steps(sampler, gen_length - shared, gen_length).generate(
                model, canvas, canvas_mask, rest, rows_generator, max_batch_rows=max_batch_rows
            )
        finally:
            model.train(was_training)
        own, own_steps = leaf.raw_completions, leaf.step_map
        if leaf.overhang is not None:
            own, own_steps = torch.cat([own, leaf.overhang], 1), torch.cat([own_steps, leaf.overhang_steps], 1)
        last = own_steps.max(1, keepdim=True).values
        own_steps = torch.where(own_steps < 0, last + 1, own_steps)  # an overhang's never-revealed place
        for i, row in enumerate(going):
            take = min(width - int(ends[row]), own.shape[1])
            trail[row, ends[row] : ends[row] + take] = own[i, :take]
            trail_steps[row, ends[row] : ends[row] + take] = own_steps[i, :take] + branch_step[row]
        row_nfe[going] += leaf.row_nfe.to(device)
        nfe += leaf.nfe
    raw, raw_steps = trail[:, :gen_length], trail_steps[:, :gen_length]
    overhang = overhang_steps = None
    if block:  # after G, to the end of each row's last block; then masks, step -1
        tail = (-(lengths + gen_length)) % block
        span = int(tail.max())
        inside = torch.arange(span, device=raw.device) < tail[:, None]
        overhang = trail[:, gen_length : gen_length + span].masked_fill(~inside, model.mask_token_id)
        overhang_steps = trail_steps[:, gen_length : gen_length + span].masked_fill(~inside, -1)
    eos_id = tokenizer.eos_token_id if sampler.stop_at_eos else None
    output = GenerationOutput(
        torch.cat([prompt_ids, fill_after_eos(raw, eos_id, model.mask_token_id)], 1), raw_steps, nfe, block,
        overhang, overhang_steps, raw_completions=raw, row_nfe=row_nfe,
    )  # fmt: skip
    completions = output.completions(prompt_ids.shape[1])
    texts, lengths_read = decode_completions(tokenizer, completions)
    decoded = DecodedBatch(prompt_ids, prompt_mask, output, texts, lengths_read,
                           truncated(completions, tokenizer.eos_token_id), time.perf_counter() - began)  # fmt: skip
    return decoded, branch_step
