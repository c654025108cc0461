"""DAPO's parts as options of every algorithm: dynamic sampling, clip-higher, the token-level loss,
overlong shaping and filtering; and the `dapo` preset."""

import json
import logging
import random

import pytest
import torch

import dllm
from dllm.algorithms.base import TrainContext
from dllm.algorithms.objectives.base import Scored, reduce_tokens
from dllm.algorithms.rl import RL
from dllm.algorithms.rl_plan import first_groups
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from dllm.config import compose
from dllm.errors import ConfigError
from dllm.rewards.base import Reward
from dllm.tokenizer import build_char_tokenizer
from tests.unit.algorithms.rl_helpers import tiny

DROP_EQUAL = {"drop_equal_groups": dllm.build("filter", "drop_equal_groups")}


class Scripted(Reward):
    """Scores call k with `script[k]` (the last one repeats); records each call's prompts and `truncated`."""

    def __init__(self, script):
        self.script, self.prompts, self.truncated = script, [], []

    def __call__(self, prompts, completions, **fields):
        self.prompts.append(list(prompts))
        self.truncated.append(list(fields["truncated"]))
        return list(self.script[min(len(self.prompts), len(self.script)) - 1])


def drawn(algorithm, reward, model=None, sampler=None):
    """The rollout `algorithm` trains on first, and its metrics (prompts_per_rollout 2, group_size 2)."""
    model = model if model is not None else tiny("llada_tiny").train()
    sampler = sampler or dllm.build_sampler("llada", steps=8, block_length=8)
    ctx = TrainContext(model, build_char_tokenizer(), dllm.build("task", "addition"), sampler, reward, 2,
                       random.Random(0), torch.Generator().manual_seed(0), torch.device("cpu"), 4)  # fmt: skip
    algorithm.start(ctx)
    list(algorithm.micro_batches(ctx, 2))
    return algorithm.rollout, algorithm.trained_rollout()[1], ctx.tokenizer


def prompts_of(rollout: Rollout, tokenizer) -> list[str]:
    return tokenizer.batch_decode(rollout.sequences[:, : rollout.prompt_length], skip_special_tokens=True)


def test_dynamic_sampling_draws_until_enough_groups_have_mixed_rewards():
    # Draw 1: both groups equal; draw 2: group 0 mixed; draw 3: both mixed -> 3 kept, the first 2 trained.
    reward = Scripted([[0, 0, 1, 1], [0, 1, 1, 1], [1, 0, 0, 1]])
    algorithm = RL(group_size=2, prompts_per_rollout=2, filters=DROP_EQUAL, dynamic_sampling=True)
    rollout, metrics, tokenizer = drawn(algorithm, reward)
    assert len(reward.prompts) == 3 and metrics["rollout_tries"] == 3.0
    assert metrics["dropped_groups"] == 3.0  # 2 + 1 + 0 of the 6 groups drawn
    assert metrics["reward"] == pytest.approx(7 / 12)  # over every draw: 7 of 12 completions scored 1
    assert rollout.rewards.tolist() == [0, 1, 1, 0] and rollout.group.tolist() == [0, 0, 1, 1]
    assert prompts_of(rollout, tokenizer) == [reward.prompts[1][0], reward.prompts[1][1], *reward.prompts[2][:2]]
    assert rollout.advantages.tolist() == pytest.approx([-1, 1, 1, -1])  # z-scores within each kept group


def test_without_dynamic_sampling_one_mixed_group_is_enough():
    reward = Scripted([[0, 0, 1, 1], [0, 1, 1, 1], [1, 0, 0, 1]])
    rollout, metrics, _ = drawn(RL(group_size=2, prompts_per_rollout=2, filters=DROP_EQUAL), reward)
    assert len(reward.prompts) == 2 and metrics["rollout_tries"] == 2.0 and "dropped_groups" not in metrics
    assert rollout.rewards.tolist() == [0, 1] and metrics["kept_fraction"] == 0.5


@pytest.mark.parametrize(
    "script, trained, dropped, logged",
    [
        ([[0, 0, 0, 0], [0, 1, 0, 0]], [0, 1], 3, "1 of the 2 groups wanted passed the filters in 2 draws"),
        ([[1, 1, 0, 0]], [1, 1, 0, 0], 4, "0 of the 2 groups wanted passed the filters in 2 draws"),
    ],
)
def test_dynamic_sampling_stops_at_the_most_draws_and_says_how_many_groups_it_has(
    script, trained, dropped, logged, caplog
):
    algorithm = RL(group_size=2, prompts_per_rollout=2, filters=DROP_EQUAL, dynamic_sampling=True, max_rollout_tries=2)
    with caplog.at_level(logging.WARNING, logger="dllm.algorithms.rl"):
        rollout, metrics, _ = drawn(algorithm, Scripted(script))
    assert rollout.rewards.tolist() == trained  # the kept groups, or with none the last draw whole
    assert metrics["rollout_tries"] == 2.0 and metrics["dropped_groups"] == dropped
    assert logged in caplog.text and "(algorithm.max_rollout_tries)" in caplog.text


def test_processes_train_on_the_groups_one_process_would():
    # Two processes, three draws; kept groups per draw: rank 0 (2, 0, 1), rank 1 (1, 2, 2). One
    # process would order them draw by draw, rank 0's first: 2, 1 | 0, 2 | 1, 2 -> the first 5 are
    # rank 0's 2 of draw 1, rank 1's 1 of draw 1 and 2 of draw 2.
    counts = [[2, 0, 1], [1, 2, 2]]
    assert first_groups(counts, 0, 5) == ([2, 0, 0], [0, 1]) and first_groups(counts, 1, 5) == ([1, 2, 0], [2, 3, 4])
    assert first_groups(counts, 0, 6) == ([2, 0, 1], [0, 1, 5]) and first_groups(counts, 1, 6) == ([1, 2, 0], [2, 3, 4])
    assert first_groups(counts, 1, None) == ([1, 2, 2], [2, 3, 4, 6, 7])  # all: rank 0's draw-3 group is 5
    assert first_groups([[3, 4]], 0, 5) == ([3, 2], [0, 1, 2, 3, 4]) and first_groups([[1, 1]], 0, 5)[0] == [1, 1]


def test_dynamic_sampling_needs_a_filter():
    with pytest.raises(ConfigError, match=r"no filter is on: add \+algorithm/filter@algorithm.filters.drop_equal"):
        RL(dynamic_sampling=True)


def test_clip_higher_by_hand():
    # DAPO's eps_low 0.2, eps_high 0.28: the ratio is clipped to [0.8, 1.28].
    objective = dllm.build("objective", "ppo", clip_low=0.2, clip_high=0.28)
    ratios = torch.tensor([[1.5, 1.25, 0.5, 1.5, 0.5, 0.9]])
    advantages = torch.tensor([[2.0, 2.0, 2.0, -1.0, -1.0, -1.0]])
    rollout = Rollout(
        sequences=torch.zeros(1, 6, dtype=torch.long), attention_mask=torch.ones(1, 6), step_map=torch.zeros(1, 6),
        scored=torch.ones(1, 6, dtype=torch.bool), group=torch.zeros(1), rewards=torch.zeros(1),
        truncated=torch.zeros(1, dtype=torch.bool), prompt_length=0, block_size=None, mask_id=2,
        advantages=advantages, old_log_probs=[torch.zeros(1, 6)],
    )  # fmt: skip
    tally = Tally()
    loss = objective.per_token_loss(Scored(ratios.log(), rollout.scored, rollout, 0, 1), tally)
    # A > 0: min(1.5 A, 1.28 A) = 2.56, min(1.25 A, ...) = 2.5 (inside), min(0.5 A, 0.8 A) = 1.0;
    # A < 0: min(-1.5, -1.28) = -1.5 (no clip below), min(-0.5, -0.8) = -0.8, min(-0.9, -0.9) = -0.9.
    assert loss[0].tolist() == pytest.approx([-2.56, -2.5, -1.0, 1.5, 0.8, 0.9])
    assert tally.metrics()["clip_fraction"] == pytest.approx(4 / 6)  # 1.5, 0.5, 1.5, 0.5 are outside [0.8, 1.28]


def test_the_token_level_loss_is_dapos_mean_over_every_token_of_the_batch():
    # DAPO's Eq. 12: sum over all tokens of all completions / sum of their lengths (3 + 1 + 2 = 6),
    # not the mean of each completion's mean ((2 + 4 + 1.5) / 3 = 2.5, GRPO's).
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [1.0, 2.0, 9.0]])
    scored = torch.tensor([[True, True, True], [True, False, False], [True, True, False]])
    assert reduce_tokens(per_token, scored, "token").item() == pytest.approx((6 + 4 + 3) / 6)
    assert reduce_tokens(per_token, scored, "sequence").item() == pytest.approx(2.5)
    # the whole step's mean, whatever its micro-batches: the rows split 2 + 1 with shares 4/6 and 2/6
    parts = (
        reduce_tokens(per_token[:2], scored[:2], "token") * 4 / 6
        + reduce_tokens(per_token[2:], scored[2:], "token") * 2 / 6
    )
    assert parts.item() == pytest.approx(13 / 6)


def test_the_dapo_loss_by_hand():
    """One group of 3 completions of at most L = 4 tokens, lengths 2, 4 (cut), 1, task rewards 1, 1, 0;
    the preset's buffer is 0.2 x 4 = 0.8 -> 1 token: penalties 0, -1, 0 -> rewards 1, 0, 0 ->
    z-scores (population std sqrt(2/9)) sqrt(2), -1/sqrt(2), -1/sqrt(2). Per token,
    min(r A, clip(r, 0.8, 1.28) A): row 0 (r 1.5, 0.9): 1.28 sqrt(2) = 1.81019, 1.27279; row 1
    (r 1.5, 0.5, 1.0, 1.2): -1.06066 (not clipped below), -0.56569 (0.8 A), -0.70711, -0.84853;
    row 2 (r 0.5): -0.56569. Loss: minus their sum over all 7 tokens, / 7 = 0.0949543."""
    algorithm = dllm.build("algorithm", "dapo", group_size=3)
    scored = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    ratios = torch.tensor([[1.5, 0.9, 1.0, 1.0], [1.5, 0.5, 1.0, 1.2], [0.5, 1.0, 1.0, 1.0]])
    rollout = Rollout(
        sequences=torch.zeros(3, 4, dtype=torch.long), attention_mask=torch.ones(3, 4), step_map=torch.zeros(3, 4),
        scored=scored, group=torch.zeros(3), rewards=torch.tensor([1.0, 1.0, 0.0]),
        truncated=torch.tensor([False, True, False]), prompt_length=0, block_size=None, mask_id=2,
        old_log_probs=[torch.zeros(3, 4)],
    )  # fmt: skip
    penalty = algorithm.overlong.penalty(scored.sum(1), 4)
    assert penalty.tolist() == [0.0, -1.0, 0.0]
    rollout.rewards = rollout.rewards + penalty
    algorithm.advantage.compute(rollout, 3, None)
    assert rollout.advantages.tolist() == pytest.approx([2**0.5, -(0.5**0.5), -(0.5**0.5)])
    per_token = algorithm.objective.per_token_loss(Scored(ratios.log(), scored, rollout, 0, 3), Tally())
    assert per_token[scored].tolist() == pytest.approx(
        [-1.81019, -1.27279, 1.06066, 0.56569, 0.70711, 0.84853, 0.56569], abs=1e-5
    )
    assert reduce_tokens(per_token, scored, algorithm.objective.normalisation).item() == pytest.approx(
        0.0949543, rel=1e-5
    )
    assert reduce_tokens(per_token, scored, "sequence").item() == pytest.approx(
        -0.0601041, rel=1e-5
    )  # GRPO's: not DAPO's


def test_the_preset_has_dapos_settings():
    algorithm = dllm.build("algorithm", "dapo")
    objective = algorithm.objective
    assert (objective.clip_low, objective.clip_high, objective.beta, objective.normalisation) == (
        0.2,
        0.28,
        0.0,
        "token",
    )
    assert algorithm.reference is None and not objective.needs_reference
    assert (
        algorithm.dynamic_sampling
        and algorithm.max_rollout_tries == 10
        and list(algorithm.filters.filters) == ["drop_equal_groups"]
    )
    assert (algorithm.overlong.buffer, algorithm.overlong.penalty_factor) == (
        0.2,
        1.0,
    ) and not algorithm.overlong_filter
    assert (algorithm.group_size, algorithm.prompts_per_rollout, algorithm.temperature) == (16, 512, 1.0)
    assert algorithm.parts() == (
        "estimator trace, advantage group, objective ppo, filters drop_equal_groups, dynamic sampling (at most 10 "
        "draws), overlong buffer 0.2 (penalty 1)"
    )
    trainer = compose(["algorithm=dapo"]).trainer
    assert (trainer.lr, trainer.weight_decay, trainer.warmup_steps, trainer.max_grad_norm) == (1e-6, 0.1, 10, 1.0)


def stopping_sometimes(ids):
    """Logits of a fake model whose completion tokens are EOS with probability ~0.38 (else 'a'): with
    the seeds here, completions of 3, 8, 1, 4 and 3, 8, 8, 6 tokens (8: cut at the generation length)."""
    out = torch.full((*ids.shape, 100), -30.0)
    out[..., 70], out[..., 1] = 2.0, 1.5
    return out


def test_overlong_shaping_reaches_the_advantages_but_not_the_filters(scripted_model):
    reward = Scripted([[1, 1, 1, 1, 0, 1, 0, 1]])
    algorithm = RL(
        group_size=4, prompts_per_rollout=2, filters=DROP_EQUAL, overlong_buffer=4, overlong_penalty_factor=0.5
    )
    rollout, metrics, _ = drawn(algorithm, reward, model=scripted_model(stopping_sometimes).train())
    lengths = rollout.scored.sum(1)
    assert len(rollout) == 4, "group 0 scored 1, 1, 1, 1 by the task: dropped, whatever its lengths"
    # L = 8, buffer 4: -0.5 * (|y| - 4) / 4 past 4 tokens
    expected = [r - 0.5 * max(0, n - 4) / 4 for r, n in zip([0, 1, 0, 1], lengths.tolist())]
    assert rollout.rewards.tolist() == pytest.approx(expected) and len(set(lengths.tolist())) > 1
    assert metrics["reward"] == 0.75 and -0.5 <= metrics["overlong_penalty"] < 0  # the task's reward is logged


def test_overlong_filtering_drops_cut_completions_after_the_advantages(scripted_model):
    reward = Scripted([[0, 1, 2, 3, 4, 5, 6, 7]])
    algorithm = RL(group_size=4, prompts_per_rollout=2, overlong_filter=True)
    rollout, _, _ = drawn(algorithm, reward, model=scripted_model(stopping_sometimes).train())
    cut = torch.tensor(reward.truncated[0])
    assert 0 < int(cut.sum()) < 8, "the case needs both kinds of completions"
    z = torch.tensor([[-1.3416, -0.4472, 0.4472, 1.3416]] * 2).flatten()  # z-scores of 0..3 over whole groups
    assert rollout.rewards.tolist() == torch.arange(8.0)[~cut].tolist() and not rollout.truncated.any()
    assert rollout.advantages.tolist() == pytest.approx(z[~cut].tolist(), abs=1e-4)


@pytest.mark.parametrize("preset", ["tracerl", "diffu_grpo"])
def test_the_options_compose_with_other_algorithms_and_train(preset, tmp_path):
    overrides = [
        "experiment=addition_tiny", f"algorithm={preset}", "trainer.max_steps=2", "trainer.log_every=1",
        "trainer.batch_size=4", "task.num_eval=2", "algorithm.group_size=2", "algorithm.prompts_per_rollout=2",
        "algorithm.num_iterations=1", "+algorithm/filter@algorithm.filters.drop_equal_groups=drop_equal_groups",
        "algorithm.dynamic_sampling=true", "algorithm.overlong_buffer=0.25", "algorithm.overlong_filter=false",
        "algorithm.objective.clip_high=0.28", "algorithm.objective.normalisation=token", "reward.partial_credit=true",
    ]  # fmt: skip
    if preset == "tracerl":
        overrides.append("algorithm.filters.accuracy_band=null")
    dllm.train(compose(overrides), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    assert all(-1.0 <= r["overlong_penalty"] <= 0.0 and 1 <= r["rollout_tries"] <= 4 for r in steps)
    assert all(0 <= r["dropped_groups"] <= 2 * r["rollout_tries"] for r in steps)
