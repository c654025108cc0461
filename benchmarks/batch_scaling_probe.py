"""Does batching keep parallel decoding's speed-up? Throughput (completion tokens per second) at
batch 1, 8 and 32 of every sampler preset on a confident model, and a TraceRL rollout's
completions per second (issue 17).

The model: llada_small / sdar_small at width 64, 2 layers, the presets' vocabulary, seeded, made
confident deterministically — every linear layer but the head scaled by `WEIGHT_SCALE` (so that
what a masked position predicts depends on its context: with the head alone scaled, every row
took the same steps) and the head by `HEAD_SCALE`. Threshold-0.9 decoding of 256 tokens then takes
~50-160 forwards for one row, depending on the prompt. "Batch B": the same ragged prompts
(12-16 tokens, left-padded) decoded in chunks of B rows, one `sampler.generate` per chunk;
EOS stopping off (this model reveals EOS at ~1% of the positions), so every row decodes all its
tokens.
Where the tree's `generate` takes `max_batch_rows`, all prompts are also decoded in one call with
at most 8 or 32 rows at a time ("continuous b8/b32").

Run against any source tree, so two versions compare side by side on the same machine:
`PYTHONPATH=<tree> python benchmarks/batch_scaling_probe.py` prints one JSON line;
`python benchmarks/batch_scaling_probe.py compare <before tree> <after tree> [rounds]` alternates the
two trees (the `dllm` package of each, e.g. from `git archive <commit> dllm`) on one thread and
writes .benchmarks/batch_scaling.json for `report.py` (one tree: ~6 minutes, more with the continuous
runs; progress on stderr). `BATCH_PROBE_QUICK=1` shrinks every case (64 tokens, 8 prompts, batches 1
and 8) to check the harness, not to measure."""

from __future__ import annotations

import inspect
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

import dllm

TINY = {
    "llada_small": {"d_model": 64, "n_heads": 4, "n_layers": 2, "mlp_hidden_size": 128},
    "sdar_small": {
        "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "num_hidden_layers": 2, "intermediate_size": 128,
    },
}  # fmt: skip
WEIGHT_SCALE = 10.0
HEAD_SCALE = 60.0
PROMPT = 16  # columns; each prompt has 12-16 real tokens
FIXED = {"threshold": None, "tokens_per_step": 4}  # fast_dllm's fixed schedule: steps = gen_length / 4
CASES = {
    # label: (model, sampler, sampler kwargs); `tokens_per_step` sets steps = gen_length / it
    "llada": ("llada_small", "llada", {"block_length": 32, "steps": None}),  # None: one token per step (not 128)
    "fast_dllm none fixed": ("llada_small", "fast_dllm", {"block_length": 32, "use_cache": "none", **FIXED}),
    "fast_dllm none 0.9": ("llada_small", "fast_dllm", {"block_length": 32, "use_cache": "none", "threshold": 0.9}),
    "fast_dllm prefix fixed": ("llada_small", "fast_dllm", {"block_length": 32, "use_cache": "prefix", **FIXED}),
    "fast_dllm prefix 0.9": ("llada_small", "fast_dllm", {"block_length": 32, "use_cache": "prefix", "threshold": 0.9}),
    "fast_dllm dual fixed": ("llada_small", "fast_dllm", {"block_length": 32, "use_cache": "dual", **FIXED}),
    "fast_dllm dual 0.9": ("llada_small", "fast_dllm", {"block_length": 32, "use_cache": "dual", "threshold": 0.9}),
    # the sampler's defaults: the model's 4-token blocks, 4 steps each, threshold 0.85 (dynamic)
    "sdar static": ("sdar_small", "sdar", {"remasking_strategy": "low_confidence_static"}),
    "sdar dynamic": ("sdar_small", "sdar", {"remasking_strategy": "low_confidence_dynamic"}),
}
# gen_length: (cases, {batch: rows decoded at that batch, the first prompts}). At 1024 tokens the
# cases without a cache or with the prefix cache recompute ~1040 (prefix: on average ~520) positions
# every forward, at a cost that grows with the batch (no cache: 16 / 152 / 578 ms at batch 1 / 8 / 32
# on one thread): no batching gain to find on this CPU, and minutes per case (llada: 1024 such forwards
# per chunk), so they run at 256 tokens only.
PLAN = {
    256: (tuple(CASES), {1: 32, 8: 32, 32: 32}),
    1024: (
        ("fast_dllm dual fixed", "fast_dllm dual 0.9", "sdar static", "sdar dynamic"),
        {1: 4, 8: 16, 32: 32},
    ),
}
QUICK_PLAN = {64: (tuple(CASES), {1: 2, 8: 8})}
CONTINUOUS = (8, 32)
# The TraceRL rollout: the train config as `dllm-train algorithm=tracerl model=sdar_small sampler=sdar`
# composes it (temperature 1, EOS stopping on, the sdar sampler's defaults), on the confident model.
ROLLOUT = ["algorithm=tracerl", "model=sdar_small", "sampler=sdar", "algorithm.max_rollout_tries=1"]
ROLLOUT_SIZES = {"prompts_per_rollout": 16, "group_size": 8, "gen_length": 256}
QUICK_ROLLOUT_SIZES = {"prompts_per_rollout": 2, "group_size": 4, "gen_length": 32}
ROLLOUT_DRAWS = 3


def quick() -> bool:
    return os.environ.get("BATCH_PROBE_QUICK", "") not in ("", "0")


def confident_model(name: str) -> torch.nn.Module:
    """The seeded tiny `name`, its linear layers scaled by `WEIGHT_SCALE` and its head by `HEAD_SCALE`."""
    torch.manual_seed(0)
    model = dllm.load_model(name, **TINY[name]).eval()
    head = model.get_output_embeddings() or model.model.transformer.ff_out  # LLaDA keeps its head in the backbone
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(HEAD_SCALE if module is head else WEIGHT_SCALE)
    return model


def ragged_prompts(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[rows, PROMPT] left-padded prompts of 12..16 tokens (ids 4..99: no pad, EOS or mask), and their mask."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.zeros(rows, PROMPT, dtype=torch.long)
    mask = torch.zeros(rows, PROMPT, dtype=torch.long)
    for row, length in enumerate(torch.randint(PROMPT - 4, PROMPT + 1, (rows,), generator=generator).tolist()):
        ids[row, PROMPT - length :] = torch.randint(4, 100, (length,), generator=generator)
        mask[row, PROMPT - length :] = 1
    return ids, mask


def build_sampler(name: str, kwargs: dict, gen_length: int):
    kwargs = dict(kwargs)
    if "tokens_per_step" in kwargs:
        kwargs["steps"] = gen_length // kwargs.pop("tokens_per_step")
    return dllm.build_sampler(name, stop_at_eos=False, **kwargs)


def row_nfe(out) -> list[int]:
    """Each row's forwards, where the tree reports them (`GenerationOutput.row_nfe`)."""
    rows = getattr(out, "row_nfe", None)
    return [] if rows is None else [int(n) for n in torch.as_tensor(rows).tolist()]


def timed(sampler, model, ids, mask, gen_length: int, batch: int, **options) -> dict:
    """Decode `ids` in chunks of `batch` rows, one `generate` each (with `options`): rows, tokens,
    seconds, the `nfe` of each call, each row's nfe where the tree reports it."""
    begin = time.perf_counter()
    outputs = [
        sampler.generate(model, ids[i : i + batch], mask[i : i + batch], gen_length, **options)
        for i in range(0, len(ids), batch)
    ]
    seconds = time.perf_counter() - begin
    print(f"{len(ids)} rows x {gen_length} tokens in chunks of {batch}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return {
        "rows": len(ids), "tokens": len(ids) * gen_length, "seconds": seconds,
        "nfe": [out.nfe for out in outputs], "row_nfe": sum(map(row_nfe, outputs), []),
    }  # fmt: skip


def measure_decoding(plan: dict) -> dict[str, dict]:
    """{"<case> | <gen> | b<B>" or "... | continuous b<R>": rows, tokens, seconds, nfe per call, row nfe}."""
    models = {name: confident_model(name) for name in TINY}
    results: dict[str, dict] = {}
    for gen_length, (cases, rows_at) in plan.items():
        ids, mask = ragged_prompts(max(rows_at.values()))
        for label in cases:
            model_name, sampler_name, kwargs = CASES[label]
            model, sampler = models[model_name], build_sampler(sampler_name, kwargs, gen_length)
            print(f"{label}, {gen_length} tokens", file=sys.stderr, flush=True)
            sampler.generate(model, ids[:1], mask[:1], gen_length)  # warm-up
            for batch, rows in rows_at.items():
                measured = timed(sampler, model, ids[:rows], mask[:rows], gen_length, batch)
                results[f"{label} | {gen_length} | b{batch}"] = measured
            if "max_batch_rows" in inspect.signature(sampler.generate).parameters:
                for limit in (r for r in CONTINUOUS if r <= len(ids)):
                    measured = timed(sampler, model, ids, mask, gen_length, len(ids), max_batch_rows=limit)
                    results[f"{label} | {gen_length} | continuous b{limit}"] = measured
    return results


def measure_rollout(sizes: dict) -> list[dict]:
    """`ROLLOUT_DRAWS` TraceRL rollouts (`RL.draw`, as the training loop calls it) of `sizes`, each:
    seconds, completions, the rollout's logged nfe and mean response length."""
    from dllm.algorithms.base import TrainContext
    from dllm.config import compose
    from dllm.run import plan

    overrides = [*ROLLOUT, *(f"algorithm.{key}={value}" for key, value in sizes.items())]
    run = plan(compose(overrides))
    parts = run.components(confident_model("sdar_small"))
    ctx = TrainContext(
        model=parts.model, tokenizer=parts.tokenizer, task=parts.task, sampler=parts.sampler, reward=parts.reward,
        micro_batch_size=8, rng=random.Random(0), generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )  # fmt: skip
    draws = []
    for _ in range(ROLLOUT_DRAWS):  # each draws the next prompts: the same sequence in every tree
        begin = time.perf_counter()
        _, metrics = run.algorithm.draw(ctx)
        seconds = time.perf_counter() - begin
        draws.append({
            "seconds": seconds,
            "completions": sizes["prompts_per_rollout"] * sizes["group_size"],
            "gen_length": sizes["gen_length"],
            "nfe": metrics.get("rollout_nfe"),
            "response_length": metrics.get("response_length"),
            "decode_seconds": metrics.get("rollout_time"),
        })  # fmt: skip
    return draws


def measure() -> dict:
    """This tree's measurements (one thread), with the settings they ran under."""
    torch.set_num_threads(1)
    plan, sizes = (QUICK_PLAN, QUICK_ROLLOUT_SIZES) if quick() else (PLAN, ROLLOUT_SIZES)
    return {
        "decoding": measure_decoding(plan),
        "rollout": measure_rollout(sizes),
        "settings": {
            "quick": quick(),
            "plan": {gen: {"cases": list(cases), "rows": rows} for gen, (cases, rows) in plan.items()},
            "weight_scale": WEIGHT_SCALE,
            "head_scale": HEAD_SCALE,
            "rollout": ROLLOUT + [f"algorithm.{key}={value}" for key, value in sizes.items()],
            "rollout_draws": ROLLOUT_DRAWS,
        },
    }


def compare(before: str, after: str, rounds: int = 1) -> None:
    """Alternate the two source trees `rounds` times; write every round of both."""
    runs: dict[str, dict] = {"before": {"decoding": {}, "rollout": []}, "after": {"decoding": {}, "rollout": []}}
    settings = {}
    for _ in range(rounds):
        for name, tree in (("before", before), ("after", after)):
            env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
            print(f"== {name}: {tree}", file=sys.stderr, flush=True)
            # stderr passes through: the progress of each case, or the traceback
            out = subprocess.run([sys.executable, __file__], env=env, stdout=subprocess.PIPE, text=True)
            if out.returncode:
                raise SystemExit(f"the measurement of {tree} failed (its traceback above)")
            record = json.loads(out.stdout.splitlines()[-1])
            for key, result in record["decoding"].items():
                runs[name]["decoding"].setdefault(key, []).append(result)
            runs[name]["rollout"] += record["rollout"]
            settings = record["settings"]
    path = Path(__file__).resolve().parents[1] / ".benchmarks" / "batch_scaling.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"trees": {"before": before, "after": after}, "settings": settings, "runs": runs}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["compare"]:
        compare(*sys.argv[2:4], *map(int, sys.argv[4:5]))
    else:
        print(json.dumps(measure()))
