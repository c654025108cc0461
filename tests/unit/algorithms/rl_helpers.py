"""Shared pieces of the RL tests: rollouts from real samplers on tiny models, recording models."""

from __future__ import annotations

import torch

import dllm
from dllm.algorithms.rollout import Rollout, rollout_from_output
from tests.recording import RecordingModel

Recorder = RecordingModel


def tiny(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return dllm.load_model(preset).eval()


def sampled_rollout(model, sampler, tokenizer, prompts=("12+345=", "7+8="), gen_length=8, seed=0) -> Rollout:
    """A rollout of `sampler` on `model` (every completion token scored, rewards 0)."""
    batch = tokenizer(list(prompts), padding=True, return_tensors="pt")
    out = sampler.generate(
        model, batch["input_ids"], batch["attention_mask"], gen_length, torch.Generator().manual_seed(seed)
    )
    rollout = rollout_from_output(model, batch["input_ids"], batch["attention_mask"], out, eos_id=None)
    return rollout


def decoded_columns(rollout: Rollout, width: int) -> torch.Tensor:
    """[N, width] column of each completion (then overhang) position in the canvas a block sampler
    decoded on: each row shifted by whole blocks so that its prompt's last block starts at the
    first decoded column."""
    lengths = rollout.attention_mask[:, : rollout.prompt_length].sum(1, keepdim=True)
    first_block = int((lengths // rollout.block_size).max()) * rollout.block_size
    return first_block + lengths % rollout.block_size + torch.arange(width)


def block_states_match(recorder: RecordingModel, rollout: Rollout, states) -> int:
    """Assert that each replayed block state is what the sampler's forward saw at the step that
    revealed its first action (recorded without a cache: forward k is step k, the canvas up to the
    block's end), the prompt's tail clean in its block; return how many (row, block, state) matched."""
    p, mask, block_size = rollout.prompt_length, recorder.mask_token_id, rollout.block_size
    width = rollout.step_map.shape[1]
    compared = 0
    for noisy, actions in states:
        columns = decoded_columns(rollout, noisy.shape[1] - p)
        blocks = rollout.completion_blocks(columns.shape[1])
        for row in range(noisy.shape[0]):
            for block in blocks[row, :width][actions[row]].unique().tolist():
                chosen = actions[row] & (blocks[row, :width] == block)
                seen = recorder.inputs[int(rollout.step_map[row][chosen].min())][row]
                here = blocks[row] == block
                assert int(columns[row][here].max()) < seen.shape[0]
                assert torch.equal(noisy[row, p:][here] == mask, seen[columns[row][here]] == mask)
                if block == 0:  # the prompt's tail, clean in the block it shares with the first tokens
                    first = int(columns[row, 0])
                    tail = int(rollout.attention_mask[row, :p].sum()) % block_size
                    assert torch.equal(noisy[row, p - tail : p], seen[first - tail : first])
                compared += 1
    return compared
