"""One policy update (estimator forward(s) + PPO loss + backward, part by part as the trainer
runs it) on a fixed rollout batch, in a fresh process: prints JSON with the update time and
the peak resident memory growth (CPU) or peak allocated memory (CUDA). Used by
test_bench_rl.py; runnable alone:

    python benchmarks/rl_update_probe.py sdar_small trace
    python benchmarks/rl_update_probe.py sdar_small trace_naive
"""

from __future__ import annotations

import json
import sys
import time

import torch
from generation_memory_probe import SIZES
from training_step_probe import ResidentPeak

import dllm
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.objectives.base import token_weights
from dllm.algorithms.objectives.ppo import clipped_surrogate
from dllm.algorithms.rollout import rollout_from_output

BATCH, PROMPT, GEN = 4, 16, 64
SAMPLERS = {
    "sdar_small": ("sdar", {"remasking_strategy": "low_confidence_static", "denoising_steps": 4}),
    "llada_small": ("llada", {"steps": 32, "block_length": 16}),
}


def estimator(name: str):
    if name == "trace_naive":
        return TraceEstimator(packed=False)
    return dllm.build("estimator", name)


def main(preset: str, name: str) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = dllm.load_model(preset, **SIZES[preset]).to(device)
    sampler_name, options = SAMPLERS[preset]
    sampler = dllm.build_sampler(sampler_name, temperature=1.0, stop_at_eos=False, **options)
    prompt = torch.randint(4, 100, (BATCH, PROMPT), device=device)
    mask = torch.ones_like(prompt)
    out = sampler.generate(model.eval(), prompt, mask, GEN, torch.Generator(device=device).manual_seed(0))
    rollout = rollout_from_output(model, prompt, mask, out, eos_id=None)
    rollout.advantages = torch.randn(BATCH, device=device)
    model.train()
    chosen = estimator(name)
    plan = chosen.plan(rollout, torch.Generator(device=device).manual_seed(0))

    weights = token_weights(rollout.scored, "token")

    def update() -> None:  # as the trainer does it: each part of the loss back-propagated as it is computed
        for log_probs, covered, *_ in chosen.chunks(model, rollout, plan):
            surrogate, _ = clipped_surrogate(log_probs, log_probs.detach(), rollout.advantages, 0.2, 0.2)
            (-surrogate * weights * covered).sum().backward()
        model.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        update()
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        with ResidentPeak() as peak:
            update()
        peak_mb = peak.growth_mb
    began = time.perf_counter()
    update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    rounds = len(list(TraceEstimator().states(rollout))) if name.startswith("trace") else None
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "device": device.type, "rounds": rounds}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
