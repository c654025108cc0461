import random

import pytest

import dllm
from dllm.algorithms.curriculum import Curriculum, Schedule
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.data.base import Example, Task
from dllm.errors import ConfigError
from dllm.samplers.sdar import SDARSampler
from tests.unit.algorithms.rl_helpers import Recorder, block_states_match, sampled_rollout, tiny


def test_schedule_by_hand():
    schedule = Schedule({0: 4, 60: 8}, "x")
    assert [schedule(s) for s in (0, 59, 60, 500)] == [4, 4, 8, 8] and Schedule(6, "x")(10) == 6


@pytest.mark.parametrize("values", [{5: 4, 0: 8}, {-1: 4}, {2: 4}, {0: 4, 4: 0}])
def test_bad_schedules_are_refused(values):
    with pytest.raises(ConfigError, match="must map increasing, non-negative steps starting at 0|must be positive"):
        Schedule(values, "algorithm.rollout_block_length")


class Levels(Task):
    gen_length = 4

    def train_example(self, rng):
        level = rng.randint(1, 3)
        return Example(f"{level}:{rng.random():.6f}", "x", {"difficulty": level})

    def eval_examples(self):
        return []


def test_pass_rates_weigh_and_skip_prompts():
    curriculum = Curriculum(order="pass_rate", pool_size=4, ema=0.5, skip_above=1.0, skip_below=0.0, min_visits=2)
    curriculum.start(Levels())
    curriculum.update([0, 0, 1, 2], [1.0, 1.0, 0.0, 0.5])  # prompt 0 solved twice, 1 never (once), 2 half
    assert curriculum.pass_rate == [1.0, 0.0, 0.5, 0.5] and curriculum.visits == [2, 1, 1, 0]
    curriculum.update([2], [1.0])  # the ema: 0.5 * 0.5 + 0.5 * 1.0
    assert curriculum.pass_rate[2] == 0.75
    drawn = curriculum.draw(random.Random(0), 400, step=0)
    assert 0 not in drawn  # always solved after two visits: skipped
    assert 1 in drawn  # never solved but seen once: still drawn, rarely (p(1 - p) ~ 0)
    assert drawn.count(3) > drawn.count(2) > drawn.count(1)  # 0.25 > 0.1875 > 0.001
    assert curriculum.metrics()["curriculum/skipped"] == 1.0


def test_difficulty_follows_its_schedule():
    curriculum = Curriculum(order="difficulty", pool_size=30, difficulty_schedule={0: 1, 10: 3})
    curriculum.start(Levels())
    early = {curriculum.pool[i].fields["difficulty"] for i in curriculum.draw(random.Random(0), 50, step=0)}
    late = {curriculum.pool[i].fields["difficulty"] for i in curriculum.draw(random.Random(0), 200, step=10)}
    assert early == {1} and late == {1, 2, 3}
    with pytest.raises(ConfigError, match="difficulty_field='level' is not a field"):
        Curriculum(order="difficulty", difficulty_field="level", difficulty_schedule={0: 1}).start(Levels())


def test_trace_replays_a_rollout_decoded_in_another_block_size(tokenizer):
    """Block-size adaptation: a block-4 model decoding blocks of 8; the replayed states are the
    sampler's (recorded without a cache: each forward is x[:, :end] with the block in its state)."""
    recorder = Recorder(tiny("sdar_tiny"))
    sampler = SDARSampler(block_length=8, denoising_steps=4, temperature=1.0, use_cache=False, stop_at_eos=False)
    rollout = sampled_rollout(recorder, sampler, tokenizer, prompts=("12+345=", "7+8=", "1+2=3+4=5"), gen_length=16)
    assert rollout.block_size == 8
    # prompts of 7, 4 and 9 tokens: blocks of 8 from each row's position 0
    assert block_states_match(recorder, rollout, TraceEstimator().states(rollout)) >= 3 * 2 * 4


def test_the_rollout_block_length_follows_its_schedule(tokenizer):
    from tests.unit.algorithms.test_rl import SMALL, context

    algorithm = dllm.build("algorithm", "rl", rollout_block_length={0: 4, 1: 8}, **SMALL)
    ctx = context(tiny("sdar_tiny").train(), tokenizer, dllm.build_sampler("sdar", denoising_steps=2))
    algorithm.start(ctx)
    sizes = []
    for step in range(2):
        ctx.step = step
        list(algorithm.micro_batches(ctx, 2))
        sizes.append(algorithm.rollout.block_size)
        algorithm.queue.clear()  # a new rollout every step
    assert sizes == [4, 8]


def test_a_rollout_block_length_that_does_not_divide_the_generation_length_is_refused():
    from dllm.config import compose
    from dllm.run import plan

    cfg = compose(["model=sdar_tiny", "sampler=sdar", "algorithm=rl", "algorithm.rollout_block_length={0: 4, 10: 3}"])
    message = r"rollout block length 3 \(algorithm.rollout_block_length\) with gen_length 8"
    with pytest.raises(ConfigError, match=message):
        plan(cfg)
