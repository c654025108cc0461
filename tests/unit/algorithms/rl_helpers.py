"""Shared pieces of the RL tests: rollouts from real samplers on tiny models, recording models."""

from __future__ import annotations

import torch
from hydra.utils import get_object
from torch import Tensor

import dllm
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.rl import RL
from dllm.algorithms.rollout import Rollout, rollout_from_output
from dllm.config import compose
from dllm.models.base import pad_token_id
from dllm.samplers.base import block_layout
from tests.recording import RecordingModel

Recorder = RecordingModel


def rl_presets() -> list[str]:
    """The algorithm presets that are the RL loop with other parts (not those of other algorithms,
    such as `dpo`, a preset of `vrpo`)."""
    return [
        name
        for name in dllm.ALGORITHMS.presets()
        if issubclass(get_object(compose([f"algorithm={name}"]).algorithm._target_), RL)
    ]


def tiny(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return dllm.load_model(preset).eval()


def sampled_rollout(
    model, sampler, tokenizer, prompts=("12+345=", "7+8="), gen_length=8, seed=0, eos_id: int | None = None
) -> Rollout:
    """A rollout of `sampler` on `model` (rewards 0); `eos_id` None scores every completion token,
    else the completion up to and including its first EOS, as training does."""
    batch = tokenizer(list(prompts), padding=True, return_tensors="pt")
    out = sampler.generate(
        model, batch["input_ids"], batch["attention_mask"], gen_length, torch.Generator().manual_seed(seed)
    )
    return rollout_from_output(model, batch["input_ids"], batch["attention_mask"], out, eos_id=eos_id)


def decoded_columns(rollout: Rollout, width: int) -> torch.Tensor:
    """[N, width] column of each completion (then overhang) position in the canvas a block sampler
    decoded on: each row shifted by whole blocks so that its prompt's last block starts at the
    first decoded column (full attention: the prompt, then the completion)."""
    if rollout.block_size is None:
        return rollout.prompt_length + torch.arange(width).expand(rollout.step_map.shape[0], -1)
    lengths = rollout.attention_mask[:, : rollout.prompt_length].sum(1, keepdim=True)
    first_block = int((lengths // rollout.block_size).max()) * rollout.block_size
    return first_block + lengths % rollout.block_size + torch.arange(width)


def step_forwards(recorder: RecordingModel, rollout: Rollout) -> list[list[tuple[int, int]]]:
    """Per row, the (recorded call, input row) of each of its steps (no cache: one forward per
    step), rows told apart by the start of their canvas: the left-padded prompt (full attention)
    or its whole blocks as the sampler laid them out (block models)."""
    prompt_ids = rollout.sequences[:, : rollout.prompt_length]
    if rollout.block_size is None:
        return recorder.row_forwards(prompt_ids)
    prompt_mask = rollout.attention_mask[:, : rollout.prompt_length]
    x, _, _, first_block = block_layout(
        prompt_ids, prompt_mask, rollout.block_size, rollout.step_map.shape[1], pad_token_id(recorder), rollout.mask_id
    )
    start = x[:, : first_block + rollout.block_size]  # the prompt, and its tail in the first decoded block
    return recorder.row_forwards(start, start != rollout.mask_id)


def block_states_match(recorder: RecordingModel, rollout: Rollout, states) -> int:
    """Assert that each replayed block state is what the sampler's forward saw at the step that
    revealed its first action (recorded without a cache: each of a row's forwards is one of its
    steps, the canvas up to the block's end), the prompt's tail clean in its block; return how many
    (row, block, state) matched."""
    p, block_size = rollout.prompt_length, rollout.block_size
    width = rollout.step_map.shape[1]
    forwards = step_forwards(recorder, rollout)
    compared = 0
    for noisy, actions in states:
        columns = decoded_columns(rollout, noisy.shape[1] - p)
        blocks = rollout.completion_blocks(columns.shape[1])
        for row in range(noisy.shape[0]):
            for block in blocks[row, :width][actions[row]].unique().tolist():
                chosen = actions[row] & (blocks[row, :width] == block)
                call, index = forwards[row][int(rollout.step_map[row][chosen].min())]
                seen = recorder.inputs[call][index]
                here = blocks[row] == block
                assert int(columns[row][here].max()) < seen.shape[0]
                assert torch.equal(noisy[row, p:][here], seen[columns[row][here]])  # token for token
                if block == 0:  # the prompt's tail, clean in the block it shares with the first tokens
                    first = int(columns[row, 0])
                    tail = int(rollout.attention_mask[row, :p].sum()) % block_size
                    assert torch.equal(noisy[row, p - tail : p], seen[first - tail : first])
                compared += 1
    return compared


class EarlyEOS(torch.nn.Module):
    """A model whose EOS logit is raised by `bias`: a policy that stops early, rows at different steps."""

    def __init__(self, inner: torch.nn.Module, bias: float) -> None:
        super().__init__()
        self.inner, self.bias = inner, bias
        self.config, self.mask_token_id = inner.config, inner.mask_token_id
        self.block_size, self.shift_logits = inner.block_size, inner.shift_logits

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        out.logits[..., self.config.eos_token_id] += self.bias
        return out


def replay_errors(model, sampler, tokenizer, prompts, gen_length: int, seed: int = 0) -> tuple[Tensor, Rollout]:
    """(|trace log-prob - the sampler's own log-softmax at the step that revealed the token| [N, G],
    0 on unscored tokens; the rollout) for a rollout of `sampler` on `model` scored up to EOS.
    The sampler must run one forward per step over the whole sequence so far (no cache)."""
    recorder = RecordingModel(model)
    rollout = sampled_rollout(recorder, sampler, tokenizer, prompts, gen_length, seed, model.config.eos_token_id)
    with torch.no_grad():
        replayed = TraceEstimator().gather(model, rollout)
    shift = int(bool(model.shift_logits))  # position i - 1 predicts token i
    columns = decoded_columns(rollout, rollout.step_map.shape[1])
    errors = torch.zeros_like(replayed, dtype=torch.float64)
    forwards = step_forwards(recorder, rollout)
    for row, j in rollout.scored.nonzero().tolist():
        call, index = forwards[row][int(rollout.step_map[row, j])]
        logits = recorder.logits_at(call, index, int(columns[row, j]) - shift)
        expected = torch.log_softmax(logits.double(), -1)[rollout.completions[row, j]]
        errors[row, j] = abs(float(replayed[row, j]) - float(expected))
    return errors, rollout
