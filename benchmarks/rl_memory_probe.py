"""Peak memory of one RL update (the loop's `loss_and_backward` on one micro-batch of a fixed
rollout) for each estimator/objective composition, the question BGPO (arXiv 2510.11683) asks:
does memory grow with the number of Monte Carlo samples K?

Two measures per case, each case in a fresh process:
- `saved_mb`: the peak of the bytes autograd holds for backward (saved activations, parameters
  excluded), tracked exactly with `torch.autograd.graph.saved_tensors_hooks` — deterministic, and
  what a GPU's activation memory scales with;
- `peak_mb`: peak allocated memory (CUDA) or resident-set growth (CPU) during the first update
  (noisier: the allocator keeps and reuses freed memory);
- `seconds`: a second update's time.

    python benchmarks/rl_memory_probe.py                 # every case, a table
    python benchmarks/rl_memory_probe.py bgpo@16         # one case, JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import weakref
from pathlib import Path

import torch
from generation_memory_probe import SIZES
from training_step_probe import ResidentPeak

import dllm
from dllm.algorithms.rl_plan import RLMicroBatch
from dllm.algorithms.rollout import rollout_from_output

MODEL, BATCH, PROMPT, GEN = "llada_small", 4, 16, 64
# case -> (preset, overrides): the presets as shipped, then BGPO against the same K views held together
CASES = {
    "diffu_grpo": ("diffu_grpo", {}),
    "coupled_grpo": ("coupled_grpo", {}),
    "spg": ("spg", {}),  # K = 2, ELBO and EUBO in one graph
    "bgpo@2": ("bgpo", {"num_masks": 2}),
    "bgpo@16": ("bgpo", {}),  # the preset: K = 16, one view back-propagated at a time
    "elbo_held@2": ("spg", {"num_masks": 2, "negative": "elbo"}),  # the same K views, held together
    "elbo_held@16": ("spg", {"num_masks": 16, "negative": "elbo"}),
}


class SavedPeak:
    """Peak bytes of the tensors autograd saves for backward (by storage; parameters excluded)."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude, self.live, self.current, self.peak = exclude, {}, 0, 0

    def pack(self, tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        handle = _Handle(tensor)
        if key in self.exclude or storage.nbytes() == 0:
            return handle
        if key not in self.live:
            self.live[key] = [storage.nbytes(), 0]
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        self.live[key][1] += 1
        weakref.finalize(handle, self._release, key)
        return handle

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    @staticmethod
    def unpack(handle: _Handle) -> torch.Tensor:
        return handle.tensor


class _Handle:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def run_case(case: str) -> dict:
    preset, overrides = CASES[case]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = dllm.load_model(MODEL, **SIZES[MODEL]).to(device)
    sampler = dllm.build_sampler("llada", steps=GEN // 2, block_length=16, temperature=1.0, stop_at_eos=False)
    prompt = torch.randint(4, 100, (BATCH, PROMPT), device=device)
    mask = torch.ones_like(prompt)
    out = sampler.generate(model.eval(), prompt, mask, GEN, torch.Generator(device=device).manual_seed(0))
    rollout = rollout_from_output(model, prompt, mask, out, eos_id=None)
    rollout.advantages = torch.tensor([1.0, -1.0, 0.5, -0.5], device=device)
    estimator_options = {k: v for k, v in overrides.items() if k != "negative"}
    objective_options = {"negative": overrides["negative"]} if "negative" in overrides else {}
    algorithm = dllm.build("algorithm", preset, estimator=estimator_options, objective=objective_options)
    algorithm.device = device
    rollout.plans = [algorithm.estimator.plan(rollout, torch.Generator(device=device).manual_seed(0))]
    with torch.no_grad():  # the old / reference passes run before the update, without a graph
        old = algorithm.estimator.log_probs(model, rollout, rollout.plans[0])[0]
    rollout.old_log_probs, rollout.ref_log_probs = [old], [old]
    model.train()
    batch = RLMicroBatch(rollout, 0, 1.0)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def update() -> None:
        algorithm.loss_and_backward(model, batch, None, 1.0)
        model.zero_grad(set_to_none=True)

    tracker = SavedPeak(params)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    # the first update: the resident set grows to what it needs (a later one reuses the allocator's memory)
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack), ResidentPeak() as resident:
        update()
    peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else resident.growth_mb
    began = time.perf_counter()
    update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return {"case": case, "saved_mb": tracker.peak / 2**20, "peak_mb": peak_mb, "seconds": seconds,
            "device": device.type, "views": getattr(algorithm.estimator, "num_masks", None)}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(run_case(sys.argv[1])))
        return
    here = Path(__file__).parent
    print(f"{MODEL} {SIZES[MODEL]}, batch {BATCH}, prompt {PROMPT}, completion {GEN}")
    print("| case | K | saved for backward (MB) | peak (MB) | seconds |\n|---|---|---|---|---|")
    for case in CASES:
        line = subprocess.run([sys.executable, str(here / "rl_memory_probe.py"), case], capture_output=True,
                              text=True, check=True).stdout.strip().splitlines()[-1]  # fmt: skip
        row = json.loads(line)
        print(
            f"| {case} | {row['views'] or ''} | {row['saved_mb']:.1f} | {row['peak_mb']:.1f} | {row['seconds']:.2f} |"
        )


if __name__ == "__main__":
    main()
