"""Rollouts: rewards read the completions as users do; training keeps the sampler's raw trajectory."""

import torch

from dllm.algorithms.rollout import collect_rollout
from dllm.data.base import Example
from dllm.samplers.llada import LLaDASampler
from tests.unit.algorithms.rl_helpers import EarlyEOS, tiny


class RecordingReward:
    """Scores 0 and keeps what it was given."""

    def __call__(self, prompts, completions, **fields):
        self.completions, self.fields = list(completions), fields
        return [0.0] * len(completions)


def test_rewards_read_the_users_text_while_the_rollout_keeps_the_raw_trajectory(tokenizer):
    model = EarlyEOS(tiny("llada_tiny"), bias=2.0)  # rows stop at different steps; the batch decodes on
    reward = RecordingReward()
    examples = [Example(prompt, "") for prompt in ("12+345=", "7+8=", "99*9=1")]
    sampler = LLaDASampler(steps=16, block_length=4, temperature=1.0)  # stop_at_eos, as shipped
    rollout, stats = collect_rollout(
        model, tokenizer, examples, sampler, reward, torch.Generator().manual_seed(0), 2, 16, torch.device("cpu")
    )
    eos, raw = tokenizer.eos_token_id, rollout.completions.tolist()
    first = [row.index(eos) if eos in row else len(row) for row in raw]
    # the condition that matters: some row's trajectory holds tokens the sampler revealed after its EOS
    assert any(token not in (eos, model.mask_token_id) for row, f in zip(raw, first) for token in row[f + 1 :])
    users = [tokenizer.decode(row[:f], skip_special_tokens=True) for row, f in zip(raw, first)]
    assert reward.completions == users == stats.texts  # cut at the first EOS: nothing after it
    assert [len(offsets) for offsets in reward.fields["token_offsets"]] == first
    assert rollout.scored.sum(1).tolist() == [min(f + 1, 16) for f in first]  # the actions: up to and with EOS
