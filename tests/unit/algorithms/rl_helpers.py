"""Shared pieces of the RL tests: rollouts from real samplers on tiny models, recording models."""

from __future__ import annotations

import torch
from torch import Tensor

import dllm
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.rollout import Rollout, rollout_from_output
from tests.recording import RecordingModel

Recorder = RecordingModel


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
    errors = torch.zeros_like(replayed, dtype=torch.float64)
    for row, j in rollout.scored.nonzero().tolist():
        logits = recorder.calls[int(rollout.step_map[row, j])].logits[row, rollout.prompt_length + j - shift]
        expected = torch.log_softmax(logits.double(), -1)[rollout.completions[row, j]]
        errors[row, j] = abs(float(replayed[row, j]) - float(expected))
    return errors, rollout
