"""EBPO's shrunk baseline (arXiv 2602.05165) on successive rollouts worked by hand, its prior across
processes and through a checkpoint."""

import math
from types import SimpleNamespace

import pytest
import torch

import dllm
from dllm.algorithms.advantages.ebpo import Running
from dllm.algorithms.rollout import Rollout
from dllm.distributed import Collective
from dllm.errors import ConfigError

G = 4
ROLLOUTS = [  # two prompts x 4 completions each
    [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # a mixed group and an all-wrong one
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0],  # an all-right group and a mixed one
    [0.0] * 8,  # every group all wrong: GRPO's advantages are all 0
]
ONE_PROCESS = SimpleNamespace(collective=Collective())


def advantages(advantage, rewards, ctx=ONE_PROCESS) -> list[float]:
    rollout = Rollout.__new__(Rollout)  # only the rewards are read
    rollout.rewards = torch.tensor(rewards)
    advantage.compute(rollout, G, ctx)
    return rollout.advantages.tolist()


def seen(ebpo) -> tuple:
    """The global prior: count, mean and sample variance of every reward seen."""
    return ebpo.rewards.count, ebpo.rewards.mean, ebpo.rewards.variance


def test_three_rollouts_by_hand():
    ebpo = dllm.build("advantage", "ebpo")
    # Rollout 1. Every reward seen: n 8, mu 1/4, sample variance (2 (3/4)^2 + 6 (1/4)^2) / 7 = 3/14.
    # Group sample variances 1/3 and 0: within sigma2 = 1/6; between tau2 = 3/14 - 1/6 = 1/21.
    # S = (1/6 / 4) / (1/24 + 1/21) = 7/15. Baselines: 8/15 1/2 + 7/15 1/4 = 23/60; 8/15 0 + 7/60 = 7/60.
    got = advantages(ebpo, ROLLOUTS[0])
    std = math.sqrt(3 / 14)
    assert got == pytest.approx([37 / 60 / std, -23 / 60 / std] * 2 + [-7 / 60 / std] * 4)
    assert got[4] == pytest.approx(-0.2520288)  # the all-wrong group is pushed down: GRPO gives it 0
    assert seen(ebpo) == (8, pytest.approx(1 / 4), pytest.approx(3 / 14))
    assert (ebpo.within.count, ebpo.within.mean) == (2, pytest.approx(1 / 6))
    assert ebpo.shrinkage(G) == pytest.approx(7 / 15)

    # Rollout 2. n 16, mu 7/16, variance (7 (9/16)^2 + 9 (7/16)^2) / 15 = 21/80; group variances 0 and
    # 1/4 join 1/3 and 0: sigma2 = 7/48, tau2 = 21/80 - 7/48 = 7/60, S = (7/192) / (7/192 + 7/60) = 5/21.
    # Baselines: 16/21 1 + 5/21 7/16 = 97/112; 16/21 1/4 + 5/21 7/16 = 33/112.
    got = advantages(ebpo, ROLLOUTS[1])
    std = math.sqrt(21 / 80)
    assert got == pytest.approx([15 / 112 / std] * 4 + [79 / 112 / std] + [-33 / 112 / std] * 3)
    assert seen(ebpo) == (16, pytest.approx(7 / 16), pytest.approx(21 / 80))
    assert (ebpo.within.count, ebpo.within.mean) == (4, pytest.approx(7 / 48))
    assert ebpo.shrinkage(G) == pytest.approx(5 / 21)

    # Rollout 3, all zeros. n 24, mu 7/24, variance (7 (17/24)^2 + 17 (7/24)^2) / 23 = 119/552; sigma2 =
    # (7/12) / 6 = 7/72, tau2 = 119/552 - 7/72 = 49/414, S = (7/288) / (7/288 + 49/414) = 23/135.
    # Baseline 23/135 7/24 = 161/3240 in both groups: each completion gets -161/3240 / std.
    got = advantages(ebpo, ROLLOUTS[2])
    std = math.sqrt(119 / 552)
    assert got == pytest.approx([-161 / 3240 / std] * 8)
    assert got[0] == pytest.approx(-0.1070230)
    assert seen(ebpo) == (24, pytest.approx(7 / 24), pytest.approx(119 / 552))
    assert (ebpo.within.count, ebpo.within.mean) == (6, pytest.approx(7 / 72))
    assert ebpo.shrinkage(G) == pytest.approx(23 / 135)


def test_scale_none_leaves_the_centred_rewards():
    assert advantages(dllm.build("advantage", "ebpo", scale="none"), ROLLOUTS[0]) == pytest.approx(
        [37 / 60, -23 / 60] * 2 + [-7 / 60] * 4
    )


def test_nothing_varied_yet_gives_zero():
    ebpo = dllm.build("advantage", "ebpo")
    assert advantages(ebpo, [0.0] * 8) == [0.0] * 8  # no prior worth using: no signal, no division by 0
    assert ebpo.shrinkage(G) == 0.0


def test_the_running_statistics_are_welfords():
    stats, values = Running(), torch.tensor([0.5, 2.0, -1.0, 3.0, 0.25, 7.0, 1.5])
    for part in values.split([3, 0, 1, 3]):
        stats.add(part)
    assert (stats.count, stats.mean) == (7, pytest.approx(float(values.double().mean())))
    assert stats.variance == pytest.approx(float(values.double().var()))


def test_a_resumed_run_continues_with_the_same_prior(tmp_path):
    ebpo = dllm.build("advantage", "ebpo")
    for rewards in ROLLOUTS[:2]:
        advantages(ebpo, rewards)
    torch.save(ebpo.state_dict(), tmp_path / "state.pt")
    resumed = dllm.build("advantage", "ebpo")
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    expected = advantages(ebpo, ROLLOUTS[2])
    assert advantages(resumed, ROLLOUTS[2]) == expected
    assert advantages(dllm.build("advantage", "ebpo"), ROLLOUTS[2]) != expected  # without the prior: all 0
    assert resumed.state_dict() == ebpo.state_dict()


def test_a_checkpoint_without_a_prior_leaves_it_empty():
    ebpo = dllm.build("advantage", "ebpo")
    ebpo.load_state_dict({})
    empty = {"count": 0, "mean": 0.0, "m2": 0.0}
    assert ebpo.state_dict() == {"rewards": empty, "within": empty}


class TwoProcesses(Collective):
    """Process `rank` of two, whose partner holds `other`: `cat` joins them in rank order."""

    def __init__(self, rank: int, other: torch.Tensor) -> None:
        super().__init__(rank, 2)
        self.other = other

    def cat(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat([tensor, self.other] if self.rank == 0 else [self.other, tensor])


def test_every_process_holds_the_prior_of_all_rows():
    whole = advantages(dllm.build("advantage", "ebpo"), ROLLOUTS[0])
    first, second = torch.tensor(ROLLOUTS[0]).split(G)
    ranks = [dllm.build("advantage", "ebpo") for _ in range(2)]
    got = advantages(ranks[0], first.tolist(), SimpleNamespace(collective=TwoProcesses(0, second)))
    got += advantages(ranks[1], second.tolist(), SimpleNamespace(collective=TwoProcesses(1, first)))
    assert got == pytest.approx(whole)
    assert ranks[0].state_dict() == ranks[1].state_dict()


def test_bad_options_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^algorithm.advantage.scale='std': choose global .* or none .*\)$"):
        dllm.build("advantage", "ebpo", scale="std")
    with pytest.raises(ConfigError, match="advantage=ebpo .* group_size is 1: set algorithm.group_size >= 2"):
        dllm.build("advantage", "ebpo").check(1)


def test_the_preset_is_grpo_with_the_ebpo_advantage():
    from dllm.algorithms.advantages.ebpo import EBPOAdvantage
    from dllm.algorithms.estimators.trace import TraceEstimator
    from dllm.algorithms.objectives.ppo import PPO

    algorithm = dllm.build("algorithm", "ebpo")
    assert type(algorithm.estimator) is TraceEstimator and type(algorithm.objective) is PPO
    assert type(algorithm.advantage) is EBPOAdvantage and algorithm.advantage.scale == "global"
    assert (algorithm.objective.clip_low, algorithm.objective.clip_high, algorithm.objective.beta) == (0.2, 0.2, 0.0)


def test_the_loop_checkpoints_the_prior(tokenizer, tmp_path):
    """Through the RL loop's own state (what the trainer writes into a checkpoint): a resumed run
    holds the prior of every reward drawn before."""
    from tests.unit.algorithms.rl_helpers import tiny
    from tests.unit.algorithms.test_rl import SMALL, context

    ctx = context(tiny("llada_tiny").train(), tokenizer, dllm.build_sampler("llada", steps=8, block_length=8))
    algorithm = dllm.build("algorithm", "ebpo", **SMALL)
    algorithm.start(ctx)
    next(iter(algorithm.micro_batches(ctx, 2)))  # draws a rollout: 2 prompts x 2 completions
    assert algorithm.advantage.rewards.count == 4
    assert algorithm.advantage.rewards.mean == pytest.approx(float(algorithm.rollout.rewards.double().mean()))
    torch.save(algorithm.state_dict(), tmp_path / "state.pt")
    resumed = dllm.build("algorithm", "ebpo", **SMALL)
    resumed.start(ctx)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    assert resumed.advantage.state_dict() == algorithm.advantage.state_dict()
