"""Training at a real vocabulary (126,464 tokens, LLaDA's): one SFT step (loss + backward) and one
TraceRL update (the `trace` estimator's replay + PPO surrogate + backward, part by part as the
trainer runs it) of `llada_tiny` (full attention) and `sdar_tiny` (block SFT / block replay),
plain path (whole float32 logits and log-softmax at every position) against the scored-positions
path (the head at the positions the loss reads only, log-probs in chunks: `dllm.algorithms.denoise`),
each in a fresh process: peak resident memory, its growth over the step, step time, and the loss
(SFT) or the summed log-probs of the replayed actions (TraceRL).
Not a test; run it alone (one thread, as BENCHMARKS.md reports it):

    OMP_NUM_THREADS=1 python benchmarks/real_vocab_probe.py            # every case: completions 512, 1024
    OMP_NUM_THREADS=1 python benchmarks/real_vocab_probe.py sft llada_tiny 512   # one case, both paths
    python benchmarks/real_vocab_probe.py --one chosen sft llada_tiny 512        # one path, JSON

Rows 4, prompt 256. The TraceRL rollout is a fixed random trajectory (tokens and a step map of 2
steps per block: 4 blocks of the completion for llada, so 8 replayed steps; the model's 4-token
blocks for sdar, replayed together), not a decoding: the update's cost depends on the
trajectory's shape, not on how good its tokens are. The plain path's replay of a full-attention
model costs one whole-vocabulary forward and backward per step: minutes per update here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import dllm
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.objectives.base import token_weights
from dllm.algorithms.objectives.ppo import clipped_surrogate
from dllm.algorithms.rollout import rollout_from_output
from dllm.algorithms.sft import SFT, SFTBatch
from dllm.peak_memory import peak_rss_kib, reset_peak_memory
from dllm.samplers.base import GenerationOutput

sys.path.insert(0, str(Path(__file__).parent))
from training_step_probe import ResidentPeak  # noqa: E402

VOCAB, ROWS, PROMPT = 126464, 4, 256
CASES = [(task, preset, completion) for completion in (512, 1024) for task in ("sft", "tracerl")
         for preset in ("llada_tiny", "sdar_tiny")]  # fmt: skip
STEPS_PER_BLOCK = 2


def load(preset: str, path: str, vocab: int | None = VOCAB) -> torch.nn.Module:
    """`preset` (seeded, training mode) at `vocab` tokens (None: the preset's), computing its loss
    on the `plain` path (whole logits) or the `chosen` one (the head at scored positions)."""
    torch.manual_seed(0)
    model = dllm.load_model(preset, **({} if vocab is None else {"vocab_size": vocab})).train()
    # the plain path is what `denoise` does for a module outside the chosen-positions contract
    model.reads_targets = path == "chosen"
    return model


def sft_batch(completion: int, vocab: int = VOCAB) -> SFTBatch:
    """ROWS random rows of PROMPT prompt tokens then `completion` response tokens (seeded)."""
    generator = torch.Generator().manual_seed(0)
    length = PROMPT + completion
    return SFTBatch(
        torch.randint(4, vocab, (ROWS, length), generator=generator),
        torch.ones(ROWS, length, dtype=torch.long),
        torch.cat([torch.zeros(ROWS, PROMPT), torch.ones(ROWS, completion)], 1).long(),
        prompt_length=PROMPT,
    )


def sft_step(model: torch.nn.Module, completion: int):
    """A closure running one SFT loss + backward (seeded), returning the loss."""
    batch = sft_batch(completion, model.config.vocab_size)
    sft = SFT()

    def step(seed: int) -> float:
        loss = sft.loss(model, batch, torch.Generator().manual_seed(seed)).loss
        loss.backward()
        return loss.item()

    return step


def tracerl_update(model: torch.nn.Module, completion: int):
    """A closure running one TraceRL update on a fixed random trajectory, returning the sum of the
    actions' log-probs it scored (the surrogate itself is the same for any log-probs at ratio 1)."""
    generator = torch.Generator().manual_seed(0)
    block = model.block_size or completion // 4
    prompt = torch.randint(4, VOCAB, (ROWS, PROMPT), generator=generator)
    tokens = torch.randint(4, VOCAB, (ROWS, completion), generator=generator)
    within = torch.randint(0, STEPS_PER_BLOCK, (ROWS, completion), generator=generator)
    step_map = torch.arange(completion)[None] // block * STEPS_PER_BLOCK + within
    output = GenerationOutput(torch.cat([prompt, tokens], 1), step_map, nfe=int(step_map.max()) + 1)
    mask = torch.ones_like(prompt)
    rollout = rollout_from_output(model, prompt, mask, output, eos_id=None)
    rollout.advantages = torch.randn(ROWS, generator=generator)
    estimator = TraceEstimator()
    plan = estimator.plan(rollout, torch.Generator().manual_seed(0))
    weights = token_weights(rollout.scored, "token")

    def step(seed: int) -> float:
        total = 0.0
        for log_probs, covered, *_ in estimator.chunks(model, rollout, plan):
            surrogate, _ = clipped_surrogate(log_probs, log_probs.detach(), rollout.advantages, 0.2, 0.2)
            loss = (-surrogate * weights * covered).sum()
            loss.backward()
            total += float((log_probs.detach().double() * covered).sum())
        return total

    return step


def one(path: str, task: str, preset: str, completion: int) -> dict:
    model = load(preset, path)
    step = (sft_step if task == "sft" else tracerl_update)(model, completion)
    # First step: peak memory (the kernel's high-water mark since the reset, and its growth
    # over what the process held before the step, sampled by a thread).
    reset_peak_memory()
    with ResidentPeak() as peak:
        loss = step(0)
    hwm_mb = peak_rss_kib() / 1024
    model.zero_grad(set_to_none=True)
    began = time.perf_counter()
    step(1)
    seconds = time.perf_counter() - began
    return {
        "path": path,
        "task": task,
        "model": preset,
        "completion": completion,
        "loss": loss,
        "peak_rss_mb": round(hwm_mb),
        "step_growth_mb": round(peak.growth_mb),
        "seconds": round(seconds, 2),
    }


def compare(task: str, preset: str, completion: int) -> dict:
    results = {}
    for path in ("plain", "chosen"):
        command = [sys.executable, __file__, "--one", path, task, preset, str(completion)]
        results[path] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    plain, chosen = results["plain"], results["chosen"]
    return {
        "task": task,
        "model": preset,
        "completion": completion,
        "plain": {k: plain[k] for k in ("peak_rss_mb", "step_growth_mb", "seconds", "loss")},
        "chosen": {k: chosen[k] for k in ("peak_rss_mb", "step_growth_mb", "seconds", "loss")},
        "memory_ratio": round(plain["step_growth_mb"] / max(chosen["step_growth_mb"], 1), 2),
        "peak_ratio": round(plain["peak_rss_mb"] / chosen["peak_rss_mb"], 2),
        "speedup": round(plain["seconds"] / chosen["seconds"], 2),
        "loss_rel_diff": abs(plain["loss"] - chosen["loss"]) / max(abs(plain["loss"]), 1e-30),
    }


def main(argv: list[str]) -> None:
    cases = [(argv[0], argv[1], int(argv[2]))] if argv else CASES
    for case in cases:
        print(json.dumps(compare(*case)), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
    else:
        main(sys.argv[1:])
