"""Every registered reward, task and algorithm, built from its config, keeps its contract."""

import json
import random
from pathlib import Path

import pytest
import torch

import dllm
from dllm.algorithms.base import LossOutput, TrainContext
from dllm.config import build_node, compose
from dllm.data.base import Example, Task

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


ALGORITHM_OPTIONS = {"sft": {}}  # RL presets at test size: 2 prompts x 2 completions, no group filter
RL_SIZE = {"group_size": 2, "prompts_per_rollout": 2, "filters": {"accuracy_band": None}}


@pytest.mark.parametrize("name", dllm.ALGORITHMS.names() + dllm.ALGORITHMS.presets())
def test_algorithm_contract(name, tiny_model, tokenizer):
    algorithm = dllm.build("algorithm", name, **ALGORITHM_OPTIONS.get(name, RL_SIZE))
    ctx = TrainContext(
        tiny_model,
        tokenizer,
        built("task", "addition"),
        dllm.build_sampler("llada", steps=8, block_length=8),
        CharacterMean(),
        2,
        random.Random(0),
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
        batch_size=4,
    )
    algorithm.start(ctx)
    batches = list(algorithm.micro_batches(ctx, 2))
    assert len(batches) == 2 and sum(b.share for b in batches) == pytest.approx(1.0)
    out = algorithm.loss(tiny_model, batches[0], ctx.generator)
    assert isinstance(out, LossOutput) and out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())
