"""Run by tests/test_adding_components.py in a fresh interpreter, after it has written the
package that docs/adding_components.md describes (`my_dllm`) and declared it a plugin: use
every component the doc adds as a user would, through `dllm.build`, the configs and a
training run, and print what was measured as one JSON line.

    python -m tests.follow_adding_components RUN_DIR   # my_dllm and its entry points on sys.path
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import torch

import dllm
from dllm.config import build_node, build_reward, compose
from dllm.errors import ConfigError
from dllm.models.base import load_value_model
from dllm.registry import PLUGIN_FAILURES, registry
from dllm.rewards import score_batch
from dllm.run import plan
from tests.contracts.test_models import test_model_contract
from tests.contracts.test_samplers import test_sampler_contract, test_sampler_is_deterministic_at_temperature_zero
from tests.unit.models import family_checks

OVERRIDES = ["model=mini_tiny", "sampler=my_confident", "reward=my_keyword", "task=my_copy"]
RUN = [
    "trainer.max_steps=1",
    "trainer.batch_size=8",
    "trainer.log_every=1",
    "task.num_eval=4",
    "trainer.progress=false",
]


def configs() -> dict:
    """Every YAML the doc writes composes, validates and builds the component registered under its name."""
    cfg = compose(OVERRIDES)
    plan(cfg)  # validates every node and combination, builds every component but the model
    return {
        "model": type(build_node(cfg.model)).__name__,
        "sampler": dllm.SAMPLERS.name_of(build_node(cfg.sampler)),
        "reward": dllm.REWARDS.name_of(build_reward(cfg.reward)),
        "task": dllm.TASKS.name_of(build_node(cfg.task)),
    }


def model_family(tmp: Path) -> dict:
    torch.manual_seed(0)
    test_model_contract("mini_tiny", tmp / "contract")
    model = dllm.build("model", "mini_tiny").eval()
    family_checks.check_round_trips(model, tmp / "round_trip", "mini")  # dllm.load_model and AutoModel
    family_checks.check_prefix_cache_is_exact(model)
    family_checks.check_uncommitted_forward_leaves_the_cache(model)
    value = load_value_model("mini_tiny")
    values = value(torch.randint(4, 100, (2, 5))).values
    backbone = {key for key in value.state_dict() if not key.startswith("value_head.")}
    return {
        "class": type(model).__name__,
        "value_class": type(value).__name__,
        "value_shape": list(values.shape),
        "values_all_zero": bool((values == 0).all()),
        "value_backbone_is_the_policy's": backbone <= set(model.state_dict()),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def train(run_dir: Path) -> dict:
    """One SFT step of the new family on the new task, then the held-out evaluation with the new
    sampler and reward (the library's run, as dllm-train runs it)."""
    run_dir.mkdir(parents=True)
    metrics = dllm.train(compose([*OVERRIDES, *RUN]), run_dir)
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    trained = dllm.load_model(run_dir / "checkpoint")
    return {
        "step": first["step"],
        "loss": first["loss"],
        "grad_norm": first["grad_norm"],
        "eval_samples": metrics["eval/num_samples"],
        "checkpoint_class": type(trained).__name__,
    }


def sampler() -> dict:
    torch.manual_seed(0)
    model = dllm.load_model("mini_tiny").eval()
    prompts = dllm.load_tokenizer("mini_tiny")(["12+345=", "7+8="], padding=True, return_tensors="pt")
    ids, mask = prompts["input_ids"], prompts["attention_mask"]
    test_sampler_contract("my_confident", model, (ids, mask))
    test_sampler_is_deterministic_at_temperature_zero("my_confident", model, (ids, mask))
    out = dllm.build("sampler", "my_confident", per_step=3).generate(model, ids, mask, gen_length=8)
    try:
        dllm.build("sampler", "my_confident").check_gen_length(8, model_block_size=4)
        refusal = None
    except ConfigError as exc:
        refusal = str(exc)
    return {"nfe": out.nfe, "steps": sorted(set(out.step_map.flatten().tolist())), "block_model_refusal": refusal}


def reward() -> dict:
    keyword = dllm.build("reward", "my_keyword", word="7")
    weighted = dllm.build(
        "reward", "weighted_sum", terms={"my_keyword": {"weight": 0.5, "word": "7"}, "exact_match": 1}
    )
    scores = score_batch(weighted, ["p", "p"], ["77", "8"], {"answer": ["77", "9"], "truncated": [False, False]})
    return {"scores": keyword(["p"] * 3, ["a7", "b", "77"]), "weighted_total": scores.total, "terms": scores.terms}


def task() -> dict:
    copy = dllm.build("task", "my_copy")
    drawn = copy.sample(random.Random(0), 200)
    held_out = copy.eval_examples()
    return {
        "train_ending_in_7": sum(e.response.endswith("7") for e in drawn),
        "eval": len(held_out),
        "eval_ending_in_7": sum(e.response.endswith("7") for e in held_out),
        "eval_is_fixed": held_out == copy.eval_examples(),
        "first": [drawn[0].prompt, drawn[0].response, drawn[0].fields],
    }


def rl_parts(run_dir: Path) -> dict:
    """The doc's advantage and filter on hand-made rewards, then one RL step that uses both."""
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.2, 0.4, 0.3, 0.3]])
    centred = dllm.build("advantage", "my_centred", limit=0.5).of_groups(rewards)
    kept = dllm.build("filter", "my_spread", min_spread=0.5).keep(rewards)
    overrides = [
        "algorithm=rl", "algorithm/advantage=my_centred", "+algorithm/filter@algorithm.filters.my_spread=my_spread",
        "algorithm.temperature=null", "algorithm.group_size=2", "algorithm.prompts_per_rollout=4",
    ]  # fmt: skip
    cfg = compose([*OVERRIDES, *RUN, *overrides])
    parts = plan(cfg).stages[-1].algorithm.parts()
    run_dir.mkdir(parents=True)
    dllm.train(cfg, run_dir)
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return {"centred": centred.tolist(), "kept": kept.tolist(), "parts": parts, "step": first["step"],
            "loss": first["loss"], "kept_fraction": first["kept_fraction"]}  # fmt: skip


def main(run_dir: Path) -> None:
    torch.set_num_threads(1)
    report = {
        "plugin_failures": dict(PLUGIN_FAILURES),
        "registered": {
            "model": [n for n in dllm.MODELS.names() if n.startswith("mini")],
            "sampler": "my_confident" in dllm.SAMPLERS,
            "reward": "my_keyword" in dllm.REWARDS,
            "task": "my_copy" in dllm.TASKS,
            "advantage": "my_centred" in registry("advantage"),
            "filter": "my_spread" in registry("filter"),
        },
        "configs": configs(),
        "model": model_family(run_dir),
        "sampler": sampler(),
        "reward": reward(),
        "task": task(),
        "train": train(run_dir / "run"),
        "rl_parts": rl_parts(run_dir / "rl"),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
