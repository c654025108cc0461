"""Write BENCHMARKS.md from a pytest-benchmark JSON file: ratios measured in one run."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path


def main(json_path: str, out_path: str = "BENCHMARKS.md", baseline: tuple[str, str] | None = None) -> None:
    """`baseline`: (pytest-benchmark JSON, name) of the sandbox benchmarks run against other code."""
    data = json.loads(Path(json_path).read_text())
    if baseline is not None:
        before = json.loads(Path(baseline[0]).read_text())["benchmarks"]
        data["sandbox_baseline"] = {
            (b["extra_info"]["label"], b["extra_info"]["programs"]): b["extra_info"]["programs"] / b["stats"]["median"]
            for b in before
            if b["extra_info"].get("group") == "sandbox"
        }
        data["sandbox_baseline_name"] = baseline[1]
    by_name = {b["name"]: b for b in data["benchmarks"]}

    def seconds(name: str) -> float:
        return by_name[name]["stats"]["median"]

    def info(name: str, key: str) -> float:
        return by_name[name]["extra_info"][key]

    if "test_llada_decode[1]" not in by_name:
        # A partial run (e.g. `pytest benchmarks/test_bench_distributed.py`): replace only the
        # sections it measured in the existing file, keeping the others.
        path = Path(out_path)
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        for section in optional_sections(data):
            text = splice(text, section)
        path.write_text(text)
        return

    decode = {
        batch: info(f"test_llada_decode[{batch}]", "tokens") / seconds(f"test_llada_decode[{batch}]")
        for batch in (1, 16)
    }
    matmul = info("test_dense_matmul", "flops") / seconds("test_dense_matmul")
    sft = info("test_sft_step", "flops") / seconds("test_sft_step")
    machine = data.get("machine_info", {})
    model_rows = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("group") == "models"]
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
    sampler_rows = [b for b in data["benchmarks"] if b["extra_info"].get("group") == "samplers"]
    if sampler_rows:
        speed = {
            (b["extra_info"]["label"], b["extra_info"]["gen_length"], b["extra_info"]["batch"]): (
                b["extra_info"]["tokens"] / b["stats"]["median"]
            )
            for b in sampler_rows
        }
        baseline = {"fast_dllm": "llada plain", "llada": "llada plain", "sdar": "sdar no cache"}

        def order(b):
            info = b["extra_info"]
            return info["label"].split()[0], info["gen_length"], info["batch"], info["label"]

        table = []
        for b in sorted(sampler_rows, key=order):
            info = b["extra_info"]
            key = (info["gen_length"], info["batch"])
            base = speed[(baseline[info["label"].split()[0]], *key)]
            rate = speed[(info["label"], *key)]
            table.append(
                f"| {info['label']} | {info['gen_length']} | {info['batch']} | {rate:.0f} | "
                f"{info['nfe'] / info['gen_length']:.3f} | {rate / base:.2f}× |"
            )
        lines += table_section(
            "Cache strategies (one token per forward, prompt 16, ~20M-parameter LLaDA / SDAR)",
            [],
            ["sampler", "gen length", "batch", "tokens/s", "NFE/token", "vs its plain baseline"],
            table,
        )
    memory_rows = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("group") == "generation_memory"]
    if memory_rows:
        lines += table_section(
            "Generation memory (batch 16, 1024 tokens, prompt 16, ~20M parameters)",
            [
                "Resident-set growth during generation (CPU), or peak allocated (GPU); the KV cache holds",
                "committed blocks (SDAR) or one sequence (dual), never one entry per step.",
            ],
            ["sampler", "peak (MB)", "cache buffers allocated (MB)", "seconds"],
            [f"| {r['label']} | {r['peak_mb']:.0f} | {r['cache_mb']:.0f} | {r['seconds']:.1f} |" for r in memory_rows],
        )
    if model_rows:
        base = {(r["length"], r["backend"]): r["step_seconds"] for r in model_rows if r["preset"] == "llada_small"}
        table = []
        for r in sorted(model_rows, key=lambda r: (r["length"], r["backend"], r["preset"])):
            ratio = r["step_seconds"] / base[(r["length"], r["backend"])]
            mask = r["mask_seconds"] / r["step_seconds"]
            mask_text = "—" if mask != mask else f"{mask:.4f}"  # NaN: no mask to build
            table.append(
                f"| {r['preset']} | {r['length']} | {r['backend']} | {r['device']} | {r['step_seconds']:.3f} | "
                f"{ratio:.2f}× | {r['peak_mb']:.0f} | {mask_text} |"
            )
        lines += table_section(
            "Training forward + backward per family (batch 1, one fresh process per case)",
            [
                "SDAR trains on `[x_t ; x_0]`, twice the length. Peak memory: growth of the resident set over",
                "the step on the CPU, peak allocated on a GPU. Mask: building the block-diffusion mask with",
                "padding, as a fraction of the step.",
            ],
            ["preset", "length", "backend", "device", "step (s)", "vs llada_small", "peak (MB)", "mask / step"],
            table,
        )
    for section in optional_sections(data):
        lines += section
    Path(out_path).write_text("\n".join(lines))


def optional_sections(data: dict) -> list[list[str]]:
    """The sections a run may or may not have measured (a partial run splices only these)."""
    return [
        section
        for section in (
            flops_file_section(),
            sandbox_section(data),
            code_corpus_section(),
            rl_update_section(data),
            trained_decoding_section(),
            decode_overhead_section(),
            batch_scaling_section(),
            distributed_section(data),
        )
        if section
    ]


def table_section(title: str, prose: list[str], columns: list[str], rows: list[str]) -> list[str]:
    """A `## title` section: optional prose, then a markdown table with `columns` and `rows`."""
    lines = [f"## {title}", ""]
    if prose:
        lines += [*prose, ""]
    return [*lines, f"| {' | '.join(columns)} |", "|" + "---|" * len(columns), *rows, ""]


def flops_file_section() -> list[str]:
    """`flops_section` of .benchmarks/flops.json, when benchmarks/flops_probe.py wrote it."""
    path = Path(__file__).resolve().parents[1] / ".benchmarks" / "flops.json"
    return flops_section(json.loads(path.read_text())) if path.is_file() else []


def flops_section(record: dict) -> list[str]:
    """An SFT step's model FLOP/s against dense matmul FLOP/s, per preset (benchmarks/flops_probe.py)."""
    matmul = record["matmul_flops_per_second"]
    table = [f"| dense fp32 matmul 1024³ | | | | | | | {matmul / 1e9:.1f} | 1.00 |"]
    for case in record["cases"]:
        flops = case["flops"]
        rate = sum(flops.values()) / case["seconds"]
        rows, length = case["input"]
        parts = " / ".join(f"{flops[part] / 1e9:.2f}" for part in ("body", "head", "attention"))
        path = "plain" if case["path"] == "plain" else "scored"
        table.append(
            f"| {case['model']} | {case['vocab']:,} | {path} | {rows} × {length} | {case['head_positions']} | "
            f"{parts} | {case['seconds']:.2f} | {rate / 1e9:.2f} | {rate / matmul:.3f} |"
        )
    before, after = (f"{x / 1e9:.1f}" for x in record["matmul_before_after"])
    return table_section(
        "Compute efficiency per preset and at a real vocabulary (`benchmarks/flops_probe.py`)",
        [
            "One SFT step (loss + backward, after a warm-up; best of 2), 4 rows, prompt 256, completion 512,",
            f"{record['machine']}. Model FLOPs (forward + backward): body 6 × non-embedding",
            "parameters × input tokens; LM head 6 × hidden × vocabulary × head positions (plain: every",
            "input position; scored: the masked response positions, each row padded to the longest row's",
            "count); attention 12 × layers × width × length² per row (dense, as the CPU kernel computes it).",
            f"Matmul measured at the start and the end of the run ({before} and {after} GFLOP/s), the higher",
            "taken. Reproduce: `OMP_NUM_THREADS=1 python benchmarks/flops_probe.py`.",
        ],
        [
            "model", "vocabulary", "path", "input (rows × length)", "head positions per row",
            "GFLOP body / head / attention", "step (s)", "GFLOP/s", "fraction of dense matmul",
        ],
        table,
    )  # fmt: skip


def sandbox_section(data: dict) -> list[str]:
    rows = [b for b in data["benchmarks"] if b["extra_info"].get("group") == "sandbox"]
    if not rows:
        return []
    baseline = data.get("sandbox_baseline", {})
    table = []
    for b in rows:
        info, seconds = b["extra_info"], b["stats"]["median"]
        rate = info["programs"] / seconds
        before = baseline.get((info["label"], info["programs"]))
        table.append(
            f"| {info['label']} | {info['programs']} | {info['workers']} | {1e3 * seconds / info['programs']:.1f} | "
            f"{rate:.0f} | {'—' if before is None else f'{before:.0f}'} | "
            f"{'—' if before is None else f'{rate / before:.2f}×'} |"
        )
    prose = []
    if baseline:
        prose = [
            f"`before`: the same benchmark file run against {data['sandbox_baseline_name']} on the same machine",
            "(`python benchmarks/report.py AFTER.json --sandbox-baseline BEFORE.json NAME`).",
            "A program is one test run.",
        ]
    return table_section(
        "Code sandbox (`code` reward): cost per program, programs per second",
        prose,
        ["case", "programs", "workers", "ms per program", "programs/s", "before", "vs before"],
        table,
    )


def code_corpus_section() -> list[str]:
    """The code reward on its honest and hostile corpora (written by benchmarks/code_reward_corpus.py)."""
    path = Path(__file__).resolve().parents[1] / ".benchmarks" / "code_reward_corpus.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    table = [
        f"| {r['corpus']} | {r['records']} | {', '.join(f'{k} {n}' for k, n in sorted(r['kinds'].items()))} | "
        f"{r['test_runs']} | {r['error_label']}: {len(r['errors'])} ({len(r['errors']) / r['records']:.1%}) | "
        f"{r['records'] / r['seconds']:.0f} |"
        for r in record["results"]
    ]
    memory = record["isolation"].get("memory", "?")
    return table_section(
        "Code reward on its corpora (`benchmarks/code_reward_corpus.py`, shipped defaults)",
        [
            "tests/fixtures/code_corpus: correct programs (honest: any score below 1 is a false negative) and",
            "programs that solve nothing (hostile: any score above 0 is a hostile pass; the host is checked",
            f"by tests/unit/rewards/test_code_hostile.py). {record['workers']} workers, memory bound: {memory}.",
        ],
        ["corpus", "programs", "kinds", "test runs", "errors", "programs/s"],
        table,
    )


def rl_update_section(data: dict) -> list[str]:
    """One policy update per estimator on one rollout batch; trace packed vs naive replay."""
    rows = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("group") == "rl_update"]
    if not rows:
        return []
    trace = {r["preset"]: r["seconds"] for r in rows if r["estimator"] == "trace"}
    table = []
    for r in rows:
        rounds = r.get("rounds")
        ratio = r["seconds"] / trace[r["preset"]] if r["preset"] in trace else float("nan")
        table.append(
            f"| {r['preset']} | {r['estimator']} | {rounds if rounds is not None else '—'} | {r['seconds']:.2f} | "
            f"{ratio:.2f}× | {r['peak_mb']:.0f} |"
        )
    return table_section(
        "RL policy update per estimator (`benchmarks/test_bench_rl.py`)",
        [
            "One update (estimator forwards + PPO loss + backward, each part back-propagated as it is",
            "computed, as the trainer does) on the same rollout: 4 completions of",
            "64 tokens after a 16-token prompt, ~20M-parameter models, each case in a fresh process.",
            "`trace_naive` replays one forward per decoding step of each block; `trace` packs one step of",
            "every block into one `[x_t ; x_0]` forward.",
        ],
        ["model", "estimator", "forwards (rounds)", "update (s)", "vs trace", "peak memory (MB)"],
        table,
    )


def decode_overhead_section() -> list[str]:
    """The decoding loop's ms per forward, two versions side by side (benchmarks/decode_overhead_probe.py)."""
    from statistics import median

    path = Path(__file__).resolve().parents[1] / ".benchmarks" / "decode_overhead.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())

    def cell(times: list[float]) -> str:
        return f"{median(times):.3f} ({min(times):.3f}–{max(times):.3f})"

    before, after, trees = record["runs"]["before"], record["runs"]["after"], record["trees"]
    table = [
        f"| {case} | {cell(times)} | {cell(after[case])} | {median(times) / median(after[case]):.2f}× |"
        for case, times in before.items()
    ]
    return table_section(
        f"Decoding loop overhead ({record['gen_length']} tokens, `benchmarks/decode_overhead_probe.py`)",
        [
            "Milliseconds per forward of every decoding on a nearly free model (1 layer, width 32,",
            "vocabulary 100, one thread): what the loop costs outside the model. Two source trees",
            f"alternated in one run, `{trees['before']}` before and `{trees['after']}` after; median (min–max) over",
            f"{len(next(iter(after.values())))} repeats each. Prompt 16; sdar: 4-token blocks, 4 steps; llada: blocks",
            "of 32, one token per step; fast_dllm: dual cache, threshold 0.9.",
        ],
        ["case", "before (ms)", "after (ms)", "speed-up"],
        table,
    )


def batch_scaling_section() -> list[str]:
    """Throughput at batch 1, 8 and 32 and a TraceRL rollout's, two versions side by side
    (benchmarks/batch_scaling_probe.py)."""
    from statistics import mean, median

    path = Path(__file__).resolve().parents[1] / ".benchmarks" / "batch_scaling.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    settings, trees = record["settings"], record["trees"]

    def rate(rounds: list[dict]) -> float:
        return rounds[0]["tokens"] / median(r["seconds"] for r in rounds)

    table = []
    for gen_length, plan in settings["plan"].items():
        for case in plan["cases"]:
            for name in ("before", "after"):
                runs = record["runs"][name]["decoding"]
                key = f"{case} | {gen_length} | "
                if key + "b1" not in runs:
                    continue
                base = rate(runs[key + "b1"])
                batches = [b for b in ("b8", "b32", "continuous b8", "continuous b32") if key + b in runs]
                ratios = {b: f"{rate(runs[key + b]) / base:.2f}×" for b in batches}
                forwards = " / ".join(
                    f"{mean(n for r in runs[key + b] for n in r['nfe']):.0f}"
                    for b in ("b1", "b8", "b32")
                    if key + b in runs
                )
                table.append(
                    f"| {case} | {gen_length} | {name} | {base:.0f} | "
                    + " | ".join(ratios.get(b, "—") for b in ("b8", "b32", "continuous b8", "continuous b32"))
                    + f" | {forwards} |"
                )
    rows = {
        gen: ", ".join(f"{n} at batch {b}" for b, n in plan["rows"].items()) for gen, plan in settings["plan"].items()
    }
    rollout = {name: record["runs"][name]["rollout"] for name in ("before", "after")}
    speed = {name: r[0]["completions"] / median(x["seconds"] for x in r) for name, r in rollout.items() if r}
    rollout_rows = [
        f"| {name} | {r[0]['completions']} x {r[0]['gen_length']} | {median(x['seconds'] for x in r):.2f} | "
        f"{speed[name]:.1f} | {speed[name] / speed['before']:.2f}× | {mean(x['nfe'] for x in r):.0f} | "
        f"{mean(x['response_length'] for x in r):.0f} |"
        for name, r in rollout.items()
        if r
    ]
    quick = ["**Quick mode (`BATCH_PROBE_QUICK=1`): shrunk cases that check the harness, not a measurement.**"]
    return table_section(
        "Batch scaling on a confident model (`benchmarks/batch_scaling_probe.py`)",
        [
            *(quick if settings["quick"] else []),
            f"Two source trees alternated in one run, `{trees['before']}` before and `{trees['after']}` after, one",
            "thread. llada_small / sdar_small at width 64, 2 layers, seeded, every linear layer scaled by",
            f"{settings['weight_scale']:g} and the head by {settings['head_scale']:g} (confident, context-dependent).",
            "The same ragged prompts (12-16 tokens) decoded in chunks of B rows, EOS stopping off; rows decoded",
            f"per batch: {'; '.join(f'{gen} tokens: {text}' for gen, text in rows.items())} (the first prompts).",
            "Continuous bR: every prompt in one call with `max_batch_rows=R` (trees that have it).",
            "Forwards: `nfe` per `generate` call at batch 1 / 8 / 32 (batch 1: one row's). fixed: fast_dllm at",
            "4 tokens per step; 0.9: threshold 0.9; blocks of 32; llada one token per step; sdar: the sampler's",
            "defaults (4-token blocks, 4 steps, dynamic threshold 0.85). Speed-ups: throughput over batch 1's.",
        ],
        [
            "case",
            "tokens",
            "tree",
            "b1 tokens/s",
            "b8",
            "b32",
            "continuous b8",
            "continuous b32",
            "forwards b1 / b8 / b32",
        ],
        table,
    ) + [
        f"TraceRL rollout: one `RL.draw` (as training calls it) of `dllm-train {' '.join(settings['rollout'])}`",
        "(temperature 1, EOS stopping on) on the confident sdar_small above, median seconds of every draw",
        f"({settings['rollout_draws']} per round, each of the next prompts); nfe: the logged `rollout_nfe`, mean over",
        "the draws.",
        "",
        "| tree | completions x tokens | seconds | completions/s | vs before | nfe | mean length |",
        "|---|---|---|---|---|---|---|",
        *rollout_rows,
        "",
    ]


def trained_decoding_section() -> list[str]:
    """Threshold decoding on a trained model (written by benchmarks/trained_decoding.py)."""
    path = Path(__file__).resolve().parents[1] / ".benchmarks" / "trained_decoding.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    plain = {r["batch"]: r["tokens_per_s"] for r in record["results"] if r["label"].startswith("llada plain")}
    table = [
        f"| {r['label']} | {r['batch']} | {r['prompts']} | {r['accuracy']:.3f} | {r['tokens_per_s']:.0f} | "
        f"{r['nfe_per_token']:.3f} | {r['tokens_per_s'] / plain[r['batch']]:.2f}× | {r['agreement']:.3f} |"
        for r in record["results"]
    ]
    return table_section(
        f"Parallel decoding of a trained model ({record['gen_length']} tokens, `benchmarks/trained_decoding.py`)",
        [
            f"llada_small ({record['params'] / 1e6:.1f}M parameters) trained on fixed-width addition, then to answer",
            f"within {record['gen_length']}-token completions (EOS padding); held-out prompts decoded side by side.",
            "Token agreement: the share of completion tokens equal to plain decoding's. Every decoder stops a row",
            "at EOS (hence NFE/token < 1 for plain decoding); the prefix and dual caches are approximate",
            "(Fast-dLLM), so they may change an answer: compare the accuracy column.",
        ],
        ["decoder", "batch", "prompts", "accuracy", "tokens/s", "NFE/token", "vs plain", "token agreement"],
        table,
    )


def distributed_section(data: dict) -> list[str]:
    """Data-parallel throughput, 2 processes against 1 on the same machine (markdown lines)."""
    rows = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("group") == "distributed"]
    if not rows:
        return []
    table = []
    for kind in ("sft", "rl"):
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        single = next((r for r in mine if r["processes"] == 1 and r["threads"] == 1), None)
        widest = max((r for r in mine if r["processes"] == 1), key=lambda r: r["threads"], default=None)
        for r in sorted(mine, key=lambda r: (r["processes"], r["threads"])):
            vs_single = f"{r['sequences_per_s'] / single['sequences_per_s']:.2f}×" if single else "—"
            vs_widest = f"{r['sequences_per_s'] / widest['sequences_per_s']:.2f}×" if widest else "—"
            table.append(
                f"| {kind.upper()} | {r['processes']} x {r['threads']} | {r['step_seconds']:.3f} | "
                f"{r['sequences_per_s']:.1f} | {vs_single} | {vs_widest} |"
            )
    return table_section(
        "Data parallel on this machine (`trainer=ddp`, 2 processes vs 1, gloo on the CPU)",
        [
            "The same run and global batch with 1 and 2 processes (`benchmarks/test_bench_distributed.py`):",
            "llada_small on addition; SFT at 64 sequences per step, RL (`tracerl`, 8 prompts x 4",
            "completions, 32 rows per step). Sequences per second from the logged step times (start-up and",
            "evaluation excluded); `P x T` = processes x threads each. Two ways of using the same cores:",
            "threads inside one process, or processes that each take half the batch and all-reduce the",
            "gradient once per step; on GPUs only the second scales past one device.",
        ],
        ["run", "P x T", "s / step", "sequences/s", "vs 1 x 1", "vs 1 x all threads"],
        table,
    )


def splice(text: str, section: list[str]) -> str:
    """`text` with the `## ` section titled like `section[0]` replaced by `section` (appended
    when absent)."""
    title = section[0].split("(")[0].strip()
    out, skipping, replaced = [], False, False
    for line in text.splitlines():
        if line.startswith("## "):
            skipping = line.split("(")[0].strip() == title
            if skipping and not replaced:
                out += section[:-1] if section[-1] == "" else section
                out.append("")
                replaced = True
        if not skipping:
            out.append(line)
    if not replaced:
        out += ["", *section] if out and out[-1] != "" else section
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--sandbox-baseline" in args:
        at = args.index("--sandbox-baseline")
        main(*args[:at], *args[at + 3 :], baseline=(args[at + 1], args[at + 2]))
    else:
        main(*args)
