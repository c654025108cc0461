"""The decoding loop's cost per forward outside the model: every sampler preset on a model whose
forward is nearly free (one layer, width 32, vocabulary 100), so the seconds per forward are the
loop's own (EOS checks, `step_map` writes, host syncs, masks, rotary tables, the LM head).

Run against any source tree, so two versions compare side by side on the same machine:
`PYTHONPATH=<tree> python benchmarks/decode_overhead_probe.py [repeats]` prints one JSON line
{case: [ms per forward of each repeat]}; `test_bench_samplers.py::test_decode_overhead` runs it.
`python benchmarks/decode_overhead_probe.py compare <before tree> <after tree> [rounds] [repeats]`
alternates the two trees (the `dllm` package of each, e.g. from `git archive <commit> dllm`) and
writes .benchmarks/decode_overhead.json for `report.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import dllm

TINY = {
    "llada_small": {"d_model": 32, "n_heads": 2, "n_layers": 1, "mlp_hidden_size": 64},
    "sdar_small": {
        "hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
        "num_hidden_layers": 1, "intermediate_size": 64,
    },
}  # fmt: skip
GEN_LENGTH = 256
PROMPT = 16
CASES = {
    # label: (model, sampler, sampler kwargs)
    "sdar static": ("sdar_small", "sdar", {"remasking_strategy": "low_confidence_static"}),
    "sdar dynamic": ("sdar_small", "sdar", {"remasking_strategy": "low_confidence_dynamic"}),
    "llada": ("llada_small", "llada", {"block_length": 32, "steps": GEN_LENGTH}),
    "fast_dllm dual": ("llada_small", "fast_dllm", {"block_length": 32, "use_cache": "dual", "threshold": 0.9}),
    # the shipped default: rows stop at EOS (wherever this random model reveals one; the same
    # tokens, so the same forwards, in every version that keeps decoding exact)
    "sdar dynamic, EOS on": ("sdar_small", "sdar", {"stop_at_eos": True}),
    "llada, EOS on": ("llada_small", "llada", {"block_length": 32, "steps": GEN_LENGTH, "stop_at_eos": True}),
}
BATCHES = (1, 8)


def measure(repeats: int) -> dict[str, list[float]]:
    """{"<case> b<batch>": ms per forward of each repeat}; EOS stopping off unless the case turns it on."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    models = {name: dllm.load_model(name, **sizes).eval() for name, sizes in TINY.items()}
    results: dict[str, list[float]] = {}
    for label, (model_name, sampler_name, kwargs) in CASES.items():
        sampler = dllm.build_sampler(sampler_name, **{"stop_at_eos": False, **kwargs})
        for batch in BATCHES:
            prompt = torch.randint(4, 100, (batch, PROMPT))
            times = []
            sampler.generate(models[model_name], prompt, None, GEN_LENGTH)  # warm-up
            for _ in range(repeats):
                begin = time.perf_counter()
                out = sampler.generate(models[model_name], prompt, None, GEN_LENGTH)
                times.append(1000 * (time.perf_counter() - begin) / out.nfe)
            results[f"{label} b{batch}"] = times
    return results


def compare(before: str, after: str, rounds: int = 2, repeats: int = 3) -> None:
    """Alternate the two source trees `rounds` times; write every repeat of both."""
    runs: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for _ in range(rounds):
        for name, tree in (("before", before), ("after", after)):
            env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, __file__, str(repeats)], env=env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr)
            for case, times in json.loads(out.stdout.splitlines()[-1]).items():
                runs[name].setdefault(case, []).extend(times)
    path = Path(__file__).resolve().parents[1] / ".benchmarks" / "decode_overhead.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"trees": {"before": before, "after": after}, "gen_length": GEN_LENGTH, "runs": runs}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["compare"]:
        compare(*sys.argv[2:4], *map(int, sys.argv[4:6]))
    else:
        print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
