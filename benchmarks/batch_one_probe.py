"""Batch-1 decoding cost of every sampler preset on the confident model of `batch_scaling_probe`:
tokens per second of CPU time, and torch operations dispatched per forward outside the model
(the decoding loop's own work: a count that no load on the machine changes).

`python benchmarks/batch_one_probe.py TREE [TREE ...] [--rounds N]` runs each source tree (the
`dllm` package of each, e.g. from `git archive <commit> dllm`) in its own process, the trees
alternated `N` times (default 3), and prints one markdown row per case: the best of the rounds'
throughputs (CPU time, one thread, 4 prompts x 256 tokens, EOS stopping off, best of 5 each) and
the operations per forward with EOS stopping on (the shipped default), for each tree.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import batch_scaling_probe as probe  # noqa: E402  (the model, prompts and cases shared with it)

GEN_LENGTH = 256
PROMPTS = 4


class CountOps(TorchDispatchMode):
    """Counts the aten operations dispatched while `inside` is not set."""

    def __init__(self) -> None:
        super().__init__()
        self.outside, self.inside = 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.outside += not self.inside
        return func(*args, **(kwargs or {}))


def ops_per_forward(model, sampler_name: str, options: dict, ids, mask) -> float:
    sampler = probe.build_sampler(sampler_name, options, GEN_LENGTH).replace(stop_at_eos=True)
    counter, forward = CountOps(), type(model).forward

    def counted(self, *args, **kwargs):
        counter.inside = True
        try:
            return forward(self, *args, **kwargs)
        finally:
            counter.inside = False

    type(model).forward = counted
    try:
        with counter:
            out = sampler.generate(model, ids[:1], mask[:1], GEN_LENGTH)
    finally:
        type(model).forward = forward
    return counter.outside / out.nfe


def measure() -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    models = {name: probe.confident_model(name) for name in probe.TINY}
    ids, mask = probe.ragged_prompts(PROMPTS)
    results = {}
    for label, (model_name, sampler_name, options) in probe.CASES.items():
        model, sampler = models[model_name], probe.build_sampler(sampler_name, options, GEN_LENGTH)
        sampler.generate(model, ids[:1], mask[:1], GEN_LENGTH)  # warm-up
        best = float("inf")
        for _ in range(5):
            begin = time.process_time()
            for row in range(PROMPTS):
                sampler.generate(model, ids[row : row + 1], mask[row : row + 1], GEN_LENGTH)
            best = min(best, time.process_time() - begin)
        results[label] = {
            "tokens_per_s": PROMPTS * GEN_LENGTH / best,
            "ops_per_forward": ops_per_forward(model, sampler_name, options, ids, mask),
        }
    return results


def compare(trees: list[str], rounds: int) -> None:
    runs: dict[str, list[dict]] = collections.defaultdict(list)
    for _ in range(rounds):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, check=True)
            runs[tree].append(json.loads(out.stdout.splitlines()[-1]))
    print("| case | " + " | ".join(f"{tree}: tokens/s, ops/forward" for tree in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for label in probe.CASES:
        cells = []
        for tree in trees:
            rate = max(run[label]["tokens_per_s"] for run in runs[tree])
            cells.append(f"{rate:.0f}, {runs[tree][0][label]['ops_per_forward']:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        arguments = sys.argv[1:]
        rounds = 3
        if "--rounds" in arguments:
            at = arguments.index("--rounds")
            rounds = int(arguments[at + 1])
            del arguments[at : at + 2]
        compare(arguments, rounds)
    else:
        print(json.dumps(measure()))
