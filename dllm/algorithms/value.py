"""TraceRL's value model: values per decoding step, step-level GAE, the clipped value loss.

The value model is the policy's backbone with a zero-initialised scalar head. It reads the
same states the trace estimator replays: V_j is its value at token j's (masked) position in
the state just before j was revealed. Per row, the decoding steps (merged as the estimator
merges them) t = 0..S-1 get step means r*_t = mean r_j, V*_t = mean V_j over their tokens;
with the outcome reward on the tokens of the last step (0 elsewhere):

    delta*_t = r*_t - V*_t + gamma V*_{t+1},   A*_t = delta*_t + gamma lambda A*_{t+1},
    R*_t = r*_t + gamma R*_{t+1}               (V*_S = A*_S = R*_S = 0)

and each token of step t gets A_j = (r_j - V_j) + gamma V*_{t+1} + gamma lambda A*_{t+1},
R_j = r_j + gamma R*_{t+1}. With gamma = lambda = 1: A_j = R - V_j. A step-level (process)
reward's values land on the steps that revealed the tokens they name (`step_token_rewards`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllm.errors import ConfigError


def value_model_for(policy: torch.nn.Module, checkpoint: str | None = None) -> torch.nn.Module:
    """A value model for `policy`: from a value checkpoint, or the policy's own backbone with
    a fresh zero head (TraceRL starts its value model from the base model)."""
    from dllm.models.base import load_value_model

    value_class = getattr(type(policy), "value_class", None)
    if value_class is None:
        raise ConfigError(
            f"{type(policy).__name__} has no value-model variant (a backbone with a scalar head): the value "
            f"advantage needs one; use a dllm model family (llada, dream, sdar) or algorithm/advantage=group"
        )
    if checkpoint is not None:
        return load_value_model(checkpoint)
    value_model = value_class(policy.config)
    value_model.load_state_dict(policy.state_dict(), strict=False)  # the backbone; the head stays zero
    return value_model.to(next(policy.parameters()).device)


def dense_ranks(steps: Tensor) -> Tensor:
    """[..., n] rank of each value among the distinct values of its last-dimension row (0 = smallest)."""
    ordered, order = steps.sort(dim=-1)
    new_value = torch.ones_like(ordered, dtype=torch.long)
    new_value[..., 0] = 0
    new_value[..., 1:] = (ordered[..., 1:] != ordered[..., :-1]).long()
    return torch.empty_like(order).scatter_(-1, order, new_value.cumsum(-1))


def decoding_steps(rounds: Tensor, blocks: Tensor, scored: Tensor) -> Tensor:
    """[N, G] index of each scored token's merged decoding step in decoding order (blocks in
    order, then rounds within a block), 0-based and contiguous over the row's scored tokens;
    `blocks` [N, G] from `Rollout.completion_blocks`. An unscored position gets the index after
    them (steps that revealed only tokens after EOS are no steps of the trajectory the rewards
    judge, as in TraceRL's reference)."""
    order = blocks * (int(rounds.max()) + 1) + rounds
    return dense_ranks(torch.where(scored, order, int(order.max()) + 1))


def step_gae(
    steps: Tensor, token_rewards: Tensor, values: Tensor, scored: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """(advantages [N, G], returns [N, G]) by step-level GAE; `steps` [N, G] from
    `decoding_steps`, `token_rewards` and `values` [N, G], over `scored` tokens (0 elsewhere)."""
    rows, num_steps = steps.shape[0], int(steps[scored].max()) + 1 if bool(scored.any()) else 1
    index = torch.where(scored, steps, num_steps)  # unscored tokens go to a discarded extra step
    counts = torch.zeros(rows, num_steps + 1, device=steps.device).scatter_add_(1, index, scored.float())
    counts = counts[:, :num_steps].clamp(min=1)

    def step_mean(per_token: Tensor) -> Tensor:
        sums = torch.zeros(rows, num_steps + 1, device=steps.device).scatter_add_(1, index, per_token.float())
        return sums[:, :num_steps] / counts

    step_rewards, step_values = step_mean(token_rewards * scored), step_mean(values * scored)
    step_advantages = torch.zeros(rows, num_steps + 1, device=steps.device)
    step_returns = torch.zeros(rows, num_steps + 1, device=steps.device)
    next_values = torch.zeros(rows, num_steps + 1, device=steps.device)
    next_values[:, :num_steps] = torch.cat([step_values[:, 1:], torch.zeros(rows, 1, device=steps.device)], 1)
    for t in reversed(range(num_steps)):
        delta = step_rewards[:, t] - step_values[:, t] + gamma * next_values[:, t]
        step_advantages[:, t] = delta + gamma * lam * step_advantages[:, t + 1]
        step_returns[:, t] = step_rewards[:, t] + gamma * step_returns[:, t + 1]
    later = (index + 1).clamp(max=num_steps)  # step t + 1 of each token (the extra slot holds zeros)
    advantages = (
        token_rewards - values + gamma * next_values.gather(1, index) + gamma * lam * step_advantages.gather(1, later)
    )
    returns = token_rewards + gamma * step_returns.gather(1, later)
    return advantages * scored, returns * scored


def step_token_rewards(steps: Tensor, scored: Tensor, outcome: Tensor, process: Tensor | None = None) -> Tensor:
    """[N, G] token rewards of step-level GAE: each row's `outcome` [N] on its last decoding step,
    plus each step-level value of `process` [N, G] (placed at a token) on the step that
    revealed that token; every token of a step carries its step's reward."""
    rows = steps.shape[0]
    num_steps = int(steps[scored].max()) + 1 if bool(scored.any()) else 1
    index = torch.where(scored, steps, num_steps)
    step_rewards = torch.zeros(rows, num_steps + 1, device=steps.device)
    if process is not None:
        step_rewards.scatter_add_(1, index, process.float() * scored)
    last = torch.where(scored, steps, -1).max(1).values.clamp(min=0)
    step_rewards[torch.arange(rows, device=steps.device), last] += outcome.float()
    return torch.where(scored, step_rewards.gather(1, index), 0.0)


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip: float) -> Tensor:
    """[N, G] 0.5 max((V - R)^2, (V_old + clip(V - V_old, +-clip) - R)^2)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
