"""Compute efficiency of one SFT step (loss + backward): the model FLOP/s it reaches as a fraction
of this machine's dense float32 matmul FLOP/s (1024³ `torch.mm`, best of 5, measured at the start
and at the end of the same run; the higher is the reference), for the tiny presets, llada_small,
and llada_tiny at LLaDA's vocabulary (126,464 tokens) on both paths. Every case uses the batch of
`real_vocab_probe.py`: 4 rows, prompt 256, completion 512, count masking; one warm-up step, then
the best of 2 timed steps with the same seed.

Model FLOPs counted (forward + backward = 3 × forward, a multiply-add = 2 FLOPs), from what the
model is asked to compute (its inputs, read by a hook):
- body: 6 × non-embedding parameters × input tokens (block SFT's `[x_t ; x_0]` counts twice);
- LM head: 6 × hidden × vocabulary × head positions: every input position on the plain path, the
  scored ones on the chosen path (rows × the longest row's count of masked response tokens: rows
  are padded to it);
- attention: 12 × layers × (heads × head_dim) × input length² per row (scores and their weighted
  sum, dense: the CPU kernel computes every score, masked or not).
Embedding lookups, norms, softmax and the loss are not counted.

Not a test; run it alone, one thread (it writes .benchmarks/flops.json for `report.py` and prints
the markdown table):

    OMP_NUM_THREADS=1 python benchmarks/flops_probe.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from real_vocab_probe import VOCAB, load, sft_batch  # noqa: E402
from report import flops_section  # noqa: E402

from dllm.algorithms.sft import SFT  # noqa: E402

COMPLETION = 512
# (preset, vocabulary (None: the preset's), path)
CASES = [
    ("llada_tiny", None, "chosen"),
    ("sdar_tiny", None, "chosen"),
    ("dream_tiny", None, "chosen"),
    ("llada_small", None, "chosen"),
    ("llada_tiny", VOCAB, "chosen"),
    ("llada_tiny", VOCAB, "plain"),
]


def matmul_flops_per_second(size: int = 1024, repeats: int = 5) -> float:
    """Dense float32 `torch.mm` of two size × size matrices: best FLOP/s of `repeats` after a warm-up."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what `platform` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def head(model: torch.nn.Module) -> tuple[int, int]:
    """(hidden, vocabulary) of the output head: the embedding's shape, which it maps back to."""
    rows, hidden = model.get_input_embeddings().weight.shape
    return hidden, rows


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters outside the token embedding and the output head (tied or not)."""
    _, vocab = head(model)
    embedding = model.get_input_embeddings().weight
    heads = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == vocab]
    skip = {id(embedding), *map(id, heads)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


class ForwardShapes:
    """Records each forward's (rows, input length, head positions per row) through a pre-hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self._handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = args[0] if args else kwargs["input_ids"]
        rows, length = input_ids.shape
        chosen = kwargs.get("logits_slice")
        self.calls.append((rows, length, length if chosen is None else chosen.shape[1]))

    def remove(self) -> None:
        self._handle.remove()


def step_flops(model: torch.nn.Module, rows: int, length: int, head_positions: int) -> dict[str, int]:
    """Forward + backward FLOPs of one forward of `rows` × `length` input tokens whose head runs at
    `head_positions` per row, by part (see the module docstring)."""
    config = model.config
    hidden, vocab = head(model)
    width = config.num_attention_heads * (getattr(config, "head_dim", None) or hidden // config.num_attention_heads)
    return {
        "body": 6 * non_embedding_parameters(model) * rows * length,
        "head": 6 * hidden * vocab * rows * head_positions,
        "attention": 12 * config.num_hidden_layers * width * length**2 * rows,
    }


def measure(preset: str, vocab: int | None, path: str) -> dict:
    model = load(preset, path, vocab)
    batch = sft_batch(COMPLETION, model.config.vocab_size)
    sft = SFT()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        sft.loss(model, batch, torch.Generator().manual_seed(1)).loss.backward()

    step()  # warm-up, and the shapes the model is asked to compute
    shapes = ForwardShapes(model)
    step()
    shapes.remove()
    (rows, length, head_positions), *others = shapes.calls
    if others:
        raise RuntimeError(f"{preset}: one forward per SFT step expected, got {len(shapes.calls)}")
    seconds = float("inf")
    for _ in range(2):
        began = time.perf_counter()
        step()
        seconds = min(seconds, time.perf_counter() - began)
    flops = step_flops(model, rows, length, head_positions)
    return {
        "model": preset,
        "vocab": model.config.vocab_size,
        "path": path,
        "input": [rows, length],
        "head_positions": head_positions,
        "flops": flops,
        "seconds": seconds,
    }


def main() -> None:
    torch.set_num_threads(1)
    before = matmul_flops_per_second()
    cases = [measure(*case) for case in CASES]
    after = matmul_flops_per_second()
    record = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} CPU, 1 thread",
        "matmul_flops_per_second": max(before, after),
        "matmul_before_after": [before, after],
        "cases": cases,
    }
    path = Path(__file__).resolve().parents[1] / ".benchmarks" / "flops.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print("\n".join(flops_section(record)))


if __name__ == "__main__":
    main()
