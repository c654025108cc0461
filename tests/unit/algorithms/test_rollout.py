"""Rollouts: rewards read the completions as users do; training keeps the sampler's raw trajectory."""

import pytest
import torch

from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.rollout import Rollout, collect_rollout
from dllm.data.base import Example
from dllm.samplers.llada import LLaDASampler
from dllm.samplers.sdar import SDARSampler
from tests.unit.algorithms.rl_helpers import EarlyEOS, sampled_rollout, tiny


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


@pytest.mark.parametrize(
    "family, sampler",
    [("llada_tiny", LLaDASampler(steps=8, block_length=4)), ("sdar_tiny", SDARSampler(denoising_steps=2))],
)
def test_concatenated_draws_keep_every_rows_tokens_and_log_probs(family, sampler, tokenizer):
    """Draws of one step joined (dynamic sampling): prompts left-padded to the longest, overhangs
    right-padded, groups renumbered; each row scores as it did in its own draw."""
    model = tiny(family)
    parts = [
        sampled_rollout(model, sampler, tokenizer, ("12+345=", "7+8="), seed=0, eos_id=tokenizer.eos_token_id),
        sampled_rollout(model, sampler, tokenizer, ("1+2=",), seed=1, eos_id=tokenizer.eos_token_id),
    ]
    parts[1].group = torch.tensor([3])  # a kept group's own index in its draw
    joined = Rollout.concatenate(parts, tokenizer.pad_token_id)
    assert joined.prompt_length == 7 and joined.group.tolist() == [0, 1, 2]
    texts = tokenizer.batch_decode(joined.sequences[:, :7], skip_special_tokens=True)
    assert texts == ["12+345=", "7+8=", "1+2="] and joined.attention_mask[2].tolist()[:3] == [0, 0, 0]
    assert torch.equal(joined.completions, torch.cat([p.completions for p in parts]))
    assert torch.equal(joined.step_map, torch.cat([p.step_map for p in parts]))
    estimator = TraceEstimator()
    alone = [estimator.log_probs(model, p, estimator.plan(p, torch.Generator()))[0] for p in parts]
    together, _ = estimator.log_probs(model, joined, estimator.plan(joined, torch.Generator()))
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-5, rtol=0)
