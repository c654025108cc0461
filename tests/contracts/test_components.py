"""Every registered reward, task and algorithm, built from its config, keeps its contract."""

import json
import random
from pathlib import Path

import pytest
import torch

import dllm
from dllm.algorithms.advantages import ADVANTAGES
from dllm.algorithms.base import LossOutput, TrainContext
from dllm.algorithms.estimators import ESTIMATORS
from dllm.algorithms.filters import FILTERS, Filters
from dllm.algorithms.objectives import OBJECTIVES
from dllm.algorithms.rl import RL
from dllm.algorithms.vrpo import VRPO
from dllm.config import build_node, compose
from dllm.data.base import Example, Task
from dllm.errors import ConfigError

REWARD_CASES = Path(__file__).parent / "reward_cases"


def built(group, name):
    return build_node(compose([f"{group}={name}"])[group])


@pytest.mark.parametrize("name", dllm.TASKS.names())
def test_task_contract(name):
    task = built("task", name)
    assert isinstance(task, Task) and task.gen_length > 0
    examples = task.sample(random.Random(0), 4)
    assert all(isinstance(e, Example) and e.prompt for e in examples)
    held_out = task.eval_examples()
    assert held_out and [e.prompt for e in held_out] == [e.prompt for e in task.eval_examples()]


@pytest.mark.parametrize("name", dllm.REWARDS.names())
def test_reward_contract(name):
    case_file = REWARD_CASES / f"{name}.json"
    assert case_file.is_file(), f"reward {name!r} has no contract case: add {case_file}"
    case = json.loads(case_file.read_text())
    reward = dllm.build("reward", name, **case.get("options", {}))
    scores = reward(case["prompts"], case["completions"], **case["fields"])
    if all(isinstance(s, float) for s in scores):
        assert scores == pytest.approx(case["expected"])
    else:  # a step-level reward: (token_position, value) pairs per completion
        assert json.loads(json.dumps(scores)) == case["expected"]
    assert reward([], [], **{key: [] for key in case["fields"]}) == []


class CharacterMean(dllm.rewards.Reward):
    """Differs between any two completions of an untrained model, so RL has a gradient."""

    def __call__(self, prompts, completions, **fields):
        return [sum(map(ord, text)) / max(len(text), 1) / 127 for text in completions]


# RL presets at test size: 2 prompts x 2 completions, no group filter; preference algorithms at their own
RL_SIZE = {"group_size": 2, "prompts_per_rollout": 2, "filters": {"accuracy_band": None}}
ALGORITHM_OPTIONS = {"sft": {}, "vrpo": {"budget": 2}, "dpo": {}, "tree_rpo": {**RL_SIZE, "tree_branches": 2}}


def rl_context(model, tokenizer) -> TrainContext:
    """Rollouts of 2 prompts x 2 completions by the llada sampler, optimizer steps of 4 rows in 2 micro-batches."""
    sampler = dllm.build_sampler("llada", steps=8, block_length=4)  # a tree branches at a block's end
    task, generator = built("task", "addition"), torch.Generator().manual_seed(0)
    return TrainContext(model, tokenizer, task, sampler, CharacterMean(), 2, random.Random(0), generator,
                        torch.device("cpu"), batch_size=4)  # fmt: skip


@pytest.mark.parametrize("name", dllm.ALGORITHMS.names() + dllm.ALGORITHMS.presets())
def test_algorithm_contract(name, tiny_model, tokenizer):
    algorithm = dllm.build("algorithm", name, **ALGORITHM_OPTIONS.get(name, RL_SIZE))
    ctx = rl_context(tiny_model, tokenizer)
    if isinstance(algorithm, VRPO):  # it trains on preference pairs, which the addition task has none of
        ctx.task = built("task", "preference")
    algorithm.start(ctx)
    batches = list(algorithm.micro_batches(ctx, 2))
    assert len(batches) == 2 and sum(b.share for b in batches) == pytest.approx(1.0)
    out = algorithm.loss(tiny_model, batches[0], ctx.generator)
    assert isinstance(out, LossOutput) and out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())


def objective_for(advantage) -> str:
    """An objective that takes `advantage`'s values (wd1's weights go with the wd1 objective)."""
    return advantage.weights_for or "ppo"


@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_advantage_contract(name, tiny_model, tokenizer):
    """Every advantage, built from its config, sets finite advantages per row or per token of a
    real rollout, and trains in the loop with whatever losses and hooks it adds."""
    advantage = built_part("algorithm/advantage", name)
    objective = dllm.build("objective", objective_for(advantage))
    tree = {"tree_branches": 2} if advantage.needs_branches else {}  # credit over a tree rollout's steps
    algorithm = RL(advantage=advantage, objective=objective, **RL_SIZE, **tree)
    ctx = rl_context(tiny_model.train(), tokenizer)
    algorithm.start(ctx)
    batches = list(algorithm.micro_batches(ctx, 2))
    rollout = algorithm.rollout
    assert rollout.advantages.shape in {(len(rollout),), tuple(rollout.step_map.shape)}
    assert torch.isfinite(rollout.advantages).all()
    out = algorithm.loss(tiny_model, batches[0], ctx.generator)
    out.loss.backward()
    assert torch.isfinite(out.loss) and any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters()
    )
    assert isinstance(algorithm.after_step(ctx), dict) and isinstance(algorithm.state_dict()["advantage"], dict)


def accepted_estimator(objective):
    """The loop's default estimator (`trace`) if `objective` reads it, else the first registered one it does."""
    for name in ["trace", *ESTIMATORS.names()]:
        estimator = dllm.build("estimator", name)
        try:
            objective.check_estimator(estimator)
        except ConfigError:
            continue
        return estimator
    pytest.fail(f"{type(objective).__name__} reads no registered estimator")


def accepted_advantage(objective):
    """The first registered advantage `objective` takes (each objective must take one)."""
    for name in ADVANTAGES.names():
        advantage = dllm.build("advantage", name)
        try:
            objective.check_advantage(advantage)
        except ConfigError:
            continue
        return advantage
    pytest.fail(f"{type(objective).__name__} takes no registered advantage")


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_objective_contract(name, tiny_model, tokenizer):
    """Every objective, built from its config, declares its inputs and gives a finite per-token loss
    whose gradient reaches the policy; one that takes only some advantages says so."""
    objective = built_part("algorithm/objective", name)
    advantage, estimator = accepted_advantage(objective), accepted_estimator(objective)
    assert objective.normalisation in ("token", "sequence") and isinstance(objective.needs_reference, bool)
    assert isinstance(objective.needs_old_log_probs(2, 2), bool)
    algorithm = RL(estimator=estimator, advantage=advantage, objective=objective, **RL_SIZE)
    ctx = rl_context(tiny_model.train(), tokenizer)
    algorithm.start(ctx)
    out = algorithm.loss(tiny_model, next(iter(algorithm.micro_batches(ctx, 2))), ctx.generator)
    out.loss.backward()
    assert torch.isfinite(out.loss) and any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters()
    )


@pytest.mark.parametrize("name", FILTERS.names())
def test_filter_contract(name):
    """Every filter, built from its config, keeps or drops whole groups: [groups] bool."""
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    keep = built_part("algorithm/filter", name).keep(rewards)
    assert keep.dtype == torch.bool and keep.shape == (4,)
    assert Filters(**{name: built_part("algorithm/filter", name)}).keep(rewards.flatten(), 3).shape == (12,)


def built_part(group: str, name: str):
    """The RL part `name` of `group` built from its YAML, inside the `rl` loop's config."""
    if group == "algorithm/filter":
        return build_node(
            compose(["algorithm=rl", f"+{group}@algorithm.filters.{name}={name}"]).algorithm.filters[name]
        )
    partner = {"algorithm/advantage": "algorithm/objective", "algorithm/objective": "algorithm/advantage"}[group]
    companions = [f"{partner}=wd1"] if name == "wd1" else []  # wd1's weights and its objective go together
    cfg = compose(["algorithm=rl", f"{group}={name}", *companions])
    return build_node(cfg.algorithm[group.split("/")[1]])
