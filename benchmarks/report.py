"""Write BENCHMARKS.md from a pytest-benchmark JSON file: ratios measured in one run."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path


def main(json_path: str, out_path: str = "BENCHMARKS.md") -> None:
    data = json.loads(Path(json_path).read_text())
    by_name = {b["name"]: b for b in data["benchmarks"]}

    def seconds(name: str) -> float:
        return by_name[name]["stats"]["median"]

    def info(name: str, key: str) -> float:
        return by_name[name]["extra_info"][key]

    decode = {
        batch: info(f"test_llada_decode[{batch}]", "tokens") / seconds(f"test_llada_decode[{batch}]")
        for batch in (1, 16)
    }
    matmul = info("test_dense_matmul", "flops") / seconds("test_dense_matmul")
    sft = info("test_sft_step", "flops") / seconds("test_sft_step")
    machine = data.get("machine_info", {})
    lines = [
        "# Benchmarks",
        "",
        "Ratios measured side by side in one run, never as timed assertions in tests:",
        "`python -m pytest benchmarks --benchmark-json=.benchmarks/latest.json`, then",
        "`python benchmarks/report.py .benchmarks/latest.json`.",
        "",
        f"Machine: {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores, torch threads default.",
        "",
        "## Decoding (`llada` sampler, llada_small, prompt 16, 64 tokens, 64 steps, no cache)",
        "",
        "| batch | tokens/s | vs batch 1 |",
        "|---|---|---|",
        f"| 1 | {decode[1]:.0f} | 1.00× |",
        f"| 16 | {decode[16]:.0f} | {decode[16] / decode[1]:.2f}× |",
        "",
        "## Compute efficiency (SFT step, llada_small, 64 × 24 tokens)",
        "",
        "| what | GFLOP/s | fraction of dense matmul |",
        "|---|---|---|",
        f"| dense fp32 matmul 1024³ | {matmul / 1e9:.1f} | 1.00 |",
        f"| SFT step (6 × params × tokens) | {sft / 1e9:.1f} | {sft / matmul:.2f} |",
        "",
    ]
    Path(out_path).write_text("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
