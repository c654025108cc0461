"""Regression: each RL preset's logged losses and metrics on fixed rollouts, recorded once.

The numbers in `recorded_rl_losses.json` were written by the RL loop before it was split into
advantage, objective, filter and critic components (issue 16); any reshaping of the loop must
reproduce them. Re-recorded once for issue 17, when rollouts began drawing each row's noise from its
own generator (rows decode at their own pace, so a shared generator's draws would depend on the
batch): the rollouts changed, not the losses computed on them. Conditions: CPU, float32, the shipped
sampler defaults (EOS stopping on), ragged prompts (the addition task's), three optimizer steps of
two micro-batches each, weight decay 0 (so that an optimizer change does not move them). Issue 18's
presets were added with entries of their own, recorded then. Re-record only for an intended change
of the numbers: `DLLM_RECORD=1 pytest tests/unit/algorithms/test_rl_recorded.py -k NAME`.

Rollouts sample, and a draw that falls at a near-tie of the cumulative probabilities goes one way
or the other with the last bit of the softmax, which the CPU's vector kernels (AVX2, AVX-512) round
differently. The Dream cases meet one within three steps: `recorded_rl_losses.<capability>.json`
(`torch.backends.cpu.get_cpu_capability()`) holds the entries that differ on that kind of CPU,
read before the shared file's. Only the rollouts differ; the code recorded is the same
(`DLLM_RECORD=cpu` writes that file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import dllm
from dllm.rewards.base import Reward
from dllm.trainer import Components, Stage, Trainer, TrainerConfig
from tests.unit.algorithms.rl_helpers import tiny

RECORDED = Path(__file__).with_name("recorded_rl_losses.json")
RECORDED_ON_THIS_CPU = RECORDED.with_suffix(f".{torch.backends.cpu.get_cpu_capability()}.json")
CASES = {  # (preset, family, sampler, sampler options, preset overrides)
    "rl-llada": ("rl", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {}),
    "tracerl-sdar": ("tracerl", "sdar_tiny", "sdar", {"denoising_steps": 2}, {}),
    "tracerl-llada": ("tracerl", "llada_tiny", "fast_dllm", {"block_length": 4, "threshold": 0.5}, {}),
    "tracerl_value-sdar": ("tracerl_value", "sdar_tiny", "sdar", {"denoising_steps": 2}, {}),
    "tracerl_value-llada": ("tracerl_value", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {}),
    "diffu_grpo-llada": ("diffu_grpo", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {}),
    "diffu_grpo-dream": ("diffu_grpo", "dream_tiny", "dream", {}, {}),
    "coupled_grpo-dream": ("coupled_grpo", "dream_tiny", "dream", {}, {}),
    "coupled_grpo-sdar": ("coupled_grpo", "sdar_tiny", "sdar", {"denoising_steps": 2}, {}),
    "wd1-llada": ("wd1", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {}),
    # issue 18's presets, recorded when they were added
    "espo-llada": ("espo", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {"num_iterations": 2}),
    "justgrpo-sdar": ("justgrpo", "sdar_tiny", "sdar", {"denoising_steps": 2}, {}),
    "spg-dream": ("spg", "dream_tiny", "dream", {}, {}),
    "bgpo-sdar": ("bgpo", "sdar_tiny", "sdar", {"denoising_steps": 2}, {}),
    "dapo-llada": ("dapo", "llada_tiny", "fast_dllm", {"block_length": 4, "threshold": 0.5}, {}),
    "mdpo-llada": ("mdpo", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {}),
    "cj_grpo-llada": ("cj_grpo", "llada_tiny", "diffusion", {"block_length": 4, "eos_min_gamma": 0.01}, {}),
    "igpo-llada": ("igpo", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {}),
    "ebpo-llada": ("ebpo", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {}),
    "unigrpo-dream": ("unigrpo", "dream_tiny", "dream", {}, {"num_iterations": 2}),
    "tree_rpo-llada": (
        "tree_rpo", "llada_tiny", "llada", {"steps": 8, "block_length": 4}, {"tree_branches": 2, "num_iterations": 2}
    ),
    "rl-options-llada": (
        "rl", "llada_tiny", "llada", {"steps": 8, "block_length": 4},
        {"objective": {"_target_": "ppo", "beta": 0.05, "kl_estimator": "k2", "normalisation": "sequence",
                       "clip_low": 0.1, "clip_high": 0.3, "log_ratio_clamp": 2.0},
         "advantage": {"_target_": "loo"}, "filters": {"drop_equal_groups": {}}, "num_iterations": 2},
    ),
    "rl-random_mask-sdar": (
        "rl", "sdar_tiny", "sdar", {"denoising_steps": 2},
        {"estimator": {"_target_": "random_mask"}, "advantage": {"_target_": "mean"},
         "objective": {"_target_": "ppo", "beta": 0.02, "kl_estimator": "k1"}},
    ),
}  # fmt: skip


class ThirdsOfCharacterSum(Reward):
    """0, 0.5 or 1 by the completion's character sum mod 3: mixed groups, some fully correct (so
    accuracy bands and equal-group filters have something to keep and to drop)."""

    def __call__(self, prompts, completions, **fields):
        return [(sum(map(ord, text)) % 3) / 2 for text in completions]


def run_case(name: str, tokenizer, tmp_path, max_batch_rows: int | None = 64) -> list[dict[str, float]]:
    preset, family, sampler_name, sampler_options, overrides = CASES[name]
    overrides = dict(overrides)
    for kind in ("estimator", "advantage", "objective"):  # the `rl` cases pass built parts (issue 16)
        if kind in overrides:
            options = dict(overrides[kind])
            overrides[kind] = dllm.build(kind, options.pop("_target_"), **options)
    if "filters" in overrides:
        overrides["filters"] = {name: dllm.build("filter", name, **o) for name, o in overrides["filters"].items()}
    if preset in ("diffu_grpo", "wd1", "cj_grpo"):
        overrides.setdefault("num_iterations", 2)  # their 12 passes per rollout, cut to keep the test short
    algorithm = dllm.build("algorithm", preset, group_size=4, prompts_per_rollout=2, **overrides)
    model = tiny(family).train()
    config = TrainerConfig(max_steps=3, batch_size=4, grad_accum=2, lr=1e-3, weight_decay=0.0, warmup_steps=0,
                           min_lr_ratio=1.0, log_every=1, device="cpu", eval_batch_size=4,
                           max_batch_rows=max_batch_rows)  # fmt: skip
    task = dllm.build("task", "addition", num_eval=4)
    sampler = dllm.build_sampler(sampler_name, **sampler_options)
    parts = Components(model, tokenizer, task, sampler, ThirdsOfCharacterSum(), algorithm)
    Trainer(parts, [Stage("main", config, algorithm)], tmp_path, seed=0).run_stage()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    timing = ("step_time", "elapsed", "rollout_time", "tokens_per_s", "reward_time", "decode_time")
    return [{k: v for k, v in r.items() if isinstance(v, (int, float)) and k not in timing} for r in records]


def recorded(name: str) -> list[dict]:
    """The case's recorded numbers: this kind of CPU's entry where it has one, else the shared one."""
    on_this_cpu = json.loads(RECORDED_ON_THIS_CPU.read_text()) if RECORDED_ON_THIS_CPU.exists() else {}
    return on_this_cpu.get(name) or json.loads(RECORDED.read_text())[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_preset_logs_its_recorded_losses(name, tokenizer, tmp_path):
    torch.set_num_threads(1)  # reductions in one order, as recorded
    got = run_case(name, tokenizer, tmp_path)
    if os.environ.get("DLLM_RECORD"):
        path = RECORDED_ON_THIS_CPU if os.environ["DLLM_RECORD"] == "cpu" else RECORDED
        entries = json.loads(path.read_text()) if path.exists() else {}
        entries[name] = got
        path.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
        return
    expected = recorded(name)
    assert len(got) == len(expected) == 3
    for step, (mine, theirs) in enumerate(zip(got, expected), start=1):
        assert sorted(mine) == sorted(theirs), f"step {step}: logged keys differ"
        for key, value in theirs.items():
            assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-7), f"step {step}: {key}"


@pytest.mark.parametrize("name", ["tracerl-sdar", "tracerl-llada", "rl-llada"])
def test_a_rollout_decoded_three_rows_at_a_time_logs_the_same_losses(name, tokenizer, tmp_path):
    """Continuous batching (3 rows decoding at once, a finished row's slot taking the next of the 8)
    decodes every row as it decodes alone, so training on its rollouts logs the recorded numbers."""
    torch.set_num_threads(1)
    got = run_case(name, tokenizer, tmp_path, max_batch_rows=3)
    expected = recorded(name)
    for step, (mine, theirs) in enumerate(zip(got, expected, strict=True), start=1):
        assert mine.pop("rollout_nfe") > theirs.pop("rollout_nfe")  # forwards of the batch: more, each smaller
        for key, value in theirs.items():
            assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-7), f"step {step}: {key}"
