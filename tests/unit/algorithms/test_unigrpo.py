"""UniGRPO (MMaDA, arXiv 2505.15809; Gen-Verse/dLLM-RL's random_masking): each inner iteration masks
every completion with its own ratio ~ U(0.1, 0.9), the prompt clean, and scores the masked tokens
of that one view; the clipped ratio is averaged over a view's masked tokens, then over sequences."""

import pytest
import torch

import dllm
from dllm.algorithms.advantages.group import GroupAdvantage
from dllm.algorithms.estimators.base import masked_completion_log_probs
from dllm.algorithms.estimators.random_mask import RandomMaskEstimator
from dllm.algorithms.objectives.base import Scored, token_weights
from dllm.algorithms.objectives.ppo import PPO
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from tests.unit.algorithms.rl_helpers import Recorder, tiny
from tests.unit.algorithms.test_rl import context


def test_the_preset_builds_unigrpos_parts():
    algorithm = dllm.build("algorithm", "unigrpo")
    estimator, objective = algorithm.estimator, algorithm.objective
    assert type(estimator) is RandomMaskEstimator
    assert (estimator.num_masks, estimator.ratio_min, estimator.ratio_max) == (1, 0.1, 0.9)
    assert type(algorithm.advantage) is GroupAdvantage and type(objective) is PPO
    assert (objective.clip_low, objective.clip_high, objective.log_ratio_clamp) == (0.2, 0.2, None)
    assert (objective.beta, objective.kl_estimator, objective.kl_target) == (0.01, "k3", "old")
    assert objective.normalisation == "sequence" and not objective.needs_reference
    assert {name: vars(f) for name, f in algorithm.filters.filters.items()} == {
        "accuracy_band": {"low": 0.2, "high": 0.8}
    }
    got = (algorithm.group_size, algorithm.prompts_per_rollout, algorithm.num_iterations, algorithm.temperature)
    assert got == (8, 32, 35, 0.8)


def test_the_loss_on_a_fixed_rollout_by_hand():
    """One group of 4, rewards (1, 1, 0, 0): z-scores (population std 0.5) A = (1, 1, -1, -1).
    This iteration's view masks 2, 1, 3 and 0 tokens; their ratios to the old policy: row 0 (1.5, 0.9),
    row 1 (1.1), row 2 (0.7, 1.3, 1.0); clip 0.2. -min(r A, clip(r) A): (-1.2, -0.9), -1.1, (0.8, 1.3, 1.0).
    k3 KL to the old policy, 1/r + ln r - 1: (0.0721318, 0.0057506), 0.0044011, (0.0718965, 0.0315951, 0),
    x 0.01. Each view's mean over its masked tokens: -1.0496106, -1.0999560, 1.0336784, and 0 for the
    view that masked nothing; then the mean over the 4 sequences: -1.1158882 / 4 = -0.2789721."""
    algorithm = dllm.build("algorithm", "unigrpo", group_size=4)
    rollout = Rollout.__new__(Rollout)
    rollout.rewards = torch.tensor([1.0, 1.0, 0.0, 0.0])
    algorithm.advantage.compute(rollout, 4, None)
    assert rollout.advantages.tolist() == [1.0, 1.0, -1.0, -1.0]
    masked = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    rollout.old_log_probs = [torch.zeros(4, 3)]
    ratios = torch.tensor([[1.5, 0.9, 1.0], [1.0, 1.1, 1.0], [0.7, 1.3, 1.0], [1.0, 1.0, 1.0]])
    per_token = algorithm.objective.per_token_loss(Scored(ratios.log(), masked, rollout, 0, 4), Tally())
    loss = (per_token * token_weights(masked, algorithm.objective.normalisation) * masked).sum()
    assert loss.item() == pytest.approx(-0.2789721, abs=1e-6)
    assert loss.item() != pytest.approx(-0.0163570, abs=1e-4)  # not the token mean over all 6 masked tokens


def test_each_completion_draws_its_own_ratio_in_the_papers_range():
    """One view per row, masking each token with the row's ratio ~ U(0.1, 0.9): over 2000 tokens a
    row's masked share is its ratio within ~0.03; the shares of 64 rows spread over the range."""
    rollout = Rollout.__new__(Rollout)
    rollout.sequences, rollout.prompt_length = torch.zeros(64, 2000, dtype=torch.long), 0
    plan = dllm.build("algorithm", "unigrpo").estimator.plan(rollout, torch.Generator().manual_seed(0))
    assert plan["masked"].shape == (64, 1, 2000)
    shares = plan["masked"].float().mean((1, 2))
    assert shares.min() > 0.1 - 0.04 and shares.max() < 0.9 + 0.04
    assert shares.min() < 0.2 and shares.max() > 0.8 and shares.std() > 0.15  # not one ratio for the batch


def test_each_inner_iteration_masks_a_fresh_view_and_never_the_prompt(tokenizer):
    """In the loop (shipped sampler, EOS stopping on): each iteration's forward sees the prompt clean
    and the completion masked exactly where that iteration's plan says; the plans differ between
    iterations; the log-probs (and the old policy's, taken before any update) are those of that one
    forward at the masked tokens of the completion through EOS, and nothing else is scored."""
    model = tiny("llada_tiny").train()
    algorithm = dllm.build("algorithm", "unigrpo", group_size=2, prompts_per_rollout=2, num_iterations=3,
                           filters={"accuracy_band": None})  # fmt: skip
    ctx = context(model, tokenizer, dllm.build_sampler("llada", steps=8, block_length=8), batch_size=4, micro=4)
    algorithm.start(ctx)
    list(algorithm.micro_batches(ctx, 1))  # draws the rollout, its plans and the old passes
    rollout, p = algorithm.rollout, algorithm.rollout.prompt_length
    masks = [plan["masked"][:, 0] for plan in rollout.plans]
    assert len(masks) == 3 and not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])
    assert (masks[0] & rollout.scored).any() and (~masks[0] & rollout.scored).any()
    for iteration, masked in enumerate(masks):
        recorder = Recorder(model)
        with torch.no_grad():
            log_probs, scored = algorithm.estimator.log_probs(recorder, rollout, rollout.plans[iteration])
            by_hand = masked_completion_log_probs(
                model, rollout, rollout.completions_as_read().masked_fill(masked, rollout.mask_id)
            )
        (seen,) = recorder.inputs
        assert torch.equal(seen[:, :p], rollout.sequences[:, :p])  # the prompt is never masked
        assert torch.equal(seen[:, p:] == rollout.mask_id, masked)
        assert torch.equal(scored, masked & rollout.scored)
        torch.testing.assert_close(log_probs[scored], by_hand[scored])
        torch.testing.assert_close(rollout.old_log_probs[iteration][scored], by_hand[scored])
