"""The RL loop: every algorithm x every family x two samplers, and the loop's invariants."""

import json
import random

import pytest
import torch

import dllm
from dllm.algorithms.base import TrainContext
from dllm.algorithms.rl import RL
from dllm.errors import ConfigError
from dllm.rewards.base import Reward
from dllm.trainer import Components, Stage, Trainer, TrainerConfig
from tests.unit.algorithms.rl_helpers import Recorder, rl_presets, tiny

RL_PRESETS = rl_presets()  # not dpo, a preset of vrpo (docs/preference.md)
ALGORITHMS = ["rl", *RL_PRESETS]
SAMPLERS = {  # two samplers per family
    "llada_tiny": [("llada", {"steps": 8, "block_length": 4}), ("fast_dllm", {"block_length": 4, "threshold": 0.5})],
    "dream_tiny": [("dream", {}), ("diffusion", {"block_length": 4, "cache": "dual", "selection": "threshold"})],
    "sdar_tiny": [("sdar", {"denoising_steps": 2}), ("diffusion", {"cache": "block", "selection": "entropy_bounded"})],
}
SMALL_FILTERS = {"filters": {"accuracy_band": None}}  # no group filter (tracerl's band)
SMALL = {"group_size": 2, "prompts_per_rollout": 2, **SMALL_FILTERS}
# Presets whose rollout shape the small groups cannot hold (tree_rpo: 16 leaves, 4 per node) get one that fits.
SHAPES = {"tree_rpo": {"tree_branches": 2}}


class CharacterMean(Reward):
    """A reward that differs between any two completions of an untrained model: the mean
    character code, scaled to [0, 1]."""

    def __call__(self, prompts, completions, **fields):
        return [sum(map(ord, text)) / max(len(text), 1) / 127 for text in completions]


def components(model, sampler, algorithm, tokenizer):
    task = dllm.build("task", "addition", num_eval=4)
    return Components(model, tokenizer, task, sampler, CharacterMean(), algorithm)


def train(tmp_path, model, sampler, algorithm, tokenizer, steps=2, batch_size=4, grad_accum=2):
    config = TrainerConfig(max_steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=1e-3, warmup_steps=1,
                           log_every=1, device="cpu", eval_batch_size=4)  # fmt: skip
    trainer = Trainer(components(model, sampler, algorithm, tokenizer), [Stage("main", config, algorithm)], tmp_path, 0)
    trainer.run_stage()
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("family", sorted(SAMPLERS))
@pytest.mark.parametrize("sampler_index", [0, 1])
@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_trains_every_family_with_two_samplers(name, family, sampler_index, tokenizer, tmp_path):
    model = tiny(family).train()
    sampler_name, options = SAMPLERS[family][sampler_index]
    sampler = dllm.build_sampler(sampler_name, **options)
    algorithm = dllm.build("algorithm", name, **SMALL, **SHAPES.get(name, {}))
    if algorithm.rollout_block_length is not None and refuses(algorithm, sampler, model):
        # A preset that decodes rollouts in blocks of its own (justgrpo: one token, left to right) refuses
        # a sampler that cannot decode them, at start-up, before any rollout.
        with pytest.raises(ConfigError, match="block_length"):
            train(tmp_path, model, sampler, algorithm, tokenizer)
        return
    before = [p.detach().clone() for p in model.parameters()]
    records = train(tmp_path, model, sampler, algorithm, tokenizer)
    assert [r["step"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "parameters must change"


def refuses(algorithm, sampler, model) -> bool:
    try:
        algorithm.check_run(dllm.build("task", "addition"), sampler, model.block_size)
    except ConfigError:
        return True
    return False


def context(model, tokenizer, sampler, batch_size=4, micro=2):
    task = dllm.build("task", "addition")
    return TrainContext(model, tokenizer, task, sampler, CharacterMean(), micro, random.Random(0),
                        torch.Generator().manual_seed(0), torch.device("cpu"), batch_size)  # fmt: skip


@pytest.mark.parametrize("estimator", ["trace", "one_step", "coupled", "random_mask", "elbo"])
def test_the_first_update_sees_a_ratio_of_exactly_one(estimator, tokenizer):
    model = tiny("llada_tiny").train()
    algorithm = RL(estimator=dllm.build("estimator", estimator), num_iterations=2, **SMALL)
    ctx = context(model, tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    algorithm.start(ctx)
    for batch in algorithm.micro_batches(ctx, 2):
        log_probs, _ = algorithm.estimator.log_probs(model, batch.rollout, batch.rollout.plans[0])
        assert batch.iteration == 0
        assert torch.equal(log_probs, batch.rollout.old_log_probs[0])


def test_old_reference_and_current_passes_share_each_iterations_masks(tokenizer):
    recorder = Recorder(tiny("llada_tiny")).train()
    algorithm = dllm.build("algorithm", "diffu_grpo", num_iterations=2, **SMALL)  # beta 0.04: a reference
    ctx = context(recorder, tokenizer, dllm.build_sampler("llada", steps=8, block_length=8), batch_size=4, micro=4)
    algorithm.start(ctx)
    reference = algorithm.reference
    reference.calls.clear()
    recorder.calls.clear()
    before = torch.get_rng_state()
    batches = [list(algorithm.micro_batches(ctx, 1)) for _ in range(2)]  # both inner iterations
    assert torch.equal(torch.get_rng_state(), before), "masks come from the trainer's generator, not the global RNG"
    old = recorder.inputs[-2:]  # after the rollout's decoding: old passes of iterations 0 and 1
    assert len(reference.inputs) == 2
    for iteration, (batch,) in enumerate(batches):
        recorder.calls.clear()
        algorithm.loss(recorder, batch, ctx.generator)
        (current,) = recorder.inputs
        rows = batch.rollout.sequences.shape[0]
        assert rows == 4
        assert torch.equal(current, old[iteration]) and torch.equal(current, reference.inputs[iteration])
    assert not torch.equal(old[0], old[1]), "each inner iteration draws a fresh mask"


def test_leftover_rows_make_a_smaller_last_step(tokenizer):
    algorithm = RL(group_size=2, prompts_per_rollout=3)  # 6 rows, steps of 4 rows in micro-batches of 2
    ctx = context(tiny("llada_tiny").train(), tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    algorithm.start(ctx)
    first = list(algorithm.micro_batches(ctx, 2))
    second = list(algorithm.micro_batches(ctx, 2))
    assert [len(b.rollout) for b in first] == [2, 2] and [len(b.rollout) for b in second] == [2]
    assert sum(b.share for b in first) == pytest.approx(1.0) and second[0].share == pytest.approx(1.0)


class Broken(Reward):
    def __init__(self, how):
        self.how = how

    def __call__(self, prompts, completions, **fields):
        if self.how == "raise":
            raise RuntimeError("judge unreachable")
        if self.how == "nan":
            return [float("nan")] * len(completions)
        return [1.0]


@pytest.mark.parametrize("how", ["raise", "nan"])
def test_a_failing_reward_scores_zero_and_is_counted(how, tokenizer):
    algorithm = RL(**SMALL)
    ctx = context(tiny("llada_tiny").train(), tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    ctx.reward = Broken(how)
    algorithm.start(ctx)
    list(algorithm.micro_batches(ctx, 2))
    number, metrics = algorithm.trained_rollout()
    assert number == 1 and metrics["reward"] == 0.0 and metrics["reward_failures"] >= 1


def test_a_reward_with_the_wrong_count_is_refused(tokenizer):
    algorithm = RL(**SMALL)
    ctx = context(tiny("llada_tiny").train(), tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    ctx.reward = Broken("count")
    algorithm.start(ctx)
    with pytest.raises(dllm.DllmError, match="returned 1 scores? for 4 completions|1 score"):
        list(algorithm.micro_batches(ctx, 2))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"group_size": 1}, "group_size is 1: set algorithm.group_size >= 2"),
        ({"objective": "wd1"}, "objective wd1 weighs completions by wd1's softmax weights.*algorithm/advantage=wd1"),
        ({"advantage": "wd1"}, "objective ppo maximises advantages.*set algorithm/objective=wd1"),
        ({"filters": {"accuracy_band": 0.3}}, "algorithm.filters.accuracy_band must be a filter node"),
        ({"num_iterations": 0}, r"num_iterations \(0\) .* must be >= 1"),
    ],
)
def test_bad_settings_are_refused(options, message):
    parts = {kind: dllm.build(kind, v) if kind in ("advantage", "objective") else v for kind, v in options.items()}
    with pytest.raises(ConfigError, match=message):
        RL(**parts)


def test_a_value_preset_needs_a_model_with_a_value_head(tokenizer, scripted_model):
    algorithm = dllm.build("algorithm", "tracerl_value", **SMALL)
    ctx = context(scripted_model(lambda ids: torch.zeros(*ids.shape, 8)), tokenizer, None)
    with pytest.raises(ConfigError, match="has no value-model variant"):
        algorithm.start(ctx)


@pytest.mark.parametrize("name", ["tracerl_value", "wd1"])
def test_back_propagating_part_by_part_gives_the_gradient_of_the_whole_loss(name, tokenizer):
    model = tiny("sdar_tiny").train()
    algorithm = dllm.build("algorithm", name, **SMALL)
    ctx = context(model, tokenizer, dllm.build_sampler("sdar", denoising_steps=2))
    algorithm.start(ctx)
    (batch, *_) = list(algorithm.micro_batches(ctx, 2))
    whole = algorithm.loss(model, batch, ctx.generator)
    whole.loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    critic = getattr(algorithm.advantage, "critic", None)  # the value advantage's
    value_parameters = list(critic.model.parameters()) if critic else []
    value_expected = [p.grad.clone() for p in value_parameters]
    model.zero_grad()
    for p in value_parameters:
        p.grad = None
    parts = algorithm.loss_and_backward(model, batch, ctx.generator, scale=1.0)
    assert parts.loss.item() == pytest.approx(whole.loss.item(), rel=1e-5)
    for grad, p in zip(expected, model.parameters()):
        torch.testing.assert_close(p.grad, grad, atol=1e-6, rtol=1e-4)
    assert (critic is not None) == (name == "tracerl_value")
    for grad, p in zip(value_expected, value_parameters):
        torch.testing.assert_close(p.grad, grad, atol=1e-6, rtol=1e-4)


class FirstTokenCredit(Reward):
    """A step-level reward: 0.5 on token `position` of every completion, no outcome."""

    def __init__(self, position=1):
        self.position = position

    def __call__(self, prompts, completions, **fields):
        assert len(fields["token_offsets"]) == len(completions)
        return [[(self.position, 0.5)] for _ in completions]


def test_step_level_rewards_reach_the_value_advantages(tokenizer):
    algorithm = dllm.build("algorithm", "tracerl_value", **SMALL)
    ctx = context(tiny("llada_tiny").train(), tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    ctx.reward = FirstTokenCredit()
    algorithm.start(ctx)
    (batch, *_) = list(algorithm.micro_batches(ctx, 2))
    rollout = algorithm.rollout
    assert rollout.rewards.tolist() == [0.5] * 4 and (rollout.process_rewards[:, 1] == 0.5).all()
    # the value model learns group-normalised returns: every total is 0.5, so the group mean
    # (0.5) comes off the outcome on the last step and the std (0) leaves the scale at 1. A fresh
    # value model predicts 0: with gamma = lambda = 1 a token's advantage is the reward still to
    # come from its own step on — +0.5 up to token 1's step, and -0.5 at the last.
    step_of_token_1 = rollout.step_map[:, 1:2]
    earlier_or_same = rollout.step_map <= step_of_token_1
    assert torch.equal(rollout.advantages, torch.where(earlier_or_same, 0.0, -0.5) * rollout.scored)


def test_a_step_level_reward_outside_the_completion_is_refused(tokenizer):
    algorithm = RL(**SMALL)
    ctx = context(tiny("llada_tiny").train(), tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    ctx.reward = FirstTokenCredit(position=8)
    algorithm.start(ctx)
    with pytest.raises(dllm.DllmError, match=r"token position 8, outside the completion \(positions 0..7\)"):
        list(algorithm.micro_batches(ctx, 2))


class ShortAnswer(Reward):
    """1 for an empty answer, falling linearly to 0 at 8 characters: learnable from scratch."""

    def __call__(self, prompts, completions, **fields):
        return [max(0.0, 1.0 - len(text) / 8) for text in completions]


LEARNERS = [(name, "llada_tiny") for name in RL_PRESETS]
LEARNERS += [("tracerl", "sdar_tiny"), ("tracerl", "dream_tiny"), ("tree_rpo", "dream_tiny"), ("tree_rpo", "sdar_tiny")]


@pytest.mark.parametrize("name, family", LEARNERS)
def test_every_preset_raises_a_learnable_reward(name, family, tokenizer, tmp_path):
    """The loop ascends the reward: an untrained model learns to stop early within 16 rollouts."""
    torch.manual_seed(0)
    model = dllm.load_model(family).train()
    sampler_name, options = SAMPLERS[family][0]
    algorithm = dllm.build("algorithm", name, group_size=4, prompts_per_rollout=4, temperature=1.0, **SMALL_FILTERS,
                           **SHAPES.get(name, {}))  # fmt: skip
    rollouts = 16
    lr = 2e-3 / algorithm.num_iterations**0.5  # d1's and wd1's 12 passes per rollout take smaller steps
    config = TrainerConfig(max_steps=rollouts * algorithm.num_iterations, batch_size=16, lr=lr, weight_decay=0.0,
                           warmup_steps=0, min_lr_ratio=1.0, log_every=1, device="cpu", eval_batch_size=4)  # fmt: skip
    parts = Components(model, tokenizer, dllm.build("task", "addition", num_eval=4),
                       dllm.build_sampler(sampler_name, **options), ShortAnswer(), algorithm)  # fmt: skip
    Trainer(parts, [Stage("main", config, algorithm)], tmp_path, 0).run_stage()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in records if "loss" in r][:: algorithm.num_iterations]  # each rollout's first step
    assert len(rewards) == rollouts
    second_half = rewards[rollouts // 2 :]
    # From ~0.1 untrained, every preset's second half averages well above it; a sign error drives it to 0.
    assert sum(second_half) / len(second_half) > rewards[0] + 0.1, rewards


def test_the_rollout_sampler_is_rebuilt_through_its_constructor():
    from dllm.algorithms.rl_plan import rollout_sampler

    sampler = dllm.build_sampler("sdar", denoising_steps=2, confidence_threshold=0.7, eb_threshold=0.5)
    assert rollout_sampler(sampler, None) is sampler
    rollout = rollout_sampler(sampler, 1.0, 4)
    assert type(rollout) is type(sampler) and rollout is not sampler
    assert rollout.settings() == {**sampler.settings(), "temperature": 1.0, "block_length": 4}
    assert rollout.policy == sampler.policy  # settings kept inside the policy carry over
    assert (rollout.temperature, rollout.block_length) == (1.0, 4)
    # A copy validates like a sampler built from a config (copy.copy + setattr did not).
    with pytest.raises(ConfigError, match=r"block_length \(0\) must be positive"):
        rollout_sampler(sampler, None, 0)
    with pytest.raises(ConfigError, match=r"temperature \(-1.0\)"):
        rollout_sampler(dllm.build_sampler("fast_dllm"), -1.0)
    with pytest.raises(ConfigError, match="sampler DreamSampler has no block_length"):
        rollout_sampler(dllm.build_sampler("dream"), None, 4)


class Constant(Reward):
    """Every completion scores 0.5: every group's rewards are equal."""

    def __call__(self, prompts, completions, **fields):
        return [0.5] * len(completions)


@pytest.mark.parametrize("reward, seen, trained", [(CharacterMean(), 6, 6), (Constant(), 12, 6)])
def test_completions_seen_counts_every_try_and_trained_the_rows_kept(reward, seen, trained, tokenizer):
    """3 prompts x 2 completions a rollout. Equal rewards: drop_equal_groups drops every group, so
    each rollout is drawn twice (max_rollout_tries 2: 12 completions seen) and, with nothing kept,
    the last try's 6 are trained on; mixed rewards: one try, every row kept."""
    drop = {"drop_equal_groups": dllm.build("filter", "drop_equal_groups")}
    algorithm = RL(group_size=2, prompts_per_rollout=3, filters=drop, max_rollout_tries=2)
    ctx = context(tiny("llada_tiny").train(), tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    ctx.reward = reward
    algorithm.start(ctx)
    assert algorithm.counters() == {"completions_seen": 0, "completions_trained": 0}
    list(algorithm.micro_batches(ctx, 2))  # one rollout of 6 rows: 2 steps of 4 and 2 rows
    list(algorithm.micro_batches(ctx, 2))
    list(algorithm.micro_batches(ctx, 2))  # the second rollout
    assert algorithm.counters() == {"completions_seen": 2 * seen, "completions_trained": 2 * trained}
    resumed = RL(group_size=2, prompts_per_rollout=3, filters=drop, max_rollout_tries=2)
    resumed.start(ctx)
    resumed.load_state_dict(algorithm.state_dict())
    assert resumed.counters() == algorithm.counters()
