"""One SFT loss+backward of `llada_tiny` at a real vocabulary (126,464 tokens, LLaDA's), plain path
(whole float32 logits and log-softmax at every position) against the scored-positions path (the
head at the masked response positions only, log-probs in chunks: `dllm.algorithms.denoise`), each
in a fresh process: peak resident memory, step time and the loss. Not a test; run it alone:

    python benchmarks/real_vocab_probe.py                      # both paths, batch 4, prompt 256, completion 512
    python benchmarks/real_vocab_probe.py 4 256 1024           # other sizes
    python benchmarks/real_vocab_probe.py --one chosen 4 256 512   # one configuration, JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import dllm
from dllm.algorithms.sft import SFT, SFTBatch
from dllm.peak_memory import peak_rss_kib, reset_peak_memory

sys.path.insert(0, str(Path(__file__).parent))
from training_step_probe import ResidentPeak  # noqa: E402

VOCAB = 126464


def one(path: str, rows: int, prompt: int, completion: int) -> dict:
    torch.manual_seed(0)
    model = dllm.load_model("llada_tiny", vocab_size=VOCAB).train()
    # the plain path is what `denoise` does for a module outside the chosen-positions contract
    model.reads_targets = path == "chosen"
    length = prompt + completion
    batch = SFTBatch(
        torch.randint(4, VOCAB, (rows, length)),
        torch.ones(rows, length, dtype=torch.long),
        torch.cat([torch.zeros(rows, prompt), torch.ones(rows, completion)], 1).long(),
        prompt_length=prompt,
    )
    sft = SFT()
    # First step: peak memory (the kernel's high-water mark since the reset, and its growth
    # over what the process held before the step, sampled by a thread).
    reset_peak_memory()
    with ResidentPeak() as peak:
        first = sft.loss(model, batch, torch.Generator().manual_seed(0)).loss
        first.backward()
    hwm_mb = peak_rss_kib() / 1024
    model.zero_grad(set_to_none=True)
    began = time.perf_counter()
    sft.loss(model, batch, torch.Generator().manual_seed(1)).loss.backward()
    seconds = time.perf_counter() - began
    return {
        "path": path,
        "rows": rows,
        "prompt": prompt,
        "completion": completion,
        "loss": first.item(),
        "peak_rss_mb": round(hwm_mb),
        "step_growth_mb": round(peak.growth_mb),
        "seconds": round(seconds, 2),
    }


def main(rows: int = 4, prompt: int = 256, completion: int = 512) -> None:
    results = []
    for path in ("plain", "chosen"):
        command = [sys.executable, __file__, "--one", path, str(rows), str(prompt), str(completion)]
        results.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
        print(json.dumps(results[-1]))
    plain, chosen = results
    print(
        json.dumps(
            {
                "memory_ratio": round(plain["step_growth_mb"] / max(chosen["step_growth_mb"], 1), 2),
                "speedup": round(plain["seconds"] / chosen["seconds"], 2),
                "loss_rel_diff": abs(plain["loss"] - chosen["loss"]) / abs(plain["loss"]),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2], *map(int, sys.argv[3:6]))))
    else:
        main(*map(int, sys.argv[1:4]))
