"""The `code` reward (shipped defaults) on the corpora in tests/fixtures/code_corpus/: the honest
corpus (correct programs; any score below 1.0 is a false negative) and, where the file exists,
the hostile one (programs that solve nothing; any score above 0 is a hostile pass). Prints the
record counts, the ids of both kinds of error, and throughput, and writes them to
.benchmarks/code_reward_corpus.json for BENCHMARKS.md (`benchmarks/report.py`). Each corpus
runs in one reward call on a warm sandbox (a first, untimed call starts the workers).
Runnable alone:

    PYTHONPATH=. python benchmarks/code_reward_corpus.py
    PYTHONPATH=. python benchmarks/code_reward_corpus.py --workers 1
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import dllm
from tests.unit.rewards.code_corpus import load, score_records


def main(workers: int | None) -> None:
    reward = dllm.build("reward", "code", workers=workers)
    results = []
    try:
        score_records(reward, [{"program": "def f():\n    return 1", "tests": ["assert f() == 1"]}])  # warm-up
        for name, wrong, label in (("honest", lambda s: s < 1.0, "false negatives (< 1.0)"),
                                   ("hostile", lambda s: s > 0.0, "hostile passes (> 0)")):  # fmt: skip
            records = load(name)
            if not records:
                print(f"{name}: no corpus file")
                continue
            started = time.perf_counter()
            scores = score_records(reward, records)
            seconds = time.perf_counter() - started
            runs = sum(len(r["tests"]) for r in records)
            kinds = Counter(r.get("kind") or r.get("category") for r in records)
            errors = {r["id"]: round(s, 3) for r, s in zip(records, scores) if wrong(s)}
            print(f"{name}: {len(records)} records ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}), "
                  f"{runs} test runs")  # fmt: skip
            print(f"  {label}: {len(errors)} ({len(errors) / len(records):.1%}) {errors or ''}")
            print(f"  {seconds:.2f} s: {len(records) / seconds:.1f} programs/s, {runs / seconds:.1f} test runs/s")
            results.append(
                {"corpus": name, "records": len(records), "test_runs": runs, "kinds": dict(kinds),
                 "errors": errors, "error_label": label, "seconds": seconds}
            )  # fmt: skip
        isolation, used = reward.sandbox.isolation, reward.sandbox.workers
    finally:
        reward.close()
    out = Path(__file__).resolve().parents[1] / ".benchmarks" / "code_reward_corpus.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"workers": used, "isolation": isolation, "results": results}, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers (default: one per usable CPU)")
    main(parser.parse_args().workers)
