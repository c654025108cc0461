"""Decoding at a real vocabulary (126,464 tokens, LLaDA's): tokens/s and peak memory of the
`llada`, `fast_dllm` (dual cache + threshold) and `sdar` samplers at batch 1 and 16, the code
before issue 20's sampling change (a source tree given with --before, e.g. a worktree of
168dca4) against this one, each case in a fresh process, alternating. Also checks that both
decode the same tokens (a hash of the sequences). Not a test; run it alone:

    git worktree add /tmp/dllm-before 168dca4
    OMP_NUM_THREADS=1 python benchmarks/real_vocab_decoding_probe.py --before /tmp/dllm-before
    OMP_NUM_THREADS=1 python benchmarks/real_vocab_decoding_probe.py --before /tmp/dllm-before sdar 16

Models: `llada_tiny` / `sdar_tiny` at random initialisation with `vocab_size=126464`; prompt 64,
128 new tokens, EOS stopping off (every row decodes every token), the presets' defaults otherwise
(temperature 0), plus the rollout setting `T=1` (sampling at temperature 1: `llada` then draws
float64 Gumbel noise over its whole forward each step, as LLaDA's reference does). Random weights
give near-uniform distributions: a threshold is rarely met, so the threshold decoder reveals about
one token per step, the slowest case.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VOCAB, PROMPT, GEN = 126464, 64, 128
CASES = {
    # label: (model, sampler, options)
    "llada": ("llada_tiny", "llada", {"steps": GEN, "block_length": 32}),
    "llada T=1": ("llada_tiny", "llada", {"steps": GEN // 4, "block_length": 32, "temperature": 1.0}),
    "fast_dllm dual threshold": ("llada_tiny", "fast_dllm", {"block_length": 32, "threshold": 0.9,
                                                             "use_cache": "dual"}),
    "sdar": ("sdar_tiny", "sdar", {}),
    "sdar T=1": ("sdar_tiny", "sdar", {"temperature": 1.0}),
    "fast_dllm dual threshold T=1": ("llada_tiny", "fast_dllm", {"block_length": 32, "threshold": 0.9,
                                                                 "use_cache": "dual", "temperature": 1.0}),
}  # fmt: skip
BATCHES = (1, 16)


def one(label: str, batch: int) -> dict:
    """Decode one case in this process (whichever `dllm` is first on the path)."""
    import torch

    import dllm

    sys.path.insert(0, str(Path(__file__).parent))
    from training_step_probe import ResidentPeak

    preset, name, options = CASES[label]
    torch.manual_seed(0)
    model = dllm.load_model(preset, vocab_size=VOCAB).eval()
    sampler = dllm.build_sampler(name, stop_at_eos=False, **options)
    prompt = torch.randint(4, VOCAB, (batch, PROMPT), generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(2)
    began = time.perf_counter()
    with torch.no_grad(), ResidentPeak() as peak:
        output = sampler.generate(model, prompt, None, GEN, generator)
    seconds = time.perf_counter() - began
    sequences = output.sequences[:, PROMPT : PROMPT + GEN].contiguous()
    return {
        "dllm": os.path.dirname(dllm.__file__),
        "tokens_per_s": round(batch * GEN / seconds, 2),
        "seconds": round(seconds, 2),
        "peak_growth_mb": round(peak.growth_mb),
        "nfe": output.nfe,
        "tokens_sha": hashlib.sha256(sequences.numpy().tobytes()).hexdigest()[:16],
    }


def run(source: str, label: str, batch: int) -> dict:
    environment = {**os.environ, "PYTHONPATH": source}
    command = [sys.executable, __file__, "--one", label, str(batch)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    return json.loads(done.stdout)


def main(argv: list[str]) -> None:
    if argv[:1] != ["--before"] or len(argv) < 2:
        raise SystemExit("usage: real_vocab_decoding_probe.py --before SOURCE_TREE [CASE BATCH]")
    before, after = argv[1], str(Path(__file__).resolve().parent.parent)
    cases = [(" ".join(argv[2:-1]), int(argv[-1]))] if argv[2:] else [(c, b) for c in CASES for b in BATCHES]
    for label, batch in cases:
        old, new = run(before, label, batch), run(after, label, batch)
        assert old["dllm"] != new["dllm"], "the two runs imported the same dllm"
        row = {
            "case": label,
            "batch": batch,
            "before": old,
            "after": new,
            "speedup": round(new["tokens_per_s"] / old["tokens_per_s"], 2),
            "memory_ratio": round(old["peak_growth_mb"] / max(new["peak_growth_mb"], 1), 2),
            "tokens_identical": old["tokens_sha"] == new["tokens_sha"],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(" ".join(sys.argv[2:-1]), int(sys.argv[-1]))))
    else:
        main(sys.argv[1:])
